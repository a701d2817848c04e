# -*- coding: utf-8 -*-
# Copyright: (c) 2026, TechOps
# SPDX-License-Identifier: LicenseRef-Proprietary
"""Pure functions shared by the backup modules: borg's listings, manifests, repository rollback.

Kept free of AnsibleModule so that tests/unit/test_backup_*.py can call them directly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import json
import os
import re
import struct

# --- borg list / borg info ---------------------------------------------------------------


def parse_borg_time(value, tz=None):
    """Return an aware datetime for a timestamp from borg's JSON output.

    borg 1.2 writes local time without an offset ("2026-11-22T03:45:01.000000"); it is the
    local time of the host that ran borg, given as `tz` (default: this process's zone).
    A value that carries an offset keeps it.
    """
    if not value:
        raise ValueError("empty timestamp")
    parsed = datetime.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz) if tz is not None else parsed.astimezone()
    return parsed


def archives_from_list_json(text, tz=None):
    """Archives from `borg list --json`, oldest first: [{name, id, time, epoch}].

    `time` is ISO 8601 with an offset; `epoch` is seconds since 1970 (UTC).
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError("borg list did not return JSON: %s" % exc) from None
    result = []
    for archive in data.get("archives", []):
        when = parse_borg_time(archive.get("time") or archive.get("start"), tz)
        result.append(
            {
                "name": archive["name"],
                "id": archive.get("id", ""),
                "time": when.isoformat(),
                "epoch": when.timestamp(),
            }
        )
    result.sort(key=lambda item: item["epoch"])
    return result


def latest_archive(archives, prefix=""):
    """The newest archive whose name starts with `prefix`, or None."""
    matching = [a for a in archives if a["name"].startswith(prefix)]
    return matching[-1] if matching else None


def vanished_archives(expected, current):
    """The archives of `expected` ({name, id}) that `current` no longer holds, in order.

    One with an id matches by id only: a new archive made under a deleted one's name does
    not stand in for it. One without an id (an older record) matches by name.
    """
    ids = {a.get("id") for a in current if a.get("id")}
    names = {a.get("name") for a in current}
    gone = []
    for archive in expected:
        if not isinstance(archive, dict) or not archive.get("name"):
            raise ValueError("each archive needs a name: %r" % (archive,))
        present = archive["id"] in ids if archive.get("id") else archive["name"] in names
        if not present:
            gone.append({"name": archive["name"], "id": archive.get("id") or ""})
    return gone


def archive_stats_from_info_json(text):
    """Files and sizes of the one archive in `borg info --json REPO::NAME`."""
    data = json.loads(text)
    archives = data.get("archives") or []
    if not archives:
        return {}
    stats = archives[0].get("stats", {})
    return {
        "nfiles": stats.get("nfiles"),
        "original_size": stats.get("original_size"),
        "compressed_size": stats.get("compressed_size"),
        "deduplicated_size": stats.get("deduplicated_size"),
    }


# --- Manifests ---------------------------------------------------------------------------


def sha256_file(path, block=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(block)
            if not chunk:
                break
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(text):
    """Parse a manifest written by the backup role's hook: {files: [{path, size, sha256}]}."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError("the manifest is not JSON: %s" % exc) from None
    files = data.get("files")
    if not isinstance(files, list):
        raise ValueError("the manifest has no 'files' list")
    for entry in files:
        if not isinstance(entry, dict) or not {"path", "size", "sha256"} <= set(entry):
            raise ValueError("a manifest entry lacks path, size or sha256: %r" % (entry,))
    return data


def restored_path(root, path):
    """Where a manifest path (absolute on the source) lies under the restore root."""
    return os.path.join(root, path.lstrip("/"))


def verify_entries(entries, root, hasher=sha256_file, stat=os.stat):
    """Compare every manifest entry with the file under `root`.

    Returns (verified, mismatches): the number of files that match, and one dict per file
    that is missing or differs: {path, problem, expected, actual}.
    """
    verified = 0
    mismatches = []
    for entry in entries:
        target = restored_path(root, entry["path"])
        try:
            size = stat(target).st_size
        except FileNotFoundError:
            mismatches.append(
                {
                    "path": entry["path"],
                    "problem": "missing",
                    "expected": entry["sha256"],
                    "actual": None,
                }
            )
            continue
        if size != entry["size"]:
            mismatches.append(
                {
                    "path": entry["path"],
                    "problem": "size",
                    "expected": entry["size"],
                    "actual": size,
                }
            )
            continue
        actual = hasher(target)
        if actual != entry["sha256"]:
            mismatches.append(
                {
                    "path": entry["path"],
                    "problem": "sha256",
                    "expected": entry["sha256"],
                    "actual": actual,
                }
            )
            continue
        verified += 1
    return verified, mismatches


# --- Repository rollback (append-only recovery) -------------------------------------------

TAG_PUT = 0
TAG_DELETE = 1
TAG_COMMIT = 2
SEGMENT_MAGIC = b"BORG_SEG"
_ENTRY_HEADER = struct.Struct("<IIB")
MANIFEST_DELETES_PER_CREATE = 1
# The time shown for a commit made in normal mode, which borg does not log (plan_rollback).
UNLOGGED = "unlogged (a maintenance in normal mode)"
_TRANSACTION_LINE = re.compile(r"^transaction (\d+), UTC time (\S+)")


def parse_transactions(text):
    """The append-only log (`transactions`): [(id, utc_time)], in file order."""
    result = []
    for line in text.splitlines():
        match = _TRANSACTION_LINE.match(line.strip())
        if match:
            result.append((int(match.group(1)), match.group(2)))
    return result


def segment_tags(data):
    """How many entries of each tag one segment file's bytes hold: {tag: count}.

    Tags: PUT 0, DELETE 1, COMMIT 2.
    """
    if not data.startswith(SEGMENT_MAGIC):
        raise ValueError("not a borg segment (bad magic)")
    tags: dict[int, int] = {}
    offset = len(SEGMENT_MAGIC)
    while offset + _ENTRY_HEADER.size <= len(data):
        _crc, size, tag = _ENTRY_HEADER.unpack_from(data, offset)
        if size < _ENTRY_HEADER.size:
            raise ValueError("corrupt segment entry at offset %d" % offset)
        tags[tag] = tags.get(tag, 0) + 1
        offset += size
    return tags


def plan_rollback(transactions, segments, to=None, after=0):
    """Decide which transaction to go back to, and what that removes.

    transactions: [(id, time)] from the log; segments: {number: {tag: count}}.
    `to`: the transaction to keep (None: the last one before the first transaction, after
    `after`, that deleted more than the manifest, i.e. a delete or prune through the
    append-only key). Every `borg create` deletes exactly one entry, the previous manifest;
    deleting an archive deletes at least its metadata too.
    Returns {last_good, dropped: [(id, time)], segments: [numbers to remove], reason}.

    borg logs a transaction only in append-only mode. A commit in a segment whose number
    is not in the log was made in normal mode: the controller's maintenance (prune and
    compaction). Its deletions are ours, and its compaction may have removed segments from
    before it, so the last such commit is a floor: a good transaction (UNLOGGED) that
    deletions up to it do not count against, and that a rollback never goes back past.
    """
    logged = {tid for tid, _when in transactions}
    unlogged = (n for n, tags in segments.items() if tags.get(TAG_COMMIT) and n not in logged)
    floor = max(unlogged, default=0)
    if floor:
        transactions = sorted([*list(transactions), (floor, UNLOGGED)])
        if to is not None and to < floor:
            raise ValueError(
                "transaction %d is older than the maintenance's commit %d, whose compaction "
                "removed the segments a rollback to it would need" % (to, floor)
            )
        after = max(after, floor)
    ids = [tid for tid, _when in transactions]
    if to is not None:
        if to not in ids:
            raise ValueError("transaction %d is not in the repository's transaction log" % to)
        last_good = to
        reason = "requested"
    else:
        last_good = None
        reason = "no transaction deleted archives: nothing to roll back"
        previous = 0
        prior_good = None
        for tid, _time in transactions:
            own = [n for n in segments if previous < n <= tid]
            deletes = sum(segments[n].get(TAG_DELETE, 0) for n in own)
            if tid > after and deletes > MANIFEST_DELETES_PER_CREATE:
                if prior_good is None:
                    raise ValueError(
                        "transaction %d deletes data and no earlier transaction is in the log" % tid
                    )
                last_good = prior_good
                reason = "transaction %d deleted %d entries (a delete or prune)" % (tid, deletes)
                break
            prior_good = tid
            previous = tid
        if last_good is None:
            return {"last_good": None, "dropped": [], "segments": [], "reason": reason}
    dropped = [(tid, when) for tid, when in transactions if tid > last_good and when != UNLOGGED]
    remove = sorted(n for n in segments if n > last_good)
    return {"last_good": last_good, "dropped": dropped, "segments": remove, "reason": reason}


def read_repository_id(config_text):
    """The `id` of a borg repository from its `config` file."""
    for line in config_text.splitlines():
        key, _sep, value = line.partition("=")
        if key.strip() == "id":
            return value.strip()
    return ""
