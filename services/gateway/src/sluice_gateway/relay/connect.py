"""Opening and closing one gmqtt connection, and saying in plain words why it failed."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

import gmqtt
from gmqtt.mqtt.handler import MQTTConnectError

from sluice_gateway.relay.model import RelayDefinition, TlsOptions

log = logging.getLogger("sluice.gateway.relay")
# gmqtt narrates every packet at INFO; the relay logs what matters itself.
GMQTT_LOG = logging.getLogger("sluice.gateway.relay.gmqtt")

_CREDENTIALS = {4, 5, 134, 135, 140}
_DISCONNECT_REASONS = {
    0x87: "not authorized",
    0x89: "server busy",
    0x8B: "server shutting down",
    0x8D: "keep alive timeout",
    0x8E: "session taken over: another client connected with the same client id",
    0x97: "quota exceeded",
    0x9C: "use another server",
    0x9D: "server moved",
}


def describe_refusal(exc: MQTTConnectError) -> str:
    code = getattr(exc, "_code", None)
    text = getattr(exc, "message", str(exc)).replace("Connection Refused: ", "")
    hint = ""
    if code in _CREDENTIALS:
        hint = ": check the relay's username and password (and the broker's ACL)"
    elif code in (2, 133):
        hint = ": the broker rejects this client id; set another one"
    elif code in (1, 132):
        hint = ": the broker does not speak this MQTT version; change 'version'"
    return f"the broker refused the connection ({text}, code {code}){hint}"


def describe_disconnect(packet: Any) -> str:
    if isinstance(packet, bytes | bytearray) and packet:
        code = packet[0]
        return f"the broker closed the connection: {_DISCONNECT_REASONS.get(code, hex(code))}"
    return "connection to the broker lost"


def tls_context(tls: TlsOptions) -> ssl.SSLContext:
    """A client context from PEM text: the CA to trust (else the system's), a client cert."""
    context = ssl.create_default_context(cadata=tls.ca) if tls.ca else ssl.create_default_context()
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert and tls.key:
        # ssl loads a certificate chain only from files: a private directory, gone at once.
        with tempfile.TemporaryDirectory(prefix="sluice-relay-") as tmp:
            paths = []
            for name, text in (("cert.pem", tls.cert), ("key.pem", tls.key)):
                path = Path(tmp, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
                paths.append(path)
            context.load_cert_chain(paths[0], paths[1])
    return context


class GmqttClient(gmqtt.Client):  # type: ignore[misc]
    """gmqtt's client without its reconnect loop (the relay reconnects, with backoff)."""

    async def reconnect(self, delay: bool = False) -> None:
        return None

    @property
    def downgraded(self) -> bool:
        """gmqtt fell back to 3.1.1 because the broker refused MQTT 5."""
        return bool(self._connection_state.protocol_version != 5)


async def close(client: GmqttClient) -> None:
    """DISCONNECT and close, unless the socket is already gone (gmqtt would warn)."""
    connection = client._connection  # gmqtt has no public "is the socket open?"
    if connection is None or connection.is_closing():
        return
    try:
        await asyncio.wait_for(client.disconnect(), 5)
    except (OSError, TimeoutError, RuntimeError) as exc:
        log.debug("relay client close: %s", exc)


async def forget_session(definition: RelayDefinition, timeout: float = 5.0) -> None:
    """End the relay's session on the broker (a deleted relay leaves nothing queued there)."""
    client = GmqttClient(definition.client_id, clean_session=True, logger=GMQTT_LOG)
    if definition.username is not None:
        client.set_auth_credentials(definition.username, definition.password)
    try:
        context = tls_context(definition.tls) if definition.tls else False
        await asyncio.wait_for(
            client.connect(
                definition.host, definition.port, ssl=context, version=definition.version
            ),
            timeout,
        )
    except (MQTTConnectError, TimeoutError, OSError, ssl.SSLError, ValueError) as exc:
        log.info(
            "could not end the relay's broker session",
            extra={"relay": definition.id, "error": str(exc)},
        )
    await close(client)
