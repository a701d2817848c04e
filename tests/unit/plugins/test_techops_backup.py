"""The pure functions behind the backup modules: borg listings, manifests, rollback plans."""

from __future__ import annotations

import datetime
import hashlib
import json
import struct
import sys
import types

import pytest

from tests.helpers import load_plugin

utils = load_plugin("plugins/module_utils/techops_backup.py")

UTC = datetime.UTC
PARIS_WINTER = datetime.timezone(datetime.timedelta(hours=1))


# --- borg list -----------------------------------------------------------------------------


def test_naive_borg_time_is_read_in_the_given_zone():
    when = utils.parse_borg_time("2026-11-22T03:45:01.000000", PARIS_WINTER)
    assert when.isoformat() == "2026-11-22T03:45:01+01:00"
    assert when.astimezone(UTC).hour == 2


def test_borg_time_with_an_offset_keeps_it():
    when = utils.parse_borg_time("2026-11-22T03:45:01+00:00", PARIS_WINTER)
    assert when.utcoffset() == datetime.timedelta(0)


def test_empty_time_is_refused():
    with pytest.raises(ValueError):
        utils.parse_borg_time("", UTC)


def test_archives_are_sorted_oldest_first_with_iso_times_and_epochs():
    listing = json.dumps(
        {
            "archives": [
                {"name": "app1-b", "id": "2", "time": "2026-11-22T02:00:00.000000"},
                {"name": "app1-a", "id": "1", "time": "2026-11-21T02:00:00.000000"},
            ]
        }
    )
    archives = utils.archives_from_list_json(listing, UTC)
    assert [a["name"] for a in archives] == ["app1-a", "app1-b"]
    assert archives[1]["time"] == "2026-11-22T02:00:00+00:00"
    assert archives[1]["epoch"] - archives[0]["epoch"] == 86400


def test_latest_archive_honours_the_prefix_and_an_empty_repository():
    archives = [
        {"name": "app1-a", "epoch": 1},
        {"name": "other-b", "epoch": 2},
    ]
    assert utils.latest_archive(archives, "app1-")["name"] == "app1-a"
    assert utils.latest_archive(archives)["name"] == "other-b"
    assert utils.latest_archive([], "app1-") is None


def test_not_json_is_a_clear_error():
    with pytest.raises(ValueError, match="did not return JSON"):
        utils.archives_from_list_json("Repository does not exist.")


def test_archive_stats_come_from_borg_info():
    info = json.dumps({"archives": [{"stats": {"nfiles": 5, "original_size": 4194400}}]})
    assert utils.archive_stats_from_info_json(info)["nfiles"] == 5
    assert utils.archive_stats_from_info_json(json.dumps({"archives": []})) == {}


# --- Manifests -------------------------------------------------------------------------------


def _manifest_for(root, files):
    entries = []
    for rel, content in files.items():
        entries.append(
            {"path": "/" + rel, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        )
    return entries


def test_identical_restore_verifies_every_file(tmp_path):
    files = {"srv/app/a.txt": b"alpha\n", "srv/app/sub/b.bin": b"\x00\x01\x02"}
    for rel, content in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(content)
    verified, mismatches = utils.verify_entries(_manifest_for(tmp_path, files), str(tmp_path))
    assert (verified, mismatches) == (2, [])


def test_every_missing_or_different_file_is_named(tmp_path):
    files = {"a.txt": b"alpha\n", "b.txt": b"bravo\n", "c.txt": b"charlie\n"}
    entries = _manifest_for(tmp_path, files)
    (tmp_path / "a.txt").write_bytes(b"alpha\n")
    (tmp_path / "b.txt").write_bytes(b"BRAVO\n")  # same size, other content
    verified, mismatches = utils.verify_entries(entries, str(tmp_path))
    assert verified == 1
    assert [(m["path"], m["problem"]) for m in mismatches] == [
        ("/b.txt", "sha256"),
        ("/c.txt", "missing"),
    ]


def test_a_size_difference_is_reported_without_hashing(tmp_path):
    entries = [{"path": "/a.txt", "size": 3, "sha256": "x"}]
    (tmp_path / "a.txt").write_bytes(b"longer")

    def never(_path):
        raise AssertionError("hashed a file whose size already differs")

    _verified, mismatches = utils.verify_entries(entries, str(tmp_path), hasher=never)
    assert mismatches == [{"path": "/a.txt", "problem": "size", "expected": 3, "actual": 6}]


def test_manifest_without_files_or_fields_is_refused():
    with pytest.raises(ValueError, match="no 'files'"):
        utils.load_manifest("{}")
    with pytest.raises(ValueError, match="lacks"):
        utils.load_manifest(json.dumps({"files": [{"path": "/a"}]}))
    with pytest.raises(ValueError, match="not JSON"):
        utils.load_manifest("nope")


def test_restored_path_stays_under_the_root():
    assert utils.restored_path("/scratch", "/srv/app/a") == "/scratch/srv/app/a"
    assert utils.restored_path("/", "/srv/app/a") == "/srv/app/a"


# --- Rollback --------------------------------------------------------------------------------


def _segment(*tags):
    body = b""
    for tag in tags:
        payload = b"k" * 32 if tag != utils.TAG_COMMIT else b""
        body += struct.pack("<IIB", 0, 9 + len(payload), tag) + payload
    return utils.SEGMENT_MAGIC + body


def test_segment_tags_are_read_from_the_entries():
    assert utils.segment_tags(_segment(0, 0, 2)) == {0: 2, 2: 1}
    assert utils.segment_tags(_segment(1, 0, 1, 2)) == {0: 1, 1: 2, 2: 1}


def test_a_file_that_is_not_a_segment_is_refused():
    with pytest.raises(ValueError, match="magic"):
        utils.segment_tags(b"NOTASEGMENT")


def test_transactions_log_is_parsed():
    text = (
        "transaction 2, UTC time 2026-11-22T01:00:00.1\n"
        "transaction 5, UTC time 2026-11-22T02:00:00.2\n"
    )
    assert utils.parse_transactions(text) == [
        (2, "2026-11-22T01:00:00.1"),
        (5, "2026-11-22T02:00:00.2"),
    ]


# As borg 1.2 writes them: init (1-2), then creates that each delete the old manifest once
# (5, 8), a prune that deletes an archive (12), a delete (14).
TRANSACTIONS = [(5, "t1"), (8, "t2"), (12, "t3"), (14, "t4")]
SEGMENTS = {
    1: {0: 1},
    2: {2: 1},
    3: {0: 12, 1: 1},
    4: {0: 1},
    5: {2: 1},
    6: {0: 4, 1: 1},
    7: {0: 1},
    8: {2: 1},
    9: {1: 8},
    10: {1: 1},
    11: {0: 1},
    12: {2: 1},
    13: {1: 13, 0: 1},
    14: {2: 1},
}


def test_rollback_goes_back_to_before_the_first_deleting_transaction():
    plan = utils.plan_rollback(TRANSACTIONS, SEGMENTS)
    assert plan["last_good"] == 8
    assert plan["dropped"] == [(12, "t3"), (14, "t4")]
    assert plan["segments"] == [9, 10, 11, 12, 13, 14]
    assert "transaction 12 deleted 9 entries" in plan["reason"]


def test_a_create_that_replaces_the_manifest_is_not_a_delete():
    creates_only = {n: tags for n, tags in SEGMENTS.items() if n <= 8}
    plan = utils.plan_rollback(TRANSACTIONS[:2], creates_only)
    assert plan["last_good"] is None


def test_rollback_to_a_named_transaction():
    plan = utils.plan_rollback(TRANSACTIONS, SEGMENTS, to=12)
    assert plan["segments"] == [13, 14]
    with pytest.raises(ValueError, match="not in the repository's transaction log"):
        utils.plan_rollback(TRANSACTIONS, SEGMENTS, to=7)


def test_deletes_up_to_after_are_accepted():
    plan = utils.plan_rollback(TRANSACTIONS, SEGMENTS, after=12)
    assert plan["last_good"] == 12
    assert plan["segments"] == [13, 14]


def test_a_delete_in_the_first_transaction_cannot_be_rolled_back():
    with pytest.raises(ValueError, match="no earlier transaction"):
        utils.plan_rollback([(2, "t1")], {1: {1: 2}, 2: {2: 1}})


# After 8, the controller's maintenance pruned (9) and committed in normal mode (10), which
# borg does not log; then a logged create (13) and a client's delete (15).
MAINTAINED = {
    **{n: tags for n, tags in SEGMENTS.items() if n <= 8},
    9: {1: 8, 0: 1},
    10: {2: 1},
    11: {0: 3, 1: 1},
    13: {2: 1},
    14: {1: 13},
    15: {2: 1},
}
MAINTAINED_LOG = [(5, "t1"), (8, "t2"), (13, "t3"), (15, "t4")]


def test_the_maintenances_own_deletes_are_not_rolled_back():
    plan = utils.plan_rollback(MAINTAINED_LOG, MAINTAINED)
    assert plan["last_good"] == 13
    assert plan["segments"] == [14, 15]
    assert plan["dropped"] == [(15, "t4")]
    # Without the client's delete there is nothing to roll back: the prune was ours.
    assert utils.plan_rollback(MAINTAINED_LOG[:3], MAINTAINED)["last_good"] is None


def test_a_rollback_never_goes_back_past_the_maintenances_compaction():
    with pytest.raises(ValueError, match="older than the maintenance's commit 10"):
        utils.plan_rollback(MAINTAINED_LOG, MAINTAINED, to=8)
    plan = utils.plan_rollback(MAINTAINED_LOG, MAINTAINED, to=10)
    assert plan["segments"] == [11, 13, 14, 15]
    assert plan["dropped"] == [(13, "t3"), (15, "t4")]


def test_a_client_delete_right_after_the_maintenance_goes_back_to_it():
    log = [(5, "t1"), (8, "t2"), (12, "t3")]
    segments = {**{n: t for n, t in MAINTAINED.items() if n <= 10}, 11: {1: 5}, 12: {2: 1}}
    plan = utils.plan_rollback(log, segments)
    assert plan["last_good"] == 10
    assert plan["segments"] == [11, 12]
    assert plan["dropped"] == [(12, "t3")]


def test_vanished_archives_match_by_id_then_by_name():
    current = [{"name": "a-1", "id": "11"}, {"name": "a-3", "id": "33"}]
    expected = [
        {"name": "a-1", "id": "11"},
        {"name": "a-2", "id": "22"},  # deleted
        {"name": "a-3", "id": "99"},  # deleted, and a new archive made under its name
        {"name": "a-1"},  # an older record without ids: by name
    ]
    assert utils.vanished_archives(expected, current) == [
        {"name": "a-2", "id": "22"},
        {"name": "a-3", "id": "99"},
    ]
    assert utils.vanished_archives([], current) == []
    with pytest.raises(ValueError, match="needs a name"):
        utils.vanished_archives([{"id": "11"}], current)


def test_repository_id_is_read_from_the_config():
    assert utils.read_repository_id("[repository]\nversion = 1\nid = abc123\n") == "abc123"


# --- The modules load, and their documentation parses -----------------------------------------


@pytest.mark.parametrize(
    "name", ["borg_archives", "backup_manifest_verify", "borg_repo_rollback", "borg_maintain"]
)
def test_module_documentation_is_yaml(name, monkeypatch):
    import yaml

    # The modules import module_utils by their collection names.
    monkeypatch.setitem(
        sys.modules, "ansible_collections.techops.ops.plugins.module_utils.techops_backup", utils
    )
    module = load_plugin(f"plugins/modules/{name}.py")
    assert isinstance(module, types.ModuleType)
    for block in (module.DOCUMENTATION, module.EXAMPLES, module.RETURN):
        assert yaml.safe_load(block)
    assert yaml.safe_load(module.DOCUMENTATION)["attributes"]["check_mode"]["support"] == "full"
