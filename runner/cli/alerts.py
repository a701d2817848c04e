"""Alertmanager's notifications, received into the ledger as incidents.

  techops alerts serve --listen 127.0.0.1:9095 --token-file /etc/techops/alerts.token
  techops alerts install --systemd --listen 0.0.0.0:9095 --token-file /etc/techops/alerts.token

`serve` runs the receiver in the foreground (stop it with SIGTERM or Ctrl-C): POST /alerts
with `Authorization: Bearer TOKEN`, as Alertmanager's webhook_config sends it, and GET
/metrics with the same token for Prometheus (the last runs, and the jobs of --schedules).
`install` writes its systemd service, which gets the token as a credential. See
docs/monitoring.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner.cli.common import Command, Parser, at_least, ledger_option, open_ledger
from runner.core.errors import BadOptions
from runner.ledger.store import ledger_url
from runner.monitoring import receiver
from runner.monitoring.unit import UNIT_NAME, ReceiverUnit, absolute_ledger_url, render_unit
from runner.scheduling.model import MaxIntervals, default_path

COMMAND = Command("alerts", "receive Alertmanager's notifications into the ledger")


def arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    serve = sub.add_parser("serve", help="run the receiver in the foreground")
    install = sub.add_parser("install", help="write the receiver's systemd service unit")
    for action in (serve, install):
        action.add_argument(
            "--listen",
            required=True,
            metavar="HOST:PORT",
            help="address to listen on, e.g. 127.0.0.1:9095 or [::1]:9095",
        )
        action.add_argument(
            "--token-file",
            metavar="PATH",
            help="the shared token, mode 0600 (serve: default, the systemd credential "
            f"{receiver.TOKEN_CREDENTIAL})",
        )
        action.add_argument(
            "--max-body",
            type=int,
            metavar="BYTES",
            help=f"largest body accepted (default {receiver.MAX_BODY})",
        )
        action.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate")
        action.add_argument(
            "--tls-key",
            metavar="PEM",
            help="its private key (serve: default, the systemd credential "
            f"{receiver.TLS_KEY_CREDENTIAL})",
        )
        action.add_argument(
            "--client-ca",
            metavar="PEM",
            help="require client certificates signed by this CA (mutual TLS)",
        )
        ledger_option(action)
    serve.add_argument(
        "--schedules",
        metavar="PATH",
        help="the schedules file whose jobs /metrics reports on (default: TECHOPS_SCHEDULES, "
        "else schedules.yml at the repository root)",
    )
    install.add_argument(
        "--systemd", action="store_true", help="render the systemd unit (the only installer)"
    )
    install.add_argument("--output", default="/etc/systemd/system", help="where to write the unit")
    install.add_argument("--user", help="the user the service runs as (default: root)")


def handle(args: argparse.Namespace) -> int:
    if not args.action:
        raise BadOptions("which action? serve or install")
    at_least(args.max_body, 1, "--max-body")
    host, port = receiver.parse_listen(args.listen)
    if args.client_ca and not args.tls_cert:
        raise BadOptions("--client-ca needs --tls-cert (mutual TLS is TLS first)")
    if args.tls_key and not args.tls_cert:
        raise BadOptions("--tls-key needs --tls-cert")
    if args.action == "install":
        return _install(args)
    token_path = receiver.credential(args.token_file, receiver.TOKEN_CREDENTIAL)
    if token_path is None:
        raise BadOptions(
            "give --token-file PATH (a file of mode 0600 holding the token Alertmanager "
            "sends), or run as the systemd service, which loads it as a credential"
        )
    token = receiver.read_token(token_path)
    tls = None
    if args.tls_cert:
        key = receiver.credential(args.tls_key, receiver.TLS_KEY_CREDENTIAL)
        if key is None:
            raise BadOptions("--tls-cert needs --tls-key (or the systemd credential)")
        client_ca = Path(args.client_ca) if args.client_ca else None
        tls = receiver.tls_context(Path(args.tls_cert), key, client_ca)
    ledger = open_ledger(args, create=True)
    try:
        server = receiver.make_server(
            (host, port),
            token=token,
            ledger=ledger,
            max_body=args.max_body or receiver.MAX_BODY,
            tls=tls,
            schedules=MaxIntervals(Path(args.schedules) if args.schedules else default_path()),
        )
        if tls is None and host not in ("127.0.0.1", "::1", "localhost"):
            server.log(
                "alerts: warning: plain HTTP on a non-loopback address: the token crosses "
                "the network in clear (give --tls-cert and --tls-key)"
            )
        return receiver.serve(server)
    finally:
        ledger.close()


def _install(args: argparse.Namespace) -> int:
    if not args.systemd:
        raise BadOptions("install needs --systemd (the only installer so far)")
    if not args.token_file:
        raise BadOptions("install needs --token-file: the file systemd loads as the credential")
    if args.tls_cert and not args.tls_key:
        raise BadOptions("--tls-cert needs --tls-key: systemd loads the key as a credential")
    token_file = Path(args.token_file)
    receiver.read_token(token_file)  # refused now rather than when the service starts
    unit = ReceiverUnit(
        techops_bin=str(Path(sys.executable).parent / "techops"),
        listen=args.listen,
        token_file=token_file,
        ledger_url=absolute_ledger_url(ledger_url(args.ledger)),
        max_body=args.max_body,
        user=args.user,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        client_ca=Path(args.client_ca) if args.client_ca else None,
    )
    text = render_unit(unit)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / UNIT_NAME).write_text(text)
    print(f"wrote {out / UNIT_NAME}")
    print(f"start it with: systemctl daemon-reload && systemctl enable --now {UNIT_NAME}")
    return 0
