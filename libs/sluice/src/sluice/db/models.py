"""The schema: tenants and their devices, tokens and actions, and one data-point table.

Data points of every device live in one table indexed by (device, variable, time);
ids are derived from the message id so that a replayed record inserts nothing new.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both PostgreSQL (timestamptz) and SQLite (text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        # SQLite compares the stored text: keep one naive UTC format so ordering holds.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
    }


class Plan(Base):
    __tablename__ = "plans"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    limits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    plan: Mapped[str] = mapped_column(String(50), default="free")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccountToken(Base):
    __tablename__ = "account_tokens"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expire_at: Mapped[datetime | None] = mapped_column(default=None)
    last_authorization: Mapped[datetime | None] = mapped_column(default=None)


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(10), default="immutable")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    payload_parser: Mapped[str | None] = mapped_column(Text, default=None)
    chunk_period: Mapped[str | None] = mapped_column(String(10), default=None)
    chunk_retention: Mapped[int | None] = mapped_column(Integer, default=None)
    topic_acl: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_input: Mapped[datetime | None] = mapped_column(default=None)


class DeviceParam(Base):
    __tablename__ = "device_params"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    device_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("devices.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(100))
    value: Mapped[str] = mapped_column(Text, default="")
    sent: Mapped[bool] = mapped_column(Boolean, default=False)


class DeviceToken(Base):
    __tablename__ = "device_tokens"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("devices.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[str] = mapped_column(String(24), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    permission: Mapped[str] = mapped_column(String(5), default="full")
    expire_at: Mapped[datetime | None] = mapped_column(default=None)
    serie_number: Mapped[str | None] = mapped_column(String(100), default=None, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_authorization: Mapped[datetime | None] = mapped_column(default=None)

    # A serial number names one token within an account (integrations look tokens up by it).
    __table_args__ = (
        Index("uq_device_tokens_account_serie", "account_id", "serie_number", unique=True),
    )


class Action(Base):
    __tablename__ = "actions"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    type: Mapped[str] = mapped_column(String(20))
    trigger: Mapped[list[Any]] = mapped_column(default=list)
    action: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    # Message id of the record whose condition last locked or unlocked the action (None when
    # set through the API): a replay of that record after a crash redoes its effect once.
    lock_changed_by: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_triggered: Mapped[datetime | None] = mapped_column(default=None)


class DataPoint(Base):
    __tablename__ = "data_points"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(24))
    variable: Mapped[str] = mapped_column(String(100))
    value_type: Mapped[str] = mapped_column(String(8), default="null")
    value_number: Mapped[float | None] = mapped_column(Float, default=None)
    value_text: Mapped[str | None] = mapped_column(Text, default=None)
    value_bool: Mapped[bool | None] = mapped_column(Boolean, default=None)
    unit: Mapped[str | None] = mapped_column(String(25), default=None)
    group: Mapped[str | None] = mapped_column(String(100), default=None)
    time: Mapped[datetime] = mapped_column()
    location: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType, default=None)
    message_id: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_data_device_variable_time", "device_id", "variable", "time"),
        Index("ix_data_device_time", "device_id", "time"),
        Index("ix_data_device_group", "device_id", "group"),
        Index("ix_data_message", "message_id"),
        # first_insert / last_insert order by arrival, not by the time a device claims.
        Index("ix_data_device_created", "device_id", "created_at"),
    )


class Relay(Base):
    """A third-party MQTT broker the gateway subscribes to for an account (docs/relay.md)."""

    __tablename__ = "relays"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer, default=1883)
    # {"ca", "cert", "key" (PEM text), "verify"}; None: plain TCP.
    tls: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    username: Mapped[str | None] = mapped_column(String(255), default=None)
    # The broker needs it as given, so it is stored as given; the API never returns it.
    password: Mapped[str | None] = mapped_column(Text, default=None)
    client_id: Mapped[str | None] = mapped_column(String(128), default=None)
    mqtt_version: Mapped[str] = mapped_column(String(5), default="3.1.1")
    keepalive: Mapped[int] = mapped_column(Integer, default=60)
    subscriptions: Mapped[list[Any]] = mapped_column(default=list)
    mapping: Mapped[dict[str, Any]] = mapped_column(default=dict)
    downlink_topic: Mapped[str | None] = mapped_column(String(255), default="{topic}")
    ingest_retained: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RelayStatus(Base):
    """What the gateway that owns a relay last reported about it."""

    __tablename__ = "relay_status"

    relay_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("relays.id", ondelete="CASCADE"), primary_key=True
    )
    node: Mapped[str] = mapped_column(String(100), default="")
    state: Mapped[str] = mapped_column(String(20), default="connecting")
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_error_at: Mapped[datetime | None] = mapped_column(default=None)
    connected_at: Mapped[datetime | None] = mapped_column(default=None)
    messages_in: Mapped[int] = mapped_column(BigInteger, default=0)
    messages_out: Mapped[int] = mapped_column(BigInteger, default=0)
    dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
