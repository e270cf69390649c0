"""``sluice parse``: dry-run a payload parser from the command line (e.g. in a decoder's CI).

Prints the parser's output as JSON on stdout and its console lines, then any error, on
stderr. Exit code 0 when the output would be stored, 1 when the parser failed or its output
would be rejected by validation, 2 when the arguments cannot be used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sluice_parser.playground import DEFAULT_TOPIC, device_from_json, dry_run, sandbox_settings
from sluice_parser.sandbox import BUILTIN_PREFIX, ParserSandbox


class UsageError(Exception):
    pass


def _code(path: str) -> str:
    file = Path(path)
    if not file.exists() and path.startswith(BUILTIN_PREFIX):
        return path  # a built-in parser, e.g. @sluice/cayenne-lpp
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the parser code from {path}: {exc}") from None


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None


def _inputs(args: argparse.Namespace) -> tuple[Any, bytes | None]:
    if args.hex is not None:
        try:
            return None, bytes.fromhex(args.hex.replace(" ", "").replace(":", ""))
        except ValueError:
            raise UsageError(f"--hex is not hexadecimal: {args.hex!r}") from None
    if args.payload is not None:
        payload = _json(args.payload, "--payload")
        if not isinstance(payload, list | dict):
            raise UsageError('--payload must be an item array like [{"variable": "payload", ...}]')
        return payload, None
    return [], None


def parse_main(args: argparse.Namespace) -> int:
    try:
        code = _code(args.code)
        payload, raw = _inputs(args)
        device = device_from_json(_json(args.device, "--device") if args.device else None)
    except (UsageError, ValueError) as exc:
        print(f"sluice parse: {exc}", file=sys.stderr)
        return 2
    settings = sandbox_settings()
    with ParserSandbox(
        time_limit=settings.parser_time_limit, memory_limit=settings.parser_memory_limit
    ) as sandbox:
        result = dry_run(
            sandbox,
            device,
            code=code,
            payload=payload,
            raw=raw,
            topic=args.topic or DEFAULT_TOPIC,
        )
    if result["error"] is None:
        print(json.dumps(result["payload"], indent=2, ensure_ascii=False))
    for line in result["console"]:
        print(f"console {line}", file=sys.stderr)
    if result["error"] is not None:
        print(f"error: {result['error']}", file=sys.stderr)
        return 1
    if result["validation"] is not None:
        print(f"not storable: {result['validation']}", file=sys.stderr)
        return 1
    return 0
