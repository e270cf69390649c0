"""Payload-parser source as the API receives it: JS text, base64 of it as TagoIO sends it, or
the name of a built-in parser (``@sluice/cayenne-lpp``), which the parser service resolves.
"""

from __future__ import annotations

import base64
import binascii
import re

from sluice_api.errors import ApiError
from sluice_parser.sandbox import BUILTIN_PARSERS, BUILTIN_PREFIX, MAX_CODE_BYTES

MAX_PARSER_BYTES = MAX_CODE_BYTES
_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]+={0,2}\s*$")
BUILTIN_CHOICES = ", ".join(BUILTIN_PREFIX + name for name in BUILTIN_PARSERS)


def decode_parser_source(source: str | None, field: str = "payload_parser") -> str | None:
    """Plain JavaScript is kept; a base64 body that decodes to UTF-8 text is decoded.

    A built-in reference is kept as it is, after checking the name (400 when unknown); code
    over 64 kB is a 413. ``field`` names the request field in those messages.
    """
    if source is None or not source.strip():
        return None
    stripped = source.strip()
    if stripped.startswith(BUILTIN_PREFIX):
        return _builtin(stripped, field)
    text = source
    compact = "".join(source.split())
    if len(compact) % 4 == 0 and len(compact) >= 8 and _BASE64.match(source):
        try:
            text = base64.b64decode(compact, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            text = source
        if text.strip().startswith(BUILTIN_PREFIX):
            return _builtin(text.strip(), field)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PARSER_BYTES:
        raise ApiError(413, f"{field} is larger than {MAX_PARSER_BYTES // 1024} kB")
    return text


def _builtin(reference: str, field: str) -> str:
    if reference[len(BUILTIN_PREFIX) :] not in BUILTIN_PARSERS:
        raise ApiError(
            400, f"{field}: unknown built-in parser {reference!r}; choose one of {BUILTIN_CHOICES}"
        )
    return reference
