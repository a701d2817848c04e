"""Rendering shared by every report: the templates, JSON and CSV.

What a report shows comes from the ledger, and the ledger holds text from hosts, tasks and
users: rendering must not let that text act on its reader. HTML is escaped and carries a
Content-Security-Policy that allows only the page's own style blocks; Markdown escapes what
Markdown interprets and holds no HTML; CSV neutralises cells a spreadsheet would run as a
formula.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from jinja2 import Environment, PackageLoader

_STYLE = re.compile(r"<style>(.*?)</style>", re.S)
# Markdown's inline syntax and what starts a block (headings, quotes, lists, tables).
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _environment(*, html: bool) -> Environment:
    env = Environment(
        loader=PackageLoader("runner.reports", "templates"),
        autoescape=html,  # noqa: S701 (Markdown is escaped for Markdown, by finalize)
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=None if html else _md_finalize,
    )
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True)
    env.filters["code"] = code_span
    return env


def html(template: str, **context: Any) -> str:
    """An HTML report: autoescaped, with a policy that lets the page load nothing and
    apply only its own style blocks (by their hashes)."""
    page = _environment(html=True).get_template(template).render(**context)
    return with_csp(page)


def with_csp(page: str) -> str:
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in _STYLE.findall(page)
    )
    styles = hashes or "'none'"
    policy = (
        f"default-src 'none'; style-src {styles}; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
    meta = f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
    return page.replace("<head>", f"<head>\n{meta}", 1)


def markdown(template: str, **context: Any) -> str:
    """A Markdown report: every value is escaped for Markdown, not for HTML."""
    return _environment(html=False).get_template(template).render(**context)


class _Code(str):
    """A code span, already safe: finalize leaves it as it is."""


def md_escape(value: Any) -> str:
    """Text as Markdown shows it literally, on one line: no heading, link, emphasis, table
    cell break or HTML can come from it."""
    text = " ".join(str(value).splitlines())
    return _MD_SPECIAL.sub(r"\\\1", text)


def code_span(value: Any) -> _Code:
    """A Markdown code span of the value, on one line, with a fence no backtick run inside
    can close; pipes escaped, which GFM tables need even in code."""
    text = " ".join(str(value).splitlines()).replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return _Code(f"{fence}{pad}{text}{pad}{fence}")


def _md_finalize(value: Any) -> Any:
    if isinstance(value, _Code) or value is None or isinstance(value, int | float):
        return value
    return md_escape(value)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True)


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell that no spreadsheet runs as a formula: text starting with one
    of = + - @, a tab or a carriage return gets a leading apostrophe. Numbers stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A header line, then one line per row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([csv_cell(c) for c in columns])
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
    return out.getvalue()
