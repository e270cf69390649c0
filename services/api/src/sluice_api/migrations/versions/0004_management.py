"""management: a device token's serie_number is unique within its account

Revision ID: 0004
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Before this revision duplicates were allowed: keep the serial on the oldest token.
    op.execute(
        sa.text(
            "UPDATE device_tokens SET serie_number = NULL "
            "WHERE serie_number IS NOT NULL AND id NOT IN ("
            "SELECT MIN(id) FROM device_tokens WHERE serie_number IS NOT NULL "
            "GROUP BY account_id, serie_number)"
        )
    )
    with op.batch_alter_table("device_tokens", schema=None) as batch_op:
        batch_op.create_index(
            "uq_device_tokens_account_serie", ["account_id", "serie_number"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("device_tokens", schema=None) as batch_op:
        batch_op.drop_index("uq_device_tokens_account_serie")
