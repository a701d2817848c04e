"""`techops report capacity` as a user runs it: the report from a fake Prometheus, and every
way of not getting one said in one line with a non-zero exit."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import techops

from .fake_prometheus import END, Failure, FakePrometheus, fleet, serving

PERIOD = ("--since", "7d", "--until", END.isoformat(), "--step", "1h")
# The fake listens on loopback: no proxy from the environment may stand in between.
LOCAL = {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", "TECHOPS_PROMETHEUS_URL": ""}


def capacity(*args: str, env: dict[str, str] | None = None):
    return techops("report", "capacity", *args, env={**LOCAL, **(env or {})})


def one_line_error(proc) -> str:
    assert proc.returncode != 0, proc.stdout
    assert proc.stdout == ""
    message = proc.stderr.strip()
    assert "\n" not in message, message
    assert message.startswith("techops: error: "), message
    return message


@pytest.fixture(scope="module")
def prometheus() -> Iterator[FakePrometheus]:
    with serving(fleet()) as fake:
        yield fake


def test_the_report_comes_from_prometheus_in_each_format(prometheus, tmp_path):
    out = tmp_path / "capacity.json"
    proc = capacity("--prometheus", prometheus.url, *PERIOD, "--format", "json", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert [h["host"] for h in data["hosts"]] == ["10.0.0.4:9100", "app1", "db1", "idle1"]
    asked = prometheus.requests[-1]
    assert asked["path"] == "/api/v1/query_range" and asked["step"] == "3600"
    assert float(asked["end"]) <= END.timestamp()
    for fmt, start in (("html", "<!DOCTYPE html>"), ("csv", "kind,host,instance")):
        proc = capacity("--prometheus", prometheus.url, *PERIOD, "--format", fmt)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(start)


def test_the_url_may_come_from_the_environment(prometheus):
    proc = capacity(*PERIOD, "--format", "csv", env={"TECHOPS_PROMETHEUS_URL": prometheus.url})
    assert proc.returncode == 0, proc.stderr


def test_without_a_prometheus_it_says_how_to_name_one():
    message = one_line_error(proc := capacity(*PERIOD))
    assert proc.returncode == 5
    assert "give --prometheus URL or set TECHOPS_PROMETHEUS_URL" in message


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_prometheus_is_one_line():
    url = f"http://127.0.0.1:{closed_port()}"
    proc = capacity("--prometheus", url, *PERIOD)
    assert one_line_error(proc) == (
        f"techops: error: cannot reach Prometheus at {url}: connection refused "
        "(check --prometheus or TECHOPS_PROMETHEUS_URL)"
    )
    assert proc.returncode == 1


def prometheus_error(kind: str, message: str) -> bytes:
    return json.dumps({"status": "error", "errorType": kind, "error": message}).encode()


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (
            Failure(500, b"Internal Server Error\n", "text/plain"),
            "answered HTTP 500 Internal Server Error",
        ),
        (
            Failure(400, prometheus_error("bad_data", 'parse error:\nunexpected "}"\x1b[31m')),
            "refused the query for host names (node_uname_info) (bad_data): parse error: "
            'unexpected "}" [31m',
        ),
        (
            Failure(503, prometheus_error("timeout", "query timed out in expression evaluation")),
            "(timeout): query timed out in expression evaluation",
        ),
        (
            Failure(200, prometheus_error("execution", "many-to-many matching not allowed")),
            "(execution): many-to-many matching not allowed",
        ),
        (
            Failure(200, b"<html><body>sign in</body></html>", "text/html"),
            "with something that is not JSON (text/html, 33 bytes): is that Prometheus's base URL?",
        ),
        (
            Failure(200, b'{"status": "success", "data": {"resultType": "vector"}}'),
            "with something other than a range result",
        ),
    ],
    ids=["http-500", "error-json-400", "error-json-503", "error-json-200", "html", "vector"],
)
def test_a_prometheus_that_does_not_answer_the_query_is_one_line(failure, expected):
    fake = FakePrometheus(failure=failure)
    with serving(fake):
        message = one_line_error(capacity("--prometheus", fake.url, *PERIOD))
    assert message.startswith(f"techops: error: Prometheus at {fake.url} "), message
    assert expected in message
    assert "\x1b" not in message


def test_a_wrong_path_says_to_check_the_base_url(prometheus):
    message = one_line_error(capacity("--prometheus", prometheus.url + "/nope", *PERIOD))
    assert "answered HTTP 404 Not Found: is that Prometheus's base URL?" in message


def test_a_prometheus_too_slow_to_answer_is_one_line():
    fake = FakePrometheus(delay=5)
    with serving(fake):
        proc = capacity("--prometheus", fake.url, *PERIOD, "--prometheus-timeout", "0.5")
    message = one_line_error(proc)
    assert f"Prometheus at {fake.url} did not answer within 0.5 s" in message


def test_credentials_come_from_a_file_and_are_never_shown(tmp_path):
    token = tmp_path / "token"
    token.write_text("tok-SECRET-123\n")
    basic = tmp_path / "basic"
    basic.write_text("reader:pa55-SECRET\n")
    with serving(fleet()) as fake:
        for option, path, header in (
            ("--prometheus-token-file", token, "Bearer tok-SECRET-123"),
            (
                "--prometheus-basic-auth-file",
                basic,
                "Basic " + base64.b64encode(b"reader:pa55-SECRET").decode(),
            ),
        ):
            proc = capacity("--prometheus", fake.url, *PERIOD, option, str(path), "--format", "csv")
            assert proc.returncode == 0, proc.stderr
            assert {r["authorization"] for r in fake.requests} == {header}
            assert "SECRET" not in proc.stdout + proc.stderr
            fake.requests.clear()
    refusing = FakePrometheus(failure=Failure(401, b"Unauthorized", "text/plain"))
    with serving(refusing):
        proc = capacity(
            "--prometheus", refusing.url, *PERIOD, "--prometheus-token-file", str(token)
        )
    message = one_line_error(proc)
    assert "answered HTTP 401 Unauthorized: check --prometheus-token-file" in message
    assert "SECRET" not in message


def test_credentials_in_the_url_are_refused_without_being_repeated():
    message = one_line_error(capacity("--prometheus", "http://reader:pa55-SECRET@p:9090"))
    assert "SECRET" not in message and "--prometheus-basic-auth-file" in message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--step", "1m", "--since", "30d"), "Prometheus answers at most 11000; use --step 4m"),
        (("--step", "soon"), "--step 'soon': give a duration such as 30s, 5m, 1h or 7d"),
        (("--fs-exclude-mounts", "(unclosed"), "--fs-exclude-mounts '(unclosed' is not a regular"),
        (("--min-r2", "2"), "--min-r2 must be between 0 and 1"),
        (("--cpu-high", "0"), "--cpu-high must be a percentage"),
        (("--since", "2026-12-04", "--until", "2026-12-01"), "the period is empty"),
        (("--since", "last week"), "--since 'last week': give a duration before --until (7d"),
    ],
    ids=[
        "too-fine",
        "bad-step",
        "bad-regex",
        "bad-r2",
        "bad-threshold",
        "empty-period",
        "bad-since",
    ],
)
def test_bad_options_exit_5_before_asking_prometheus(args, expected):
    proc = capacity("--prometheus", f"http://127.0.0.1:{closed_port()}", *args)
    assert expected in one_line_error(proc)
    assert proc.returncode == 5


def test_formats_and_options_of_other_reports(tmp_path: Path):
    message = one_line_error(capacity("--prometheus", "http://p:9090", "--format", "md"))
    assert message.endswith("the capacity report comes as html, json or csv")
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    proc = techops("report", "access", "--ledger", ledger, "--prometheus", "http://p:9090")
    assert proc.returncode == 5
    assert "--prometheus applies to the capacity report only" in proc.stderr
    assert not (tmp_path / "ledger.sqlite3").exists()
