from __future__ import annotations

import json

from runner.ledger.redact import (
    REDACTED,
    Redactor,
    is_secret_name,
    secret_values,
)


def test_secret_looking_names():
    for name in (
        "password",
        "db_password",
        "backup_passphrase",
        "api_token",
        "vault_x",
        "ssh_private_key",
        "aws_secret_access_key",
        "mfa_totp_secret",
        "API_KEY",
        # Environment variables and abbreviations that tools use for credentials.
        "MYSQL_PWD",
        "SSHPASS",
        "GITHUB_PAT",
        "PGPASSWORD",
        "db_pw",
        "ansible_ssh_pass",
        "AWS_ACCESS_KEY_ID",
    ):
        assert is_secret_name(name), name
    for name in (
        "username",
        "patch_reboot",
        "hosts",
        "port",
        "totp_enrolled",
        "PWD",
        "OLDPWD",
        "PATH",
        "compat",
        "pattern",
        "patch_max_age_days",
    ):
        assert not is_secret_name(name), name


def test_values_are_scrubbed_by_name_and_by_value():
    redactor = Redactor({"s3cr3t-value"})
    data = {
        "user": "bob",
        "password": "hunter22",
        "nested": [{"token": "abc"}],
        "stdout": "connecting with s3cr3t-value now",
        "count": 3,
    }
    clean = redactor.data(data)
    assert clean == {
        "user": "bob",
        "password": REDACTED,
        "nested": [{"token": REDACTED}],
        "stdout": f"connecting with {REDACTED} now",
        "count": 3,
    }


def test_no_log_results_are_replaced_whole():
    event = {
        "event": "runner_on_ok",
        "event_data": {
            "res": {"_ansible_no_log": True, "changed": True, "msg": "the secret is here"}
        },
    }
    clean = Redactor().event(event)
    res = clean["event_data"]["res"]
    assert res["changed"] is True
    assert "secret is here" not in json.dumps(clean)


def test_json_escaped_forms_are_scrubbed_too(tmp_path):
    secret = 'quote"and\\slash-value'
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"stdout": f"x {secret} y"}))
    assert Redactor({secret}).file(path)
    assert "and\\\\slash" not in path.read_text()
    assert REDACTED in path.read_text()


def test_secret_values_of_nested_structures():
    assert secret_values({"db": {"password": "pw-123456"}, "tokens": ["t-1", "t-2"]}) == {
        "pw-123456",
        "t-1",
        "t-2",
    }


def test_a_secret_a_task_returns_is_learned_and_scrubbed_from_its_stdout():
    """A value that first appears in a result under a secret name (a generated token) is
    hidden in the text Ansible prints for it, and in every later event."""
    redactor = Redactor()
    event = {
        "event": "runner_on_ok",
        "stdout": 'ok: [app1] => {"generated_api_token": "CANARY-result-77e1"}',
        "event_data": {"res": {"generated_api_token": "CANARY-result-77e1", "changed": False}},
    }
    clean = redactor.event(event)
    assert "CANARY-result-77e1" not in json.dumps(clean)
    later = redactor.event({"event": "runner_on_ok", "stdout": "echo CANARY-result-77e1"})
    assert later["stdout"] == f"echo {REDACTED}"
    assert redactor.text("again CANARY-result-77e1") == f"again {REDACTED}"


def test_values_of_no_log_results_are_not_learned():
    redactor = Redactor()
    redactor.event({"event_data": {"res": {"_ansible_no_log": True, "password": "hidden-value"}}})
    assert redactor.values == []


def test_the_password_of_a_url_is_scrubbed():
    redactor = Redactor()
    text = "ledger postgresql://techops:s3cret-pw@db.example.com:5432/techops ok"
    assert (
        redactor.text(text)
        == f"ledger postgresql://techops:{REDACTED}@db.example.com:5432/techops ok"
    )
    assert redactor.text("see https://example.com/a:b@c") == "see https://example.com/a:b@c"


def test_json_files_are_scrubbed_by_name_whatever_their_file_name(tmp_path):
    """ansible-runner's `command` artifact holds ansible-playbook's environment as JSON."""
    path = tmp_path / "command"
    path.write_text(
        json.dumps(
            {"command": ["ansible-playbook"], "env": {"AWS_SECRET_ACCESS_KEY": "CANARY-env"}}
        )
    )
    assert Redactor().file(path)
    assert "CANARY-env" not in path.read_text()
    assert json.loads(path.read_text())["env"]["AWS_SECRET_ACCESS_KEY"] == REDACTED


def test_only_generated_looking_values_returned_directly_are_learned():
    """The getent_passwd fact ("passwd") holds every account: learning its contents would
    hide words such as "backup" (an account) in every later line."""
    redactor = Redactor()
    redactor.event(
        {
            "event_data": {
                "res": {
                    "ansible_facts": {
                        "getent_passwd": {"backup": ["x", "34", "34", "backup", "/var/backups"]}
                    },
                    "invocation": {"module_args": {"update_password": "always"}},
                    "password": "NOT_LOGGING_PASSWORD",
                    "generated_secret": "Zq8-Lk2p-77Hx",
                    "secret_word": "plainwords",
                }
            }
        }
    )
    assert redactor.values == ["Zq8-Lk2p-77Hx"]
    assert redactor.text("TASK [backup : Run always]") == "TASK [backup : Run always]"


def test_a_multi_line_secret_is_found_line_by_line_and_re_indented():
    key = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
        "QyNTUxOQAAACBCANARYkeyLineTwo9d8f7\n"
        "-----END OPENSSH PRIVATE KEY-----\n"
    )
    redactor = Redactor({key})
    printed = "msg: |\n      " + "\n      ".join(key.splitlines()) + "\n"
    clean = redactor.text(printed)
    assert "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ" not in clean
    assert "CANARYkeyLineTwo" not in clean
    # stdout_lines: one line per list item.
    lines = redactor.data({"stdout_lines": key.splitlines()})["stdout_lines"]
    assert not any("CANARYkeyLineTwo" in line for line in lines)
    # The header says what it is; it is not hidden everywhere.
    assert "BEGIN OPENSSH PRIVATE KEY" in clean


def test_quoted_and_escaped_forms_of_a_secret_are_found():
    secret = 'it\'s a "quoted" sécret'
    redactor = Redactor({secret})
    for printed in (
        "value: 'it''s a \"quoted\" sécret'",  # YAML single-quoted
        json.dumps({"v": secret}),  # JSON, ASCII escapes
        json.dumps({"v": secret}, ensure_ascii=False),
        "cmd: echo 'it'\"'\"'s a \"quoted\" sécret'",  # shell-quoted
    ):
        clean = redactor.text(printed)
        assert "quoted" not in clean, printed


def test_every_form_of_url_password_is_replaced():
    redactor = Redactor()
    for url, password in (
        ("postgresql://app:hunter2x@db.example/app", "hunter2x"),
        ("redis://:cache-pw-77@cache.example:6379/0", "cache-pw-77"),
        ("https://deploy:p@ss@word@git.example/repo.git", "p@ss@word"),
        ("amqp://guest:gu3st%40pw@mq.example:5672", "gu3st%40pw"),
    ):
        clean = redactor.text(f"connecting to {url} now")
        assert password not in clean, url
        assert REDACTED in clean
    # Not a password: a port, an address in a path, a user without one.
    for text in ("https://host:8443/path@x", "ssh user@host:22", "mysql://root@db/x"):
        assert redactor.text(text) == text
    # Inside compact JSON, the next string is left alone.
    raw = '{"a":"redis://:pw-secret@h","b":"x@y"}'
    assert json.loads(redactor.text(raw)) == {"a": f"redis://:{REDACTED}@h", "b": "x@y"}


def test_a_boolean_under_a_secret_looking_name_is_a_setting_and_stays():
    """sshd's password_authentication: false is what the base role's evidence must show;
    a boolean is never a secret."""
    clean = Redactor().data(
        {"ssh": {"password_authentication": False, "password": "hunter2-long"}, "token": 0}
    )
    assert clean["ssh"]["password_authentication"] is False
    assert clean["ssh"]["password"] == REDACTED
    assert clean["token"] == REDACTED  # a number may be a PIN
