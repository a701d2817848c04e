"""Notifications about scheduled jobs: a webhook (JSON POST) and email (SMTP).

Configured per job (`notify:` in schedules.yml) over the file's top-level `notify:`
defaults:

    notify:
      on: [failure, skip, refuse]         # any of: success, failure, skip, refuse
      webhook: https://chat.example.com/hooks/techops
      email:
        to: [oncall@example.com]
        from: techops@example.com
        smtp_host: localhost
        smtp_port: 25

A notification that cannot be delivered is reported and recorded; it never changes the
outcome of the run.
"""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Any

EVENTS = ("success", "failure", "skip", "refuse")
TIMEOUT_S = 10


def settings(defaults: dict[str, Any] | None, job: dict[str, Any] | None) -> dict[str, Any]:
    merged = dict(defaults or {})
    merged.update(job or {})
    merged.setdefault("on", ["failure", "skip", "refuse"])
    return merged


def validate(config: dict[str, Any], where: str) -> list[str]:
    problems = []
    unknown = set(config.get("on") or []) - set(EVENTS)
    if unknown:
        problems.append(
            f"{where}: notify.on has unknown event(s) {sorted(unknown)} (use {', '.join(EVENTS)})"
        )
    hook = config.get("webhook")
    if hook and not str(hook).startswith(("http://", "https://")):
        problems.append(f"{where}: notify.webhook must be an http(s) URL")
    email = config.get("email")
    if email is not None and (not isinstance(email, dict) or not email.get("to")):
        problems.append(f"{where}: notify.email needs at least `to`")
    return problems


def send(config: dict[str, Any], event: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Deliver `payload` for `event` to every configured channel. Returns the outcomes."""
    if event not in (config.get("on") or []):
        return []
    outcomes = []
    if config.get("webhook"):
        outcomes.append(_webhook(str(config["webhook"]), event, payload))
    if config.get("email"):
        outcomes.append(_email(config["email"], event, payload))
    return outcomes


def _webhook(url: str, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps({"event": event, **payload}, sort_keys=True).encode()
    # The URL is operator configuration, checked to be http(s) by validate().
    request = urllib.request.Request(  # noqa: S310
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "techops"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            return {"channel": "webhook", "delivered": True, "status": response.status}
    except (urllib.error.URLError, OSError) as exc:
        return {"channel": "webhook", "delivered": False, "error": str(exc)}


def _email(cfg: dict[str, Any], event: str, payload: dict[str, Any]) -> dict[str, Any]:
    message = EmailMessage()
    job = payload.get("job", "?")
    message["Subject"] = f"[techops] {job}: {event} — {payload.get('reason', '')}"[:200]
    message["From"] = cfg.get("from", "techops@localhost")
    recipients = cfg["to"] if isinstance(cfg["to"], list) else [cfg["to"]]
    message["To"] = ", ".join(recipients)
    lines = [f"{key}: {value}" for key, value in sorted(payload.items())]
    message.set_content("\n".join(lines) + "\n")
    try:
        with smtplib.SMTP(
            cfg.get("smtp_host", "localhost"), int(cfg.get("smtp_port", 25)), timeout=TIMEOUT_S
        ) as smtp:
            if cfg.get("starttls"):
                smtp.starttls()
            smtp.send_message(message)
        return {"channel": "email", "delivered": True, "to": recipients}
    except (OSError, smtplib.SMTPException) as exc:
        return {"channel": "email", "delivered": False, "error": str(exc)}
