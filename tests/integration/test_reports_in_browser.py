"""Every HTML report renders in headless Chromium under its Content-Security-Policy with no
console error, and the policy does refuse what it must (an injected inline style)."""

from __future__ import annotations

import pytest

from runner.ledger.store import Ledger
from runner.monitoring.capacity import Settings, capacity_report
from runner.monitoring.prometheus import Prometheus
from runner.reports.access import access_report
from runner.reports.compliance import compliance_report
from runner.reports.drill import drill_report
from runner.reports.run import run_report
from tests.ledgers import add_drill, add_run
from tests.unit.monitoring.fake_prometheus import END, START, STEP, fleet, serving

from .conftest import console_errors


@pytest.fixture
def ledger(tmp_path):
    book = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    add_drill(book, "20261007T033000Z-aaaaaa")
    add_drill(book, "20261104T033000Z-bbbbbb", status="failed", passed=False, reason="RPO")
    add_run(book, "20261105T000000Z-cccccc", {"app1": "ok", "<script>x</script>": "failed"})
    yield book
    book.close()


@pytest.mark.parametrize("kind", ["run", "drill", "compliance", "access"])
def test_the_report_renders_with_no_console_error(ledger, tmp_path, kind):
    page = {
        "run": lambda: run_report(ledger, "20261105T000000Z-cccccc", "html"),
        "drill": lambda: drill_report(ledger, "20261104T033000Z-bbbbbb", "html"),
        "compliance": lambda: compliance_report(ledger, "2000", "html"),
        "access": lambda: access_report(ledger, "html"),
    }[kind]()
    html = tmp_path / f"{kind}.html"
    html.write_text(page)
    assert console_errors(html) == []


def test_the_capacity_report_renders_with_no_console_error(tmp_path):
    """Its charts are inline SVG, styled from the page's own style block: nothing for the
    policy to refuse. Its data come from the unit tests' fake Prometheus."""
    with serving(fleet()) as fake:
        page = capacity_report(Prometheus(fake.url), Settings(START, END, STEP), "html", now=END)
    html = tmp_path / "capacity.html"
    html.write_text(page)
    assert console_errors(html) == []


def test_the_policy_refuses_an_injected_inline_style(ledger, tmp_path):
    page = drill_report(ledger, "20261104T033000Z-bbbbbb", "html")
    html = tmp_path / "injected.html"
    html.write_text(page.replace("<body>", '<body><p style="color: red">injected</p>', 1))
    errors = console_errors(html)
    assert any("Content Security Policy" in line for line in errors), errors
