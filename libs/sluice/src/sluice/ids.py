"""Identifiers and tokens in the shapes TagoIO users know: 24-hex ids and UUID tokens."""

from __future__ import annotations

import hashlib
import itertools
import os
import time
import uuid

# Like a MongoDB ObjectId: 4 bytes of unix seconds, 5 random bytes fixed per process and a
# 3-byte counter starting at a random value. Ids sort roughly by creation time.
_process_random = os.urandom(5).hex()
_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))


def _reseed() -> None:
    # A forked child must not reuse its parent's random part and counter.
    global _process_random, _counter
    _process_random = os.urandom(5).hex()
    _counter = itertools.count(int.from_bytes(os.urandom(3), "big"))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)

_DERIVED_PERSON = b"sluice.id.v1"


def new_id() -> str:
    """A fresh 24-character lower-case hex id, unique across processes."""
    seconds = int(time.time()) & 0xFFFFFFFF
    count = next(_counter) & 0xFFFFFF
    return f"{seconds:08x}{_process_random}{count:06x}"


_DERIVED = hashlib.blake2b(digest_size=12, person=_DERIVED_PERSON)  # copied: cheaper than new


def derived_id(*parts: str | int) -> str:
    """A 24-hex id that depends only on ``parts``: the same parts always give the same id."""
    if not parts:
        raise ValueError("derived_id needs at least one part")
    digest = _DERIVED.copy()
    for part in parts:
        # Tag and length-prefix every part so ("a", "b") and ("ab",) or (1,) and ("1",) differ.
        if isinstance(part, str):
            encoded = part.encode("utf-8", "surrogatepass")
            tag = b"s"
        else:
            encoded = str(int(part)).encode()
            tag = b"i"
        digest.update(tag + len(encoded).to_bytes(8, "big") + encoded)
    return digest.hexdigest()


def new_token() -> str:
    """A new device or account token (random UUID4 text, as TagoIO's tokens look)."""
    return str(uuid.uuid4())


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token; tokens are random, so a fast unsalted hash is enough."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
