"""``memstream infra up|down|status``: the local Kafka and PostgreSQL (infra/local.py).

    memstream infra up        start them in the background (reuses running ones)
    memstream infra down      stop them
    memstream infra status    endpoints, and whether they answer

(Named apart from the top-level ``infra`` package, which it drives.)
"""

from __future__ import annotations

import argparse
from typing import Any

from infra import local
from services.cli.common import EXIT_OK, Commands, add_json_flag
from services.cli.render import print_json
from services.settings import Settings


def register(commands: Commands) -> None:
    """Add `infra up|down|status` to the `memstream` parser."""
    infra = commands.add_parser("infra", help="the local Kafka and PostgreSQL")
    actions = infra.add_subparsers(dest="infra_command", required=True, metavar="ACTION")
    for name, handler, text in (
        (
            "up",
            _up,
            "start local Kafka and PostgreSQL in the background (reuses running ones)",
        ),
        ("down", _down, "stop the local Kafka and PostgreSQL"),
        ("status", _status, "show endpoints and whether they answer"),
    ):
        sub = actions.add_parser(name, help=text, description=text)
        add_json_flag(sub, help="machine-readable output")
        sub.set_defaults(handler=handler)


# -- handlers ----------------------------------------------------------------------------


def _up(settings: Settings, args: argparse.Namespace) -> int:
    started = local.up(settings)
    _print_status(local.status(started.settings), started.started, as_json=args.json)
    return EXIT_OK


def _down(settings: Settings, args: argparse.Namespace) -> int:
    stopped = local.down(settings)
    if args.json:
        print_json({"stopped": stopped})
    else:
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return EXIT_OK


def _status(settings: Settings, args: argparse.Namespace) -> int:
    _print_status(local.status(settings), [], as_json=args.json)
    return EXIT_OK


# -- rendering -----------------------------------------------------------------------------


def _print_status(status: dict[str, Any], started: list[str], *, as_json: bool) -> None:
    if as_json:
        print_json({"started": started, **status})
        return
    for name, info in status.items():
        state = (
            "external"
            if info["mode"] == "external"
            else ("running" if info.get("running") else "stopped")
        )
        extra = " (started now)" if name in started else ""
        print(f"{name:<9} {state:<9} {info['endpoint']}{extra}")
