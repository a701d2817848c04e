"""bench/README.md's results are written by the scripts: each run replaces its own
section, dated and with the machine described, and leaves the rest as it was."""

from __future__ import annotations

import datetime
import sys

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "bench"))
import benchlib

WHEN = datetime.datetime(2026, 12, 3, 9, 30, tzinfo=datetime.UTC)


def test_a_run_adds_its_section_then_replaces_only_it(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nWhat each script measures.\n")
    benchlib.write_results(
        "ledger_ingest",
        "32,000 events/s\n",
        argv=["--hosts", "10"],
        readme=readme,
        now=WHEN,
        where="2 cores",
    )
    benchlib.write_results("fleet_scale", "ratio 1.1\n", argv=[], readme=readme, now=WHEN)
    first = readme.read_text()
    assert first.startswith("# Benchmarks\n\nWhat each script measures.\n")
    assert first.count(benchlib.RESULTS_HEADING) == 1
    assert "2026-12-03 09:30 UTC, `bench/ledger_ingest.py --hosts 10`, on 2 cores." in first
    assert "32,000 events/s" in first and "ratio 1.1" in first

    benchlib.write_results("ledger_ingest", "40,000 events/s\n", argv=[], readme=readme, now=WHEN)
    second = readme.read_text()
    assert "32,000" not in second and "40,000 events/s" in second
    assert "ratio 1.1" in second  # the other script's section is untouched
    assert second.index("40,000") < second.index("ratio 1.1")  # in its place


def test_the_machine_line_names_what_figures_depend_on():
    line = benchlib.machine()
    assert f"{__import__('os').cpu_count()} cores" in line
    assert "GiB" in line and "Python 3." in line and "ansible-core 2." in line
    assert "load average" in line
