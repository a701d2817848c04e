"""The local lab: Debian systemd containers under podman, reached over SSH like real hosts.

The lab is a tool beside the product. Nothing in the Ansible content depends on it; it only
writes an ordinary inventory (``inventories/lab/hosts.yml``) that points at its containers.
Everything it creates carries the label ``techops.lab=<name>`` so that ``down`` removes
exactly that and nothing else.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from runner.core.errors import UserError
from runner.core.paths import repo_root, state_dir
from runner.lab import podman
from runner.lab.images import RELEASES, build_image, image_name, validate_release
from runner.lab.podman import Say, require_podman

LABEL = "techops.lab"
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,23}$")
AUTOMATION_USER = "ansible"


@dataclass(frozen=True)
class LabHost:
    """One lab container and the inventory groups it belongs to."""

    name: str
    groups: tuple[str, ...]


# The groups the roles use. Production inventories use the same group names.
LAB_HOSTS: tuple[LabHost, ...] = (
    LabHost("bastion1", ("bastion", "vpn_gateway")),
    LabHost("app1", ("app", "backup_clients")),
    LabHost("app2", ("app", "backup_clients")),
    LabHost("backup1", ("backup_server",)),
    LabHost("standby1", ("dr_standby",)),
    LabHost("monitor1", ("monitoring",)),
)


def validate_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise UserError(
            f"bad lab name {name!r}: use 1-24 characters, lower-case letters, digits and '-', "
            "starting with a letter (e.g. 'techops' or 'ci-lab')"
        )
    return name


@dataclass(frozen=True)
class Lab:
    """One named lab: its podman network, containers, key and inventory."""

    name: str = "techops"
    release: str = "12"

    def __post_init__(self) -> None:
        validate_name(self.name)
        validate_release(self.release)

    @property
    def network(self) -> str:
        return f"{self.name}-lab"

    def container(self, host: LabHost) -> str:
        return f"{self.name}-{host.name}"

    @property
    def label(self) -> str:
        return f"{LABEL}={self.name}"

    @property
    def state(self) -> Path:
        path = state_dir() / "lab" / self.name
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    @property
    def key(self) -> Path:
        return self.state / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state / "known_hosts"

    @property
    def inventory(self) -> Path:
        """The default lab is ansible.cfg's default inventory; other labs sit beside it
        (sharing inventories/lab/group_vars) so that they never overwrite each other."""
        name = "hosts.yml" if self.name == "techops" else f"hosts-{self.name}.yml"
        return repo_root() / "inventories" / "lab" / name


def _containers(lab: Lab) -> dict[str, dict]:
    """The lab's containers by name, as podman reports them."""
    proc = podman.run(["podman", "ps", "-a", "--filter", f"label={lab.label}", "--format", "json"])
    return {c["Names"][0]: c for c in json.loads(proc.stdout or "[]")}


def _network_exists(lab: Lab) -> bool:
    return podman.run(["podman", "network", "exists", lab.network], check=False).returncode == 0


def _address(lab: Lab, container: str) -> str:
    proc = podman.run(["podman", "inspect", container, "--format", "json"])
    networks = json.loads(proc.stdout)[0]["NetworkSettings"]["Networks"]
    address = (networks.get(lab.network) or {}).get("IPAddress")
    if not address:
        raise UserError(f"container {container} has no address on network {lab.network}")
    return address


def _wait_for_systemd(container: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        proc = podman.run(
            ["podman", "exec", container, "systemctl", "is-system-running"], check=False
        )
        state = proc.stdout.strip() or "unknown"
        if state in ("running", "degraded"):
            return state
        time.sleep(1)
    raise UserError(
        f"{container}: systemd did not finish booting in {timeout:.0f} s (state {state})"
    )


def _provision_access(lab: Lab, container: str, public_key: str) -> None:
    """Give the automation account the lab key and sudo, as cloud-init would on a real host."""
    script = f"""
set -e
id -u {AUTOMATION_USER} >/dev/null 2>&1 || useradd -m -s /bin/bash {AUTOMATION_USER}
install -d -m 0700 -o {AUTOMATION_USER} -g {AUTOMATION_USER} /home/{AUTOMATION_USER}/.ssh
cat > /home/{AUTOMATION_USER}/.ssh/authorized_keys
chown {AUTOMATION_USER}: /home/{AUTOMATION_USER}/.ssh/authorized_keys
chmod 0600 /home/{AUTOMATION_USER}/.ssh/authorized_keys
if [ ! -e /etc/sudoers.d/{AUTOMATION_USER} ] && [ ! -e /etc/sudoers.d/techops-admins ]; then
  echo '{AUTOMATION_USER} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{AUTOMATION_USER}
  chmod 0440 /etc/sudoers.d/{AUTOMATION_USER}
fi
"""
    podman.run(
        ["podman", "exec", "-i", container, "sh", "-c", script], input_text=public_key + "\n"
    )


def _scan_host_key(address: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = podman.run(["ssh-keyscan", "-T", "3", "-t", "ed25519", address], check=False)
        lines = [line for line in proc.stdout.splitlines() if line and not line.startswith("#")]
        if lines:
            return "\n".join(lines)
        time.sleep(1)
    raise UserError(f"sshd on {address} did not answer in {timeout:.0f} s")


def ssh_argv(lab: Lab, address: str, *command: str) -> list[str]:
    return [
        "ssh",
        "-i",
        str(lab.key),
        "-o",
        f"UserKnownHostsFile={lab.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        f"{AUTOMATION_USER}@{address}",
        *command,
    ]


def network_facts(lab: Lab) -> dict[str, str]:
    """The lab network's subnet and gateway: the gateway is this machine, the controller,
    as the lab hosts see it (what an sshd Match for the automation account must allow)."""
    proc = podman.run(["podman", "network", "inspect", lab.network])
    subnets = json.loads(proc.stdout)[0].get("subnets") or [{}]
    return {"subnet": subnets[0].get("subnet", ""), "gateway": subnets[0].get("gateway", "")}


def render_inventory(
    lab: Lab, addresses: dict[str, str], network: dict[str, str] | None = None
) -> dict:
    """The lab inventory: groups the roles use, each host reached over SSH by address."""
    groups: dict[str, dict] = {}
    for host in LAB_HOSTS:
        for group in host.groups:
            groups.setdefault(group, {"hosts": {}})["hosts"][host.name] = {
                "ansible_host": addresses[host.name],
            }
    return {
        "all": {
            "vars": {
                "ansible_user": AUTOMATION_USER,
                "ansible_ssh_private_key_file": str(lab.key),
                "ansible_ssh_common_args": (
                    f"-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes"
                ),
                "techops_lab_name": lab.name,
                "techops_lab_release": lab.release,
                "techops_lab_automation_key": lab.key.with_suffix(".pub").read_text().strip(),
                # Where the controller (this machine) is, as the lab hosts see it.
                "techops_controller_addresses": [network["gateway"]] if network else [],
                "techops_lab_subnet": network["subnet"] if network else "",
            },
            "children": {"lab": {"children": groups}},
        }
    }


def forget_facts(hostname: str) -> None:
    """A new container is a new machine: drop facts cached for its name (SSH host keys,
    addresses), from ansible.cfg's cache and from the runner's per-inventory caches."""
    facts = state_dir() / "facts"
    # ansible-core 2.19 names a host's file s<schema>_<host> (s1_app1); older ones <host>.
    own_name = re.compile(rf"(s\d+_)?{re.escape(hostname)}")
    for cached in [*facts.glob("*"), *facts.glob("*/*")]:
        if own_name.fullmatch(cached.name) and cached.is_file():
            cached.unlink()


def up(lab: Lab, say: Say = print) -> dict[str, str]:
    """Create (or complete) the lab and write its inventory. Safe to run again."""
    require_podman()
    image = build_image(lab.release, say=say)
    if not lab.key.exists():
        say(f"creating the lab SSH key {lab.key}")
        podman.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"techops-lab-{lab.name}",
                "-f",
                str(lab.key),
            ]
        )
    public_key = lab.key.with_suffix(".pub").read_text().strip()
    if not _network_exists(lab):
        say(f"creating podman network {lab.network}")
        podman.run(["podman", "network", "create", "--label", lab.label, lab.network])
    image_id = json.loads(podman.run(["podman", "image", "inspect", image]).stdout)[0]["Id"]
    existing = _containers(lab)
    for host in LAB_HOSTS:
        name = lab.container(host)
        current = existing.get(name)
        if current and current.get("ImageID") != image_id:
            say(f"{name} runs an older build of {image}: recreating it")
            podman.run(["podman", "rm", "-f", name])
            current = None
        if current is None:
            forget_facts(host.name)
            say(f"starting {name} ({image})")
            podman.run(
                [
                    "podman",
                    "run",
                    "-d",
                    "--name",
                    name,
                    "--hostname",
                    host.name,
                    "--network",
                    lab.network,
                    "--network-alias",
                    host.name,
                    "--label",
                    lab.label,
                    "--label",
                    f"techops.groups={','.join(host.groups)}",
                    "--systemd=always",
                    "--restart=always",
                    "--cap-add",
                    "NET_ADMIN",
                    "--device",
                    "/dev/net/tun",
                    image,
                    "/sbin/init",
                ]
            )
        elif current.get("State") != "running":
            say(f"starting stopped container {name}")
            podman.run(["podman", "start", name])
    addresses: dict[str, str] = {}
    keys: list[str] = []
    for host in LAB_HOSTS:
        name = lab.container(host)
        state = _wait_for_systemd(name)
        _provision_access(lab, name, public_key)
        addresses[host.name] = _address(lab, name)
        keys.append(_scan_host_key(addresses[host.name]))
        say(f"{name}: systemd {state}, {addresses[host.name]}")
    lab.known_hosts.write_text("\n".join(keys) + "\n")
    for host in LAB_HOSTS:
        podman.run(ssh_argv(lab, addresses[host.name], "true"), timeout=30)
    write_inventory(lab, addresses)
    reached = f"{len(LAB_HOSTS)} hosts reachable over SSH"
    say(f"lab {lab.name} is up: {reached}; inventory {lab.inventory}")
    return addresses


def write_inventory(lab: Lab, addresses: dict[str, str]) -> None:
    header = (
        f"# Written by `techops lab up` for lab {lab.name!r} (Debian {lab.release}).\n"
        "# Do not edit: it is rewritten on every `up` and removed by `down`.\n"
    )
    lab.inventory.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(render_inventory(lab, addresses, network_facts(lab)), sort_keys=False)
    lab.inventory.write_text(header + body)


def down(lab: Lab, *, images: bool = False, say: Say = print) -> None:
    """Remove what `up` created for this lab, and nothing else."""
    require_podman()
    for name in sorted(_containers(lab)):
        say(f"removing container {name}")
        podman.run(["podman", "rm", "-f", "-t", "5", name])
    if _network_exists(lab):
        proc = podman.run(["podman", "network", "inspect", lab.network])
        labels = json.loads(proc.stdout)[0].get("labels") or {}
        if labels.get(LABEL) == lab.name:
            say(f"removing network {lab.network}")
            podman.run(["podman", "network", "rm", lab.network])
        else:
            say(f"network {lab.network} was not created by this lab: left alone")
    if lab.inventory.exists() and f"for lab {lab.name!r}" in lab.inventory.read_text():
        say(f"removing {lab.inventory}")
        lab.inventory.unlink()
    shutil.rmtree(lab.state, ignore_errors=True)
    if images:
        for release in RELEASES:
            if (
                podman.run(
                    ["podman", "image", "exists", image_name(release)], check=False
                ).returncode
                == 0
            ):
                say(f"removing image {image_name(release)}")
                podman.run(["podman", "rmi", image_name(release)], check=False)
    say(f"lab {lab.name} is down")


def status(lab: Lab) -> list[dict[str, str]]:
    """One row per lab host: container state, systemd state, address, SSH reachability."""
    require_podman()
    existing = _containers(lab)
    rows = []
    for host in LAB_HOSTS:
        name = lab.container(host)
        row = {
            "host": host.name,
            "container": name,
            "groups": ",".join(host.groups),
            "state": "absent",
            "systemd": "-",
            "address": "-",
            "ssh": "-",
        }
        current = existing.get(name)
        if current:
            row["state"] = current.get("State", "?")
            if row["state"] == "running":
                proc = podman.run(
                    ["podman", "exec", name, "systemctl", "is-system-running"], check=False
                )
                row["systemd"] = proc.stdout.strip() or "?"
                row["address"] = _address(lab, name)
                if lab.key.exists() and lab.known_hosts.exists():
                    ok = podman.run(ssh_argv(lab, row["address"], "true"), check=False, timeout=30)
                    row["ssh"] = "ok" if ok.returncode == 0 else "refused"
        rows.append(row)
    return rows


def format_rows(rows: Iterable[dict[str, str]]) -> str:
    rows = list(rows)
    if not rows:
        return ""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)
