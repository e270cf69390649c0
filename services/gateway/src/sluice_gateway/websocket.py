"""MQTT over WebSocket (RFC 6455, subprotocol ``mqtt``): handshake and framing only.

After the upgrade, the MQTT bytes carried in binary frames go to an ordinary
``Connection`` through ``FramedTransport``, which wraps everything it writes in frames.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import TYPE_CHECKING, Any

from sluice_gateway.connection import Connection

if TYPE_CHECKING:
    from sluice_gateway.node import GatewayNode

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HANDSHAKE = 8192
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def accept_key(key: bytes) -> str:
    return base64.b64encode(hashlib.sha1(key.strip() + GUID).digest()).decode()


def frame(payload: bytes, opcode: int = OP_BINARY) -> bytes:
    """A server frame (never masked)."""
    size = len(payload)
    head = bytes((0x80 | opcode,))
    if size < 126:
        head += bytes((size,))
    elif size < 1 << 16:
        head += bytes((126,)) + size.to_bytes(2, "big")
    else:
        head += bytes((127,)) + size.to_bytes(8, "big")
    return head + payload


def unmask(data: bytes, mask: bytes) -> bytes:
    size = len(data)
    if not size:
        return b""
    repeated = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(size, "big")


class FramedTransport:
    """The slice of an asyncio transport a Connection uses, writing binary frames."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        self._transport.write(frame(data))

    def writelines(self, chunks: list[bytes]) -> None:
        self._transport.write(frame(b"".join(chunks)))

    def close(self) -> None:
        if not self._transport.is_closing():
            self._transport.write(frame(b"\x03\xe8", OP_CLOSE))
        self._transport.close()

    def is_closing(self) -> bool:
        return bool(self._transport.is_closing())

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        return int(self._transport.get_write_buffer_size())

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)


class WebSocketProtocol(asyncio.Protocol):
    def __init__(self, node: GatewayNode, path: str, listener: str = "ws") -> None:
        self.node = node
        self.path = path
        self.listener = listener
        self.transport: Any = None
        self.buffer = bytearray()
        self.conn: Connection | None = None
        self.max_frame = node.default_max_packet * 4 + 1024

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.conn is None:
            self._handshake()
        if self.conn is not None:
            self._frames()

    def _reject(self, status: str, detail: str) -> None:
        body = detail.encode()
        self.transport.write(
            f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        self.transport.close()

    def _handshake(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HANDSHAKE:
                self._reject("431 Request Header Fields Too Large", "handshake too large")
            return
        head = bytes(self.buffer[:end]).decode("latin-1")
        del self.buffer[: end + 4]
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if len(parts) != 3 or parts[0] != "GET":
            self._reject("400 Bad Request", "expected a WebSocket upgrade (GET)")
            return
        if parts[1].split("?")[0] != self.path:
            self._reject("404 Not Found", f"MQTT over WebSocket is served at {self.path}")
            return
        key = headers.get("sec-websocket-key")
        if headers.get("upgrade", "").lower() != "websocket" or not key:
            self._reject("400 Bad Request", "missing WebSocket upgrade headers")
            return
        offered = [
            p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()
        ]
        protocol = next((p for p in offered if p in ("mqtt", "mqttv3.1")), None)
        if offered and protocol is None:
            self._reject("400 Bad Request", "subprotocol must be 'mqtt'")
            return
        response = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key.encode())}\r\n"
        )
        if protocol:
            response += f"Sec-WebSocket-Protocol: {protocol}\r\n"
        self.transport.write((response + "\r\n").encode())
        self.conn = Connection(self.node, self.listener)
        self.conn.connection_made(FramedTransport(self.transport))

    def _frames(self) -> None:
        buf = self.buffer
        conn = self.conn
        assert conn is not None
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            opcode = b0 & 0x0F
            masked = b1 & 0x80
            size = b1 & 0x7F
            pos = 2
            if size == 126:
                if len(buf) < 4:
                    return
                size = int.from_bytes(buf[2:4], "big")
                pos = 4
            elif size == 127:
                if len(buf) < 10:
                    return
                size = int.from_bytes(buf[2:10], "big")
                pos = 10
            if size > self.max_frame or not masked:
                conn.close("bad WebSocket frame (too large or unmasked)")
                return
            if len(buf) < pos + 4 + size:
                return
            mask = bytes(buf[pos : pos + 4])
            payload = unmask(bytes(buf[pos + 4 : pos + 4 + size]), mask)
            del buf[: pos + 4 + size]
            if opcode in (OP_BINARY, OP_CONT):
                conn.data_received(payload)
            elif opcode == OP_PING:
                self.transport.write(frame(payload, OP_PONG))
            elif opcode == OP_CLOSE:
                conn.close("WebSocket closed by the client")
                return
            elif opcode == OP_TEXT:
                conn.close("MQTT over WebSocket must use binary frames")
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.conn.connection_lost(exc)

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass
