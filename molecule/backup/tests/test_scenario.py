"""The scenario, in order: back up, drill, then the fault cases, each with a clear failure.

The tests share the instances and run in file order (pytest's default): the corrupted
segment and the stopped server come last because they break the repository and the server.
"""

from __future__ import annotations

import datetime
import re

from conftest import (
    APP,
    EPHEMERAL,
    REPOSITORY,
    SERVER,
    STANDBY,
    archive_names,
    client_borg,
    sh,
)

# As prepare.yml made them: files under /srv/app (not /srv/app/tmp) and the unit file.
SAVED_FILES = 5


# Converge and idempotence ran the whole role; the backups here run only the backup and its
# evidence (as an operator would: --tags backup_run,backup_evidence), to keep the scenario short.
BACKUP_NOW = ("-e", "backup_run_now=true", "--tags", "backup_run,backup_evidence", "--limit", APP)


def test_check_mode_changes_nothing_and_reads_the_repository(playbook):
    run = playbook("backup", "--check")
    assert run.rc == 0, run.messages() or run.output[-3000:]
    for host in (SERVER, APP):
        assert run.result["stats"][host]["changed"] == 0, run.result["stats"]
    # The repository exists (converge made it) and holds no archive yet.
    assert run.evidence(APP)["backup"]["archive"] is None


def test_backup_runs_and_publishes_the_archive(playbook):
    run = playbook("backup", *BACKUP_NOW)
    assert run.rc == 0, run.messages() or run.output[-3000:]
    evidence = run.evidence(APP)["backup"]
    when = datetime.datetime.fromisoformat(evidence["archive_time"])
    assert when.tzinfo is not None, evidence["archive_time"]
    age = datetime.datetime.now(datetime.UTC) - when
    assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=5)
    assert evidence["archive"].startswith("backup-app-")
    assert evidence["archive"] in archive_names()
    assert int(evidence["files"]) >= SAVED_FILES
    assert int(evidence["bytes"]) > 4 * 1024 * 1024
    assert "molecule-only-passphrase" not in run.output


def test_archive_holds_the_manifest_the_database_dump_and_not_the_excluded_path():
    latest = archive_names()[-1]
    listing = client_borg(f"list --short {REPOSITORY}::{latest}")
    assert listing.returncode == 0, listing.stderr
    paths = set(listing.stdout.split())
    assert "var/lib/techops-backup/manifest/manifest.json" in paths
    # borgmatic 1.9+ with Borg 1.4+ (Debian 13) stores its dumps at borgmatic/ in the
    # archive; earlier (Debian 12), under borgmatic_source_directory's own path.
    assert {
        "borgmatic/postgresql_databases/localhost/appdb",
        "var/lib/techops-backup/borgmatic/postgresql_databases/localhost/appdb",
    } & paths, sorted(paths)
    assert "srv/app/data/blob.bin" in paths
    assert not [p for p in paths if p.startswith("srv/app/tmp/")]


def test_client_key_cannot_reach_a_shell_or_another_repository():
    shell = sh(
        APP,
        "ssh -i /etc/techops-backup/id_ed25519 -o BatchMode=yes "
        "-o UserKnownHostsFile=/etc/techops-backup/known_hosts borg@backup-server cat /etc/passwd",
    )
    assert "root:x:0:0" not in shell.stdout
    other = client_borg("list ssh://borg@backup-server:22/srv/borg/other/repo")
    assert other.returncode != 0
    assert "Repository path not allowed" in other.stderr, other.stderr


def test_drill_restores_onto_the_standby_and_verifies_everything(playbook):
    run = playbook("dr_drill")
    assert run.rc == 0, run.messages() or run.output[-3000:]
    drill = run.evidence(STANDBY)["drill"]
    assert drill["passed"] is True
    assert drill["reason"] is None
    assert drill["files_verified"] >= SAVED_FILES
    assert drill["files_verified"] == drill["files_total"]
    assert drill["mismatches"] == []
    assert drill["db_rows"] == {"appdb.items": 42}
    assert drill["archive"] == archive_names()[-1]
    assert 0 < float(drill["rto_s"]) <= drill["rto_target_s"]
    assert 0 < float(drill["rpo_s"]) <= drill["rpo_target_s"]
    # Cleaned up: nothing restored is left, the drill's key is revoked on the server.
    assert (
        sh(
            STANDBY, "test -e /srv/app || test -e /etc/systemd/system/techops-app.service"
        ).returncode
        != 0
    )
    assert (
        sh(STANDBY, "runuser -u postgres -- psql -lqt | cut -d'|' -f1 | grep -qw appdb").returncode
        != 0
    )
    assert (
        sh(SERVER, "grep -c techops-dr-drill /srv/borg/.ssh/authorized_keys").stdout.strip() == "0"
    )


def test_drill_refuses_a_whole_archive_onto_the_standbys_own_tree(playbook):
    before = sh(STANDBY, "sha256sum /etc/passwd /etc/shadow").stdout
    # Empty paths: the whole archive, onto / (the default root). Refused before any change.
    run = playbook("dr_drill", "-e", '{"dr_drill_paths": []}')
    assert run.rc != 0
    assert "Set dr_drill_restore_root to a scratch directory" in run.messages(), run.messages()
    assert "molecule-only-passphrase" not in run.output
    assert sh(STANDBY, "sha256sum /etc/passwd /etc/shadow").stdout == before
    assert sh(STANDBY, "test -e /var/lib/techops-dr-drill").returncode != 0
    # The input checks say why (no no_log hiding the message), without the passphrase.
    run = playbook("dr_drill", "-e", '{"dr_drill_passphrase": ""}')
    assert run.rc != 0
    assert "dr_drill_passphrase is empty" in run.messages(), run.messages()


def test_drill_fails_when_the_archive_is_older_than_the_rpo_target(recorded):
    # Kept, so that the next test can tamper with the restored files.
    run = recorded("dr_drill", "-e", '{"dr_drill_rpo_target_s": 1, "dr_drill_keep": true}')
    assert run.rc != 0
    assert run.status == "failed"  # a failed run in the ledger
    drill = run.evidence(STANDBY)["drill"]
    assert drill["passed"] is False
    assert re.search(r"RPO \d+ s exceeds the target 1 s", drill["reason"]), drill["reason"]
    assert "RPO" in run.messages()
    # Everything else was fine: the restore itself verified.
    assert drill["mismatches"] == []
    assert drill["kept"] is True
    assert sh(STANDBY, "test -f /srv/app/data/notes.txt").returncode == 0


def test_manifest_verification_names_every_changed_or_missing_file(adhoc):
    tamper = sh(
        STANDBY,
        "set -e; echo tampered >> /srv/app/data/notes.txt; rm /srv/app/www/index.html; "
        # Flip every bit of one byte: writing a fixed byte leaves the file unchanged
        # whenever the random content already holds that byte there (1 run in 256).
        "python3 -c \"f = open('/srv/app/data/blob.bin', 'r+b'); f.seek(1000); b = f.read(1); "
        'f.seek(1000); f.write(bytes([b[0] ^ 0xFF]))"',
    )
    assert tamper.returncode == 0, tamper.stderr
    result = adhoc(
        STANDBY,
        "techops.ops.backup_manifest_verify",
        "manifest=/var/lib/techops-backup/manifest/manifest.json",
    )
    assert result["failed"] is True
    assert result["passed"] is False
    problems = {m["path"]: m["problem"] for m in result["mismatches"]}
    assert problems == {
        "/srv/app/data/notes.txt": "size",
        "/srv/app/www/index.html": "missing",
        "/srv/app/data/blob.bin": "sha256",
    }
    assert result["files_verified"] == result["files_total"] - 3
    for path in problems:
        assert path in result["msg"]


def test_client_deletes_are_kept_by_append_only_and_rolled_back(playbook):
    # A second archive, so the client can both prune and delete.
    assert playbook("backup", *BACKUP_NOW).rc == 0
    before = archive_names()
    assert len(before) >= 2
    # A compromised client: prune and delete both succeed and the archives vanish ...
    pruned = client_borg(f"prune --keep-last 1 {REPOSITORY}")
    assert pruned.returncode == 0, pruned.stderr
    deleted = client_borg(f"delete {REPOSITORY}::{before[-1]}")
    assert deleted.returncode == 0, deleted.stderr
    assert archive_names() == []

    # ... the dry run names what it would remove and removes nothing ...
    dry = playbook("backup_rollback", "-e", "backup_rollback_client=backup-app")
    assert dry.rc == 0, dry.messages() or dry.output[-3000:]
    plan = dry.evidence(SERVER)["backup_rollback"]
    assert plan["dry_run"] is True
    assert plan["removed"], plan
    assert [f for f in plan["removed"] if f.startswith("data/")]
    assert "DRY RUN" in dry.messages()
    for name in plan["removed"]:
        assert sh(SERVER, f"test -e /srv/borg/backup-app/repo/{name}").returncode == 0, name
    assert archive_names() == []

    # ... and the rollback brings every archive back.
    real = playbook(
        "backup_rollback",
        "-e",
        "backup_rollback_client=backup-app",
        "-e",
        "backup_rollback_dry_run=false",
    )
    assert real.rc == 0, real.messages() or real.output[-3000:]
    assert archive_names() == before

    # It restores again: the newest archive's file matches the source byte for byte.
    source = sh(APP, "sha256sum < /srv/app/data/blob.bin").stdout
    restored = client_borg(
        f"extract --stdout {REPOSITORY}::{before[-1]} srv/app/data/blob.bin | sha256sum"
    )
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout == source


def segments() -> str:
    """The repository's segment files with their sizes: what a compaction rewrites."""
    listing = sh(
        SERVER, "cd /srv/borg/backup-app/repo && find data -type f -printf '%p %s\\n' | sort"
    )
    assert listing.returncode == 0, listing.stderr
    return listing.stdout


def test_server_cannot_read_the_archives():
    """The server holds the repositories but no passphrase: it cannot list an archive."""
    listed = sh(
        SERVER,
        "cd /srv/borg && runuser -u borg -- env BORG_PASSPHRASE= "
        "BORG_RELOCATED_REPO_ACCESS_IS_OK=no borg list /srv/borg/backup-app/repo",
    )
    assert listed.returncode != 0, listed.stdout
    assert "passphrase" in listed.stderr.lower(), listed.stderr
    # ... while its own check, which needs no key, passes.
    check = sh(SERVER, "runuser -u borg -- /usr/local/sbin/techops-borg-admin check backup-app")
    assert check.returncode == 0, check.stdout + check.stderr


def test_maintenance_refuses_to_compact_over_a_clients_deletion_and_rollback_recovers(recorded):
    """Retention runs from the controller. A client deleting archives with its own key stops
    the next maintenance before it compacts; the rollback brings the archives back, and the
    maintenance goes on."""
    # A backup on the record, then the first maintenance: the day's archives thinned to one.
    backup = recorded("backup", *BACKUP_NOW)
    assert backup.rc == 0, backup.messages() or backup.output[-3000:]
    names = archive_names()
    assert len(names) >= 2
    first = recorded("backup_maintain")
    assert first.rc == 0, first.messages() or first.output[-3000:]
    evidence = first.evidence(APP)["backup_maintain"]
    assert evidence["refused"] is False
    assert evidence["compacted"] is True
    assert evidence["pruned"] == names[:-1]
    assert [a["name"] for a in evidence["after"]] == [names[-1]] == archive_names()

    # Another backup, on the record; then the client deletes it with its append-only key.
    backup = recorded("backup", *BACKUP_NOW)
    assert backup.rc == 0, backup.messages() or backup.output[-3000:]
    newest = archive_names()[-1]
    assert newest != names[-1]
    deleted = client_borg(f"delete {REPOSITORY}::{newest}")
    assert deleted.returncode == 0, deleted.stderr
    assert newest not in archive_names()
    stored = segments()

    # The scheduled maintenance refuses: nothing pruned, nothing compacted, the run fails on
    # the record and says how to recover.
    refused = recorded("backup_maintain")
    assert refused.rc != 0
    assert refused.status == "failed"
    evidence = refused.evidence(APP)["backup_maintain"]
    assert evidence["refused"] is True
    assert evidence["unexplained"] == [newest]
    assert evidence["pruned"] == [] and evidence["compacted"] is False
    assert newest in refused.messages() and "backup_rollback.yml" in refused.messages()
    assert segments() == stored

    # The rollback undoes the client's deletion (and not the maintenance before it) ...
    rollback = recorded(
        "backup_rollback",
        "-e",
        "backup_rollback_client=backup-app",
        "-e",
        "backup_rollback_dry_run=false",
    )
    assert rollback.rc == 0, rollback.messages() or rollback.output[-3000:]
    assert archive_names() == [names[-1], newest]
    restored = client_borg(f"extract --dry-run {REPOSITORY}::{newest}")
    assert restored.returncode == 0, restored.stderr

    # ... and the next maintenance passes: the deleted archive is back, the older one pruned.
    again = recorded("backup_maintain")
    assert again.rc == 0, again.messages() or again.output[-3000:]
    evidence = again.evidence(APP)["backup_maintain"]
    assert evidence["refused"] is False and evidence["vanished"] == []
    assert evidence["pruned"] == [names[-1]]
    assert archive_names() == [newest]

    # The passphrase reached no record: the canary is nowhere in the scenario's ledger.
    assert b"molecule-only-passphrase" not in (EPHEMERAL / "ledger.sqlite3").read_bytes()


def test_corrupted_segment_fails_the_check_and_the_drill(recorded):
    check_command = "runuser -u borg -- /usr/local/sbin/techops-borg-admin check backup-app"
    healthy = sh(SERVER, check_command)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "check of /srv/borg/backup-app/repo passed" in healthy.stdout

    # Flip bytes in the middle of the largest segment: that is the random file's data.
    corrupt = sh(
        SERVER,
        "set -e; seg=$(ls -S /srv/borg/backup-app/repo/data/*/* | head -1); "
        "size=$(stat -c %s $seg); "
        "printf 'CORRUPTCORRUPT' | dd of=$seg bs=1 seek=$((size / 2)) conv=notrunc status=none",
    )
    assert corrupt.returncode == 0, corrupt.stderr
    check = sh(SERVER, check_command)
    assert check.returncode != 0
    assert re.search(r"(?i)(integrity|checksum|crc|corrupt)", check.stdout + check.stderr), (
        check.stdout + check.stderr
    )
    assert "passed" not in check.stdout

    run = recorded("dr_drill")
    assert run.rc != 0
    assert run.status == "failed"  # a failed run in the ledger
    drill = run.evidence(STANDBY)["drill"]
    assert drill["passed"] is False
    assert re.search(r"(?i)(integrity|checksum)", drill["reason"]), drill["reason"]
    assert "DR drill of backup-app" in run.messages() and "FAILED" in run.messages()
    # The cleanup ran all the same.
    assert (
        sh(SERVER, "grep -c techops-dr-drill /srv/borg/.ssh/authorized_keys").stdout.strip() == "0"
    )


def test_backup_fails_clearly_when_the_server_is_down(recorded):
    stop = sh(SERVER, "systemctl stop ssh.service ssh.socket")
    assert stop.returncode == 0, stop.stderr
    run = recorded("backup", *BACKUP_NOW)
    assert run.rc != 0
    assert run.status == "failed"  # a failed run in the ledger
    assert "Is the backup server backup-server up" in run.messages() or (
        "did not answer over SSH" in run.messages()
    ), run.messages()
