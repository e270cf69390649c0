"""buckets: index data points by arrival for first_insert / last_insert

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain CREATE INDEX on both databases (SQLite needs no table rebuild for an index).
    op.create_index("ix_data_device_created", "data_points", ["device_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_data_device_created", table_name="data_points")
