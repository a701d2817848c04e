"""Dates and times from the command line, parsed in one place."""

from __future__ import annotations

from datetime import UTC, datetime

from runner.core.errors import UserError


def parse_date(value: str, *, end_of_day: bool = False) -> str:
    """A date or date-time from the command line, as the ledger's ISO UTC text. A bare
    date with `end_of_day` means its last instant (for --until)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"bad date {value!r}: use YYYY-MM-DD or an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if end_of_day and len(value) == 10:
        parsed = parsed.replace(hour=23, minute=59, second=59, microsecond=999999)
    return parsed.astimezone(UTC).isoformat(timespec="microseconds")


def parse_when(value: str | None) -> datetime | None:
    """An instant with its zone ('now' for now), e.g. a scheduled job's due time."""
    if not value:
        return None
    if value == "now":
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(
            f"bad time {value!r}: use ISO 8601 with a zone, e.g. 2026-11-24T02:00:00+01:00"
        ) from None
    if moment.tzinfo is None:
        raise UserError(f"time {value!r} needs a zone offset (e.g. +00:00)")
    return moment
