"""Text from hosts, tasks and users reaches the reports: it must not act on their reader."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re

import pytest

from runner.reports.compliance import compliance_report
from runner.reports.render import code_span, csv_cell, md_escape, with_csp
from runner.reports.run import run_report
from tests.ledgers import add_run


@pytest.mark.parametrize(
    "value", ['=HYPERLINK("http://x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\rx"]
)
def test_a_cell_a_spreadsheet_would_run_is_neutralised(value):
    assert csv_cell(value) == "'" + value
    assert csv_cell("app1") == "app1"
    assert csv_cell(-3) == -3  # a number stays a number


def test_the_compliance_csv_neutralises_a_hostile_host_name(ledger):
    add_run(ledger, "r1", {'=HYPERLINK("http://x","y")': "ok", "app1": "ok"})
    rows = list(csv.reader(io.StringIO(compliance_report(ledger, "2000", "csv"))))
    hosts = [row[0] for row in rows[1:]]
    assert '\'=HYPERLINK("http://x","y")' in hosts and "app1" in hosts


def test_markdown_shows_hostile_text_literally_on_one_line():
    text = "# title | cell\n[link](http://x) <b>bold</b> *em* `code`"
    escaped = md_escape(text)
    assert "\n" not in escaped
    assert escaped.startswith("\\# title \\| cell ")
    for special in ("[", "]", "(", ")", "<", ">", "*", "`"):
        assert f"\\{special}" in escaped
    assert "&" not in escaped  # no HTML entities


def test_a_code_span_cannot_be_closed_from_inside():
    span = code_span("a ``b`` c")
    assert span.startswith("```") and span.endswith("```")
    assert code_span("x|y") == "`x\\|y`"


def test_the_markdown_run_report_escapes_what_the_ledger_holds(ledger):
    add_run(
        ledger,
        "r1",
        {"app1": "failed"},
        status="failed",
        failed_tasks=[
            {"host": "app1", "task": "it's | # not a heading", "msg": "line1\n# line2 [x](y)"}
        ],
    )
    md = run_report(ledger, "r1", "md")
    assert "&#39;" not in md and "&amp;" not in md
    failure = next(line for line in md.splitlines() if line.startswith("- app1:"))
    assert failure == "- app1: it's \\| \\# not a heading: line1 \\# line2 \\[x\\]\\(y\\)"
    assert not any(line.startswith("# line2") for line in md.splitlines())


def test_html_reports_allow_only_their_own_style_blocks(ledger):
    add_run(ledger, "r1", {"app1": "ok"})
    page = run_report(ledger, "r1", "html")
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy is not None and page.index(policy.group(0)) < page.index("<style>")
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert styles
    for style in styles:
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy.group(1)
    assert policy.group(1).startswith("default-src 'none';")
    assert "unsafe-inline" not in policy.group(1)
    assert ' style="' not in page  # an inline style attribute would be refused


def test_a_page_without_style_blocks_allows_no_style():
    assert "style-src 'none'" in with_csp("<html><head></head><body></body></html>")
