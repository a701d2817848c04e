"""`techops lab`: the local lab of podman systemd hosts (a tool beside the product)."""

from __future__ import annotations

import argparse

from runner.lab import hosts, images


def add_parser(sub: argparse._SubParsersAction) -> None:
    lab = sub.add_parser(
        "lab",
        help="the local lab of podman systemd hosts",
        description="Create, inspect and remove the local lab.",
    )
    lab.add_argument("action", choices=["up", "down", "status", "build"])
    lab.add_argument("--name", default="techops", help="lab name (default: techops)")
    lab.add_argument("--debian", default="12", help="Debian release for the hosts: 12 or 13")
    lab.add_argument("--release", action="append", help="build: image(s) to build (repeatable)")
    lab.add_argument("--force", action="store_true", help="build: rebuild even if current")
    lab.add_argument("--images", action="store_true", help="down: also remove the base images")
    lab.set_defaults(handler=handle)


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
