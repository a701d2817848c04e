from __future__ import annotations

import pytest

from runner.core.errors import UserError
from runner.execution.request import parse_extravars


def test_key_value_pairs_merge_in_order():
    assert parse_extravars(["a=1 b=two", "a=3"]) == {"a": "3", "b": "two"}


def test_quoted_values_keep_spaces():
    assert parse_extravars(["msg='hello world'"]) == {"msg": "hello world"}


def test_json_and_yaml_mappings_keep_types():
    assert parse_extravars(['{"n": 2, "flag": true}']) == {"n": 2, "flag": True}


def test_file_reference(tmp_path):
    path = tmp_path / "vars.yml"
    path.write_text("patch_reboot: if_required\nbatches: [1, 25%]\n")
    assert parse_extravars([f"@{path}"]) == {"patch_reboot": "if_required", "batches": [1, "25%"]}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("novalue", "malformed extra var 'novalue'"),
        ('{"a": 1', "malformed extra vars in -e"),
        ("[1, 2]", "must be a mapping"),
        ("@/nonexistent/vars.yml", "does not exist"),
    ],
)
def test_malformed_input_is_one_clear_error(value, expected):
    with pytest.raises(UserError) as info:
        parse_extravars([value])
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
