"""bench/site_speed.py summarises its rounds: ratios are taken round by round."""

from __future__ import annotations

import sys

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "bench"))
import site_speed


def test_ratios_are_taken_round_by_round_and_summarised_with_their_spread():
    times = {
        "a ansible-playbook": [60.0, 90.0, 66.0],
        "a techops run": [61.0, 91.0, 67.0],
        "c ansible-playbook": [20.0, 45.0, 22.0],
        "c techops run": [22.0, 45.0, 22.0],
    }
    lines = site_speed.report(times).splitlines()
    a_plain, a_wrapped, c_plain, c_wrapped = lines[1:]
    assert "66.0 (60.0-90.0)" in a_plain and "1.00x (1.00x-1.00x)" in a_plain
    assert a_wrapped.endswith("1.02x (1.01x-1.02x)")
    # Per round 60/20=3.00, 90/45=2.00, 66/22=3.00: a slow round of (a) is compared with the
    # (c) run beside it, not with the median of (a).
    assert "3.00x (2.00x-3.00x)" in c_plain
    # The wrapper's cost against plain ansible-playbook under the same settings.
    assert c_wrapped.endswith("1.00x (1.00x-1.10x)")
    # Plain runs have no wrapper column.
    assert not c_plain.rstrip().endswith("1.10x)")
