"""The one CLI: ``sluice run`` (whole stack) and ``sluice <service>`` (one service)."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

SERVICES = ("gateway", "actions", "parser", "storage", "api")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sluice", description="Sluice IoT ingestion platform")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run", help="the whole stack: embedded Kafka (unless configured), all services"
    )
    run.add_argument("--no-demo", action="store_true", help="do not create the demo account")
    for name in SERVICES:
        one = sub.add_parser(name, help=f"run the {name} service alone")
        one.add_argument(
            "--workers",
            type=int,
            default=None,
            help="processes of this service (default SLUICE_WORKERS or 1)",
        )
    sub.add_parser("migrate", help="apply the database migrations")
    sub.add_parser("topics", help="create the Kafka topics")
    parse = sub.add_parser("parse", help="dry-run a payload parser")
    parse.add_argument("--code", required=True, help="JavaScript file of the parser")
    group = parse.add_mutually_exclusive_group()
    group.add_argument("--payload", help="JSON payload (an item array) given to the parser")
    group.add_argument("--hex", help="raw payload as hex, normalised as an MQTT payload first")
    parse.add_argument("--topic", default="data", help="MQTT topic used when normalising --hex")
    parse.add_argument("--device", help='JSON device context: {"id", "tags", "params"}')
    args = parser.parse_args(argv)

    if args.command in SERVICES:
        from sluice.settings import SluiceSettings

        workers = args.workers or SluiceSettings().workers
        if workers > 1:
            from sluice.logs import configure_logging
            from sluice.workers import run_workers

            configure_logging(args.command)
            return run_workers(args.command, workers)
        module: Any = importlib.import_module(f"sluice_{args.command}.__main__")
        module.main()
        return 0
    if args.command == "run":
        from sluice.runner import run_stack

        return run_stack(demo=not args.no_demo)
    if args.command == "migrate":
        from sluice_api.migrate import main as migrate_main

        return int(migrate_main())
    if args.command == "topics":
        from sluice.runner import create_topics_main

        return create_topics_main()
    if args.command == "parse":
        from sluice_parser.cli import parse_main

        return int(parse_main(args))
    return 2


if __name__ == "__main__":
    sys.exit(main())
