"""Payload-parser source as the API receives it: JS text, or base64 as TagoIO sends it."""

from __future__ import annotations

import base64
import binascii
import re

from sluice_api.errors import ApiError

MAX_PARSER_BYTES = 64 * 1024
_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]+={0,2}\s*$")


def decode_parser_source(source: str | None) -> str | None:
    """Plain JavaScript is kept; a base64 body that decodes to UTF-8 text is decoded."""
    if source is None or not source.strip():
        return None
    text = source
    compact = "".join(source.split())
    if len(compact) % 4 == 0 and len(compact) >= 8 and _BASE64.match(source):
        try:
            text = base64.b64decode(compact, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            text = source
    if len(text.encode()) > MAX_PARSER_BYTES:
        raise ApiError(413, f"payload_parser is larger than {MAX_PARSER_BYTES // 1024} kB")
    return text
