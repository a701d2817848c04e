"""Redaction: secrets are removed before anything is stored, printed or reported.

Two complementary rules:
- by name: the value of any key that looks secret (password, passphrase, secret, token,
  private key, credential, api key, or a ``vault_`` variable) is replaced, wherever it sits;
- by value: the values known to be secret (those of secret-named variables in the extra
  vars and the inventory, every vaulted value, the vault passwords) are replaced
  wherever they appear, even inside free text such as a task's stdout or an error
  message.
Results that Ansible marks ``no_log`` are replaced whole.

A run also learns secrets as it goes: a value a task returns under a secret-looking name
(a generated token, a fact such as ``db_password``) joins the known values, so the same
value is scrubbed from the text Ansible prints for that task and every later one. The
password part of a URL (``scheme://user:password@host``) is always replaced.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REDACTED = "**redacted**"
SECRET_NAME = re.compile(
    r"(?i)(^vault_|pass(word|wd|phrase|code)|secret|token|private[_-]?key|credential"
    r"|api[_-]?key|access[_-]?key"
    # Abbreviations count only as a whole word of the name (MYSQL_PWD, GITHUB_PAT, db_pw,
    # ansible_ssh_pass) or at its end (SSHPASS): "path", "compat" or "patch_age" stay
    # readable, and so does PWD alone, the shell's working directory.
    r"|(^|[_.-])(pass|pw|pat)($|[_.-])|[_.-]pwd($|[_.-])|[a-z]pass$)"
    # A TOTP secret is caught by "secret"; "totp" alone would hide facts such as
    # totp_enrolled that the access review needs.
)
# Short values would replace ordinary words everywhere: only values this long are scrubbed.
MIN_SECRET_LENGTH = 6
# The password in a URL's user information: postgresql://user:PASSWORD@host/db, with an
# empty user (redis://:PASSWORD@host) or an unencoded @ in it (up to the last @ before the
# host). Quotes end it: in JSON text, the next string is not part of the URL.
URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@\"']*:)([^\s/?#\"'<>]*)@")
# A line of a multi-line secret that is only words and punctuation (a PEM header) is not
# secret on its own, and hiding it everywhere would hide ordinary text.
_WORDS_ONLY = re.compile(r"[A-Za-z\s\[\]=:#-]*")


def is_secret_name(name: object) -> bool:
    return isinstance(name, str) and bool(SECRET_NAME.search(name))


class Redactor:
    """Applies both rules. Build one per run with the secret values that run knows."""

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        self.values: list[str] = []
        self._pattern: re.Pattern[str] | None = None
        self._learned_from: dict[str, Any] | None = None
        self.learn(secret_values)

    def learn(self, values: Iterable[str]) -> bool:
        """Add secret values to this redactor (in place). Returns True if any was new."""
        new = {
            v
            for v in values
            if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH and REDACTED not in v
        } - set(self.values)
        if not new:
            return False
        # Longest first, so that a secret containing another is replaced whole.
        self.values = sorted({*self.values, *new}, key=len, reverse=True)
        forms: set[str] = set()
        for value in self.values:
            forms |= printed_forms(value)
        self._pattern = re.compile(
            "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
        )
        return True

    @classmethod
    def for_run(cls, extravars: dict[str, Any], known: Iterable[str] = ()) -> Redactor:
        """The secrets a run knows before it starts: its extra vars, and the values found
        by whoever read its inventory and vault (runner.execution.vault)."""
        return cls(secret_values(extravars) | set(known))

    def text(self, value: str) -> str:
        if "://" in value:
            value = URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + "@", value)
        if self._pattern is None:
            return value
        return self._pattern.sub(REDACTED, value)

    def data(self, value: Any) -> Any:
        """A copy of a JSON-like structure with secrets removed."""
        if isinstance(value, dict):
            if value.get("_ansible_no_log") or value.get("no_log") is True:
                return _no_log_stub(value)
            return {
                k: (REDACTED if is_secret_name(k) and _may_hold_secret(v) else self.data(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.data(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def learn_from(self, event: dict[str, Any]) -> None:
        """Learn the values a task's result carries under secret-looking names. The
        progress display and the recorder share one redactor and both call this for each
        event: the second call for the same event does nothing."""
        if event is self._learned_from:
            return
        self._learned_from = event
        res = (event.get("event_data") or {}).get("res")
        if isinstance(res, dict) and not res.get("_ansible_no_log"):
            self.learn(returned_secrets(res))

    def event(self, event: dict[str, Any]) -> dict[str, Any]:
        """An ansible-runner event with secrets removed (stdout, args and results).

        Values the task returned under secret-looking names are learned first, so that
        the event's own stdout (which prints them on a failure, with -v, or through
        `debug`) loses them too."""
        self.learn_from(event)
        clean = self.data(event)
        data = clean.get("event_data") or {}
        res = data.get("res")
        if isinstance(res, dict) and res.get("_ansible_no_log"):
            data["res"] = _no_log_stub(res)
        return clean

    def file(self, path: Path) -> bool:
        """Scrub a file in place. Returns True if it changed."""
        try:
            raw = path.read_bytes()
        except OSError:
            return False
        text = raw.decode("utf-8", errors="surrogateescape")
        clean = self.text(text)
        # JSON by its content, not only its name: ansible-runner's `command` file holds
        # the environment of ansible-playbook as JSON, without a .json suffix.
        if path.suffix == ".json" or clean.lstrip()[:1] in ("{", "["):
            with contextlib.suppress(ValueError):
                data = json.loads(clean)
                redacted = self.data(data)
                if redacted != data:
                    clean = json.dumps(redacted)
        if clean == text:
            return False
        path.write_bytes(clean.encode("utf-8", errors="surrogateescape"))
        return True

    def tree(self, root: Path) -> int:
        """Scrub every file below root. Returns how many changed."""
        return sum(self.file(p) for p in root.rglob("*") if p.is_file())


def _may_hold_secret(value: Any) -> bool:
    """Whether a value under a secret-looking name is replaced whole: not when it is empty,
    and not a boolean, which is a setting (password_authentication: false), never a
    secret."""
    return not isinstance(value, bool) and value not in (None, "", [], {})


def printed_forms(value: str) -> set[str]:
    """The ways output can show a secret: as is; inside JSON text (escaped, ASCII or not);
    YAML single-quoted (a quote doubled) and shell-quoted; and, for a multi-line secret (a
    private key), each of its lines alone, since output splits and re-indents them."""
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    if "'" in value:
        forms.add(value.replace("'", "''"))
        forms.add(shlex.quote(value))
    if "\n" in value:
        for line in value.splitlines():
            line = line.strip()
            if len(line) >= MIN_SECRET_LENGTH and not _WORDS_ONLY.fullmatch(line):
                forms.add(line)
    return {f for f in forms if f}


def _no_log_stub(value: dict[str, Any]) -> dict[str, Any]:
    keep: dict[str, Any] = {
        k: value[k] for k in ("changed", "failed", "skipped", "unreachable") if k in value
    }
    return {**keep, "censored": "output hidden: no_log is set for this result"}


def secret_values(data: Any) -> set[str]:
    """Values of secret-named keys anywhere in a structure (strings and numbers)."""
    found: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            if is_secret_name(key) and isinstance(value, str | int) and not isinstance(value, bool):
                found.add(str(value))
            elif is_secret_name(key) and isinstance(value, list | dict):
                found |= _all_leaves(value)
            found |= secret_values(value)
    elif isinstance(data, list):
        for item in data:
            found |= secret_values(item)
    return found


# What Ansible itself puts in place of a hidden value: nothing to learn there.
_PLACEHOLDERS = {"NOT_LOGGING_PASSWORD", "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER", "********"}
# A value learned from a result is replaced in all later text: only values that look
# generated (long enough, not a plain word) are learned, so that an option such as
# update_password: always never hides the word "always" everywhere.
_MIN_LEARNED_LENGTH = 8


def returned_secrets(res: Any) -> set[str]:
    """The values a task result returns directly under secret-looking names (a generated
    token, a fact such as db_password), to be scrubbed from all later text.

    Narrower than `secret_values`: the module's own arguments (`invocation`, which Ansible
    already masks) and whole structures under such a name (the getent_passwd fact holds
    every account's name, home and shell) are replaced by name where they appear, but
    their contents are not learned."""
    found: set[str] = set()

    def walk(data: Any) -> None:
        if isinstance(data, dict):
            for key, value in data.items():
                if key == "invocation":
                    continue
                if is_secret_name(key) and isinstance(value, str):
                    if (
                        len(value) >= _MIN_LEARNED_LENGTH
                        and value not in _PLACEHOLDERS
                        and not value.replace(" ", "").isalpha()
                    ):
                        found.add(value)
                else:
                    walk(value)
        elif isinstance(data, list):
            for item in data:
                walk(item)

    walk(res)
    return found


def _all_leaves(data: Any) -> set[str]:
    if isinstance(data, dict):
        return set().union(*(_all_leaves(v) for v in data.values())) if data else set()
    if isinstance(data, list):
        return set().union(*(_all_leaves(v) for v in data)) if data else set()
    if isinstance(data, str | int) and not isinstance(data, bool):
        return {str(data)}
    return set()
