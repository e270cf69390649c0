"""MQTT data representation (spec section 1.5): integers, strings and binary data.

Reading is bounds-checked against one packet inside a receive buffer; running past the packet
is a Malformed Packet. Writing trusts its caller but refuses values the wire cannot carry.
"""

from __future__ import annotations

from sluice_gateway.codec.errors import ProtocolError, malformed

MAX_VARINT = 268_435_455


def read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a Variable Byte Integer at `pos`: (value, next position), or (0, -1) if cut short.

    Raises Malformed Packet for a fifth byte or a non-minimal encoding (MQTT-1.5.5-1).
    """
    value = 0
    shift = 0
    for index in range(pos, min(pos + 4, end)):
        byte = buf[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and index > pos:
                raise malformed("variable byte integer is not minimally encoded")
            return value, index + 1
        shift += 7
    if end - pos >= 4:
        raise malformed("variable byte integer is longer than 4 bytes")
    return 0, -1


class Reader:
    """Reads fields of one packet body, buf[pos:end]; running past `end` is a Malformed Packet."""

    __slots__ = ("buf", "end", "packet", "pos")

    def __init__(self, buf: bytes, pos: int, end: int, packet: str) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end
        self.packet = packet

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def _truncated(self, field: str) -> ProtocolError:
        return malformed(f"{self.packet} is truncated: {field} runs past the end of the packet")

    def byte(self, field: str) -> int:
        pos = self.pos
        if pos >= self.end:
            raise self._truncated(field)
        self.pos = pos + 1
        return self.buf[pos]

    def uint16(self, field: str) -> int:
        pos = self.pos
        if pos + 2 > self.end:
            raise self._truncated(field)
        self.pos = pos + 2
        buf = self.buf
        return (buf[pos] << 8) | buf[pos + 1]

    def uint32(self, field: str) -> int:
        pos = self.pos
        if pos + 4 > self.end:
            raise self._truncated(field)
        self.pos = pos + 4
        return int.from_bytes(self.buf[pos : pos + 4], "big")

    def varint(self, field: str) -> int:
        value, pos = read_varint(self.buf, self.pos, self.end)
        if pos < 0:
            raise self._truncated(field)
        self.pos = pos
        return value

    def binary(self, field: str) -> bytes:
        """Two-byte length followed by that many bytes."""
        pos = self.pos + 2
        buf = self.buf
        if pos > self.end or pos + ((buf[pos - 2] << 8) | buf[pos - 1]) > self.end:
            raise self._truncated(field)
        self.pos = stop = pos + ((buf[pos - 2] << 8) | buf[pos - 1])
        return buf[pos:stop]

    def utf8(self, field: str) -> str:
        """An MQTT UTF-8 string: well-formed (the strict codec refuses surrogates), without NUL."""
        pos = self.pos + 2
        buf = self.buf
        if pos > self.end or pos + ((buf[pos - 2] << 8) | buf[pos - 1]) > self.end:
            raise self._truncated(field)
        self.pos = stop = pos + ((buf[pos - 2] << 8) | buf[pos - 1])
        try:
            text = buf[pos:stop].decode()
        except UnicodeDecodeError:
            raise malformed(f"{field} is not well-formed UTF-8") from None
        if "\x00" in text:
            raise malformed(f"{field} contains the character U+0000")
        return text

    def utf8_pair(self, field: str) -> tuple[str, str]:
        return (self.utf8(field), self.utf8(field))

    def rest(self) -> bytes:
        """Everything up to the end of the packet (a payload)."""
        data = self.buf[self.pos : self.end]
        self.pos = self.end
        return data

    def expect_end(self) -> None:
        if self.pos != self.end:
            raise malformed(
                f"{self.packet} has {self.end - self.pos} unexpected bytes after its last field"
            )


def encode_varint(value: int) -> bytes:
    """Encode a Variable Byte Integer (0 to 268,435,455)."""
    if value < 0x80:
        return bytes((value,))
    if value > MAX_VARINT:
        raise ValueError(f"{value} does not fit in a variable byte integer (max {MAX_VARINT})")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_binary(data: bytes, field: str) -> bytes:
    """Two-byte length followed by the data."""
    size = len(data)
    if size > 0xFFFF:
        raise ValueError(f"{field} is {size} bytes; MQTT allows at most 65535")
    return size.to_bytes(2, "big") + data


def encode_utf8(text: str, field: str) -> bytes:
    """An MQTT UTF-8 string: two-byte length followed by the encoded text."""
    return encode_binary(text.encode(), field)
