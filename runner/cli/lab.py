"""Create, inspect and remove the local lab."""

from __future__ import annotations

import argparse

from runner.cli.common import Command
from runner.lab import hosts, images

COMMAND = Command("lab", "the local lab of podman systemd hosts")


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status", "build"])
    parser.add_argument("--name", default="techops", help="lab name (default: techops)")
    parser.add_argument("--debian", default="12", help="Debian release for the hosts: 12 or 13")
    parser.add_argument("--release", action="append", help="build: image(s) to build (repeatable)")
    parser.add_argument("--force", action="store_true", help="build: rebuild even if current")
    parser.add_argument("--images", action="store_true", help="down: also remove the base images")


def handle(args: argparse.Namespace) -> int:
    lab = hosts.Lab(name=args.name, release=args.debian)
    if args.action == "up":
        hosts.up(lab)
    elif args.action == "down":
        hosts.down(lab, images=args.images)
    elif args.action == "status":
        rows = hosts.status(lab)
        print(hosts.format_rows(rows))
        return 0 if all(r["ssh"] == "ok" for r in rows) else 3
    elif args.action == "build":
        for release in args.release or [args.debian]:
            images.build_image(release, force=args.force)
    return 0
