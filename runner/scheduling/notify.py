"""Notifications about scheduled jobs and about runs on protected environments: a webhook
(JSON POST) and email (SMTP).

Configured per job (`notify:` in schedules.yml) over the file's top-level `notify:`
defaults, which runs by hand on protected environments use:

    notify:
      on: [failure, skip, refuse, override]   # any of: success, failure, skip, refuse, override
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

EVENTS = ("success", "failure", "skip", "refuse", "override")
TIMEOUT_S = 10
KEYS = ("on", "webhook", "email")
EMAIL_KEYS = ("to", "from", "smtp_host", "smtp_port", "starttls")
# An override of a window or a freeze is an emergency someone should know about.
DEFAULT_ON = ["failure", "skip", "refuse", "override"]


def settings(defaults: dict[str, Any] | None, job: dict[str, Any] | None) -> dict[str, Any]:
    """A job's notification settings: its own `notify:` over the file's defaults."""
    merged = dict(defaults or {})
    merged.update(job or {})
    merged.setdefault("on", list(DEFAULT_ON))
    return merged


def validate(config: Any, where: str) -> list[str]:
    """What is wrong with one `notify:` value (a job's, the defaults or both merged), one
    line each. Unknown keys are refused, not ignored, so that a typo (or an `on:` read as
    something else) cannot silently fall back to the default events."""
    if config is None:
        return []
    if not isinstance(config, dict):
        return [f"{where}: notify must be a mapping (keys: {', '.join(KEYS)}), not {_kind(config)}"]
    problems = _unknown_keys(config, KEYS, f"{where}: notify")
    events = config.get("on")
    if events is not None and (
        not isinstance(events, list) or not all(isinstance(e, str) for e in events)
    ):
        problems.append(f"{where}: notify.on must be a list of events ({', '.join(EVENTS)})")
    else:
        unknown_events = set(events or []) - set(EVENTS)
        if unknown_events:
            problems.append(
                f"{where}: notify.on has unknown event(s) {sorted(unknown_events)} "
                f"(use {', '.join(EVENTS)})"
            )
    hook = config.get("webhook")
    if hook is not None and not (
        isinstance(hook, str) and hook.startswith(("http://", "https://"))
    ):
        problems.append(f"{where}: notify.webhook must be an http(s) URL")
    email = config.get("email")
    if email is not None:
        problems += _validate_email(email, where)
    return problems


def _unknown_keys(config: dict, known: Any, what: str) -> list[str]:
    unknown = [key for key in config if key not in known]
    if not unknown:
        return []
    names = ", ".join(sorted(map(str, unknown)))
    return [f"{what} has unknown key(s) {names} (known: {', '.join(known)})"]


def _validate_email(email: Any, where: str) -> list[str]:
    if not isinstance(email, dict):
        return [f"{where}: notify.email must be a mapping ({', '.join(EMAIL_KEYS)})"]
    if not email.get("to"):
        return [f"{where}: notify.email needs at least `to`"]
    problems = _unknown_keys(email, EMAIL_KEYS, f"{where}: notify.email")
    to = email["to"]
    if not (isinstance(to, str) or (isinstance(to, list) and all(isinstance(t, str) for t in to))):
        problems.append(f"{where}: notify.email.to must be an address or a list of addresses")
    port = str(email.get("smtp_port", 25))
    if not port.isdigit() or not 0 < int(port) < 65536:
        problems.append(f"{where}: notify.email.smtp_port must be a port number")
    if not isinstance(email.get("starttls", False), bool):
        problems.append(f"{where}: notify.email.starttls must be true or false")
    return problems


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


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
    what = payload.get("job") or payload.get("what") or "?"
    message["Subject"] = f"[techops] {what}: {event} — {payload.get('reason', '')}"[:200]
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
