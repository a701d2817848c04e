"""The lab's Debian base images, built locally with debootstrap (no registry is reachable)
and rebuilt only when their recipe changes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from runner.core.errors import UserError
from runner.lab import podman
from runner.lab.podman import Say, require_podman

RELEASES = {"12": "bookworm", "13": "trixie"}
IMAGE_REPO = "localhost/techops-debian"
RECIPE_LABEL = "techops.recipe"
# Packages every lab image carries: what Ansible and the roles need to start from.
IMAGE_PACKAGES = (
    "python3",
    "systemd",
    "systemd-sysv",
    "dbus",
    "sudo",
    "openssh-server",
    "iproute2",
    "iputils-ping",
    "ca-certificates",
    "procps",
    "less",
    "apt-transport-https",
)

# A freshly imported image would give every container the same SSH host keys.
# Remove them from the image and let each container make its own at first boot.
HOSTKEYS_UNIT = """\
[Unit]
Description=Generate SSH host keys unique to this lab host
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""


def validate_release(release: str) -> str:
    if release not in RELEASES:
        raise UserError(f"unknown Debian release {release!r}: choose one of {', '.join(RELEASES)}")
    return release


# --------------------------------------------------------------------------- images


def host_mirrors(sources_dir: Path = Path("/etc/apt")) -> tuple[str, str | None]:
    """The Debian mirror and security mirror this machine's apt already uses.

    The lab builds from the same mirror as the host, so that it works wherever the host's
    apt works (local mirrors, proxies). TECHOPS_DEBIAN_MIRROR overrides it.
    """
    override = os.environ.get("TECHOPS_DEBIAN_MIRROR")
    uris: list[str] = []
    for path in sorted(sources_dir.glob("sources.list.d/*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:"):
                uris += line.split(":", 1)[1].split()
    for path in [sources_dir / "sources.list", *sorted(sources_dir.glob("sources.list.d/*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb":
                    uris.append(next(p for p in parts[1:] if not p.startswith("[")))
    main = override or next((u for u in uris if u.rstrip("/").endswith("/debian")), None)
    security = next((u for u in uris if u.rstrip("/").endswith("/debian-security")), None)
    if main is None:
        raise UserError(
            "cannot tell which Debian mirror to build the lab from: none in /etc/apt; "
            "set TECHOPS_DEBIAN_MIRROR to a Debian mirror URL"
        )
    return main.rstrip("/"), security.rstrip("/") if security else None


def image_recipe(release: str) -> dict[str, object]:
    """Everything that decides the image's content. Its hash says when to rebuild."""
    return {
        "version": 1,
        "release": release,
        "suite": RELEASES[release],
        "variant": "minbase",
        "packages": sorted(IMAGE_PACKAGES),
        "hostkeys_unit": HOSTKEYS_UNIT,
    }


def recipe_hash(release: str) -> str:
    blob = json.dumps(image_recipe(release), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def image_name(release: str) -> str:
    return f"{IMAGE_REPO}:{release}"


def image_is_current(release: str) -> bool:
    proc = podman.run(["podman", "image", "inspect", image_name(release)], check=False)
    if proc.returncode != 0:
        return False
    labels = json.loads(proc.stdout)[0].get("Labels") or {}
    return labels.get(RECIPE_LABEL) == recipe_hash(release)


def build_image(release: str, *, force: bool = False, say: Say = print) -> str:
    """Build the lab's base image for a Debian release with debootstrap, unless cached."""
    validate_release(release)
    require_podman()
    name = image_name(release)
    if not force and image_is_current(release):
        say(f"image {name} is current (recipe {recipe_hash(release)}), not rebuilt")
        return name
    if shutil.which("debootstrap") is None:
        raise UserError("debootstrap is not installed: run scripts/setup as root")
    mirror, security = host_mirrors()
    suite = RELEASES[release]
    say(f"building image {name} from {suite} with debootstrap (about 70 s)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="techops-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        podman.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(IMAGE_PACKAGES)}",
                suite,
                str(rootfs),
                mirror,
            ],
            timeout=1200,
        )
        lines = [f"deb {mirror} {suite} main", f"deb {mirror} {suite}-updates main"]
        if security:
            lines.append(f"deb {security} {suite}-security main")
        (rootfs / "etc/apt/sources.list").write_text("\n".join(lines) + "\n")
        for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        unit = rootfs / "etc/systemd/system/techops-ssh-hostkeys.service"
        unit.write_text(HOSTKEYS_UNIT)
        wants = rootfs / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / unit.name
        if not link.exists():
            link.symlink_to(f"/etc/systemd/system/{unit.name}")
        # Each container must get its own machine-id at first boot.
        (rootfs / "etc/machine-id").write_text("")
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(
            [
                "podman",
                "import",
                "--change",
                f"LABEL {RECIPE_LABEL}={recipe_hash(release)}",
                "--change",
                'CMD ["/sbin/init"]',
                "-",
                name,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        # Close our end of the pipe: if podman stopped reading early, tar gets SIGPIPE and
        # ends instead of blocking forever on a full pipe.
        if tar.stdout is not None:
            tar.stdout.close()
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise UserError(f"podman import of {name} failed: {imp.stderr.strip()}")
    say(f"built image {name} in {time.monotonic() - started:.0f} s")
    return name


# --------------------------------------------------------------------------- lab
