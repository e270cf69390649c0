"""relays: third-party MQTT brokers an account relays from, and their reported status

Revision ID: 0003
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import sluice.db.models

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC_TIME = sluice.db.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    # New tables only: CREATE TABLE works as is on SQLite and PostgreSQL (no batch mode needed).
    op.create_table(
        "relays",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("account_id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("tls", JSON, nullable=True),
        sa.Column("username", sa.String(length=255), nullable=True),
        sa.Column("password", sa.Text(), nullable=True),
        sa.Column("client_id", sa.String(length=128), nullable=True),
        sa.Column("mqtt_version", sa.String(length=5), nullable=False),
        sa.Column("keepalive", sa.Integer(), nullable=False),
        sa.Column("subscriptions", JSON, nullable=False),
        sa.Column("mapping", JSON, nullable=False),
        sa.Column("downlink_topic", sa.String(length=255), nullable=True),
        sa.Column("ingest_retained", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_relays_account_id", "relays", ["account_id"])
    op.create_table(
        "relay_status",
        sa.Column("relay_id", sa.String(length=24), nullable=False),
        sa.Column("node", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", UTC_TIME, nullable=True),
        sa.Column("connected_at", UTC_TIME, nullable=True),
        sa.Column("messages_in", sa.BigInteger(), nullable=False),
        sa.Column("messages_out", sa.BigInteger(), nullable=False),
        sa.Column("dropped", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(["relay_id"], ["relays.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("relay_id"),
    )


def downgrade() -> None:
    op.drop_table("relay_status")
    op.drop_index("ix_relays_account_id", table_name="relays")
    op.drop_table("relays")
