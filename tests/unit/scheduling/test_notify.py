"""Notifications reach a real webhook and a real SMTP server on loopback."""

from __future__ import annotations

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from runner.scheduling import notify


@pytest.fixture
def webhook():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            received.append(
                {"type": self.headers["Content-Type"], "body": json.loads(self.rfile.read(length))}
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


@pytest.fixture
def smtp_server():
    """A minimal SMTP server that keeps each message's envelope and data."""
    messages: list[dict] = []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"220 test ESMTP\r\n")
            message: dict = {"rcpt": []}
            while line := self.rfile.readline():
                command = line.decode().strip()
                upper = command.upper()
                if upper.startswith(("EHLO", "HELO")):
                    self.wfile.write(b"250 test\r\n")
                elif upper.startswith("MAIL FROM"):
                    message["from"] = command
                    self.wfile.write(b"250 ok\r\n")
                elif upper.startswith("RCPT TO"):
                    message["rcpt"].append(command)
                    self.wfile.write(b"250 ok\r\n")
                elif upper == "DATA":
                    self.wfile.write(b"354 go ahead\r\n")
                    data = []
                    while (body := self.rfile.readline()) not in (b".\r\n", b""):
                        data.append(body.decode())
                    message["data"] = "".join(data)
                    messages.append(message)
                    message = {"rcpt": []}
                    self.wfile.write(b"250 queued\r\n")
                elif upper == "QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                else:
                    self.wfile.write(b"250 ok\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], messages
    server.shutdown()
    server.server_close()


def test_webhook_gets_a_json_post(webhook):
    url, received = webhook
    outcomes = notify.send(
        {"on": ["failure"], "webhook": url},
        "failure",
        {"job": "patch-weekly", "run_id": "r1", "status": "failed"},
    )
    assert outcomes == [{"channel": "webhook", "delivered": True, "status": 204}]
    assert received[0]["type"] == "application/json"
    assert received[0]["body"] == {
        "event": "failure",
        "job": "patch-weekly",
        "run_id": "r1",
        "status": "failed",
    }


def test_email_reaches_the_smtp_server(smtp_server):
    port, messages = smtp_server
    config = {
        "on": ["skip"],
        "email": {
            "to": ["oncall@example.com"],
            "from": "t@example.com",
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
        },
    }
    outcomes = notify.send(config, "skip", {"job": "drill", "reason": "missed"})
    assert outcomes[0]["delivered"] is True
    assert "oncall@example.com" in messages[0]["rcpt"][0]
    assert "Subject: [techops] drill: skip" in messages[0]["data"]


def test_events_not_asked_for_send_nothing(webhook):
    url, received = webhook
    assert notify.send({"on": ["failure"], "webhook": url}, "success", {"job": "x"}) == []
    assert received == []


def test_an_unreachable_channel_is_reported_not_raised():
    outcomes = notify.send(
        {"on": ["failure"], "webhook": "http://127.0.0.1:9/none"}, "failure", {"job": "x"}
    )
    assert outcomes[0]["delivered"] is False
    assert outcomes[0]["error"]


def test_settings_merge_and_validation():
    merged = notify.settings({"on": ["failure"], "webhook": "http://a"}, {"on": ["success"]})
    assert merged == {"on": ["success"], "webhook": "http://a"}
    problems = notify.validate({"on": ["sometimes"], "webhook": "ftp://x", "email": {}}, "job x")
    assert len(problems) == 3


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (["failure"], "job x: notify must be a mapping (keys: on, webhook, email), not a list"),
        ({"on": ["failure"], "channel": "ops"}, "notify has unknown key(s) channel"),
        ({True: ["failure"]}, "notify has unknown key(s) True"),
        ({"on": "failure"}, "notify.on must be a list of events"),
        ({"email": "oncall@example.com"}, "notify.email must be a mapping"),
        ({"email": {"to": "a@example.com", "port": 25}}, "notify.email has unknown key(s) port"),
        ({"email": {"to": "a@example.com", "smtp_port": "smtp"}}, "smtp_port must be a port"),
        ({"webhook": ["https://a"]}, "notify.webhook must be an http(s) URL"),
    ],
)
def test_malformed_settings_are_one_clear_line_each(config, message):
    problems = notify.validate(config, "job x")
    assert len(problems) == 1, problems
    assert message in problems[0]
