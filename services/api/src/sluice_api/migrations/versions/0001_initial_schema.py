"""initial schema

Revision ID: 0001
Revises: 
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import sluice.db.models
from sluice.db.models import utcnow
from sluice.plans import DEFAULT_PLANS

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('plan', sa.String(length=50), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('settings', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sluice.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('data_points',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('device_id', sa.String(length=24), nullable=False),
    sa.Column('variable', sa.String(length=100), nullable=False),
    sa.Column('value_type', sa.String(length=8), nullable=False),
    sa.Column('value_number', sa.Float(), nullable=True),
    sa.Column('value_text', sa.Text(), nullable=True),
    sa.Column('value_bool', sa.Boolean(), nullable=True),
    sa.Column('unit', sa.String(length=25), nullable=True),
    sa.Column('group', sa.String(length=100), nullable=True),
    sa.Column('time', sluice.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('location', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=True),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=True),
    sa.Column('message_id', sa.String(length=40), nullable=True),
    sa.Column('created_at', sluice.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('data_points', schema=None) as batch_op:
        batch_op.create_index('ix_data_device_group', ['device_id', 'group'], unique=False)
        batch_op.create_index('ix_data_device_time', ['device_id', 'time'], unique=False)
        batch_op.create_index('ix_data_device_variable_time', ['device_id', 'variable', 'time'], unique=False)
        batch_op.create_index('ix_data_message', ['message_id'], unique=False)

    op.create_table('plans',
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('limits', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sluice.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sluice.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('account_tokens',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=24), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('created_at', sluice.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expire_at', sluice.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_authorization', sluice.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('account_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_tokens_account_id'), ['account_id'], unique=False)

    op.create_table('actions',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('account_id', sa.String(length=24), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('type', sa.String(length=20), nullable=False),
    sa.Column('trigger', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('action', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('tags', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('locked', sa.Boolean(), nullable=False),
    sa.Column('created_at', sluice.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sluice.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_triggered', sluice.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_actions_account_id'), ['account_id'], unique=False)

    op.create_table('devices',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('account_id', sa.String(length=24), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('type', sa.String(length=10), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('tags', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('payload_parser', sa.Text(), nullable=True),
    sa.Column('chunk_period', sa.String(length=10), nullable=True),
    sa.Column('chunk_retention', sa.Integer(), nullable=True),
    sa.Column('topic_acl', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sluice.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sluice.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_input', sluice.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_devices_account_id'), ['account_id'], unique=False)

    op.create_table('device_params',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('device_id', sa.String(length=24), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('sent', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('device_params', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_device_params_device_id'), ['device_id'], unique=False)

    op.create_table('device_tokens',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('device_id', sa.String(length=24), nullable=False),
    sa.Column('account_id', sa.String(length=24), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('permission', sa.String(length=5), nullable=False),
    sa.Column('expire_at', sluice.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('serie_number', sa.String(length=100), nullable=True),
    sa.Column('created_at', sluice.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_authorization', sluice.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('device_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_device_tokens_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_tokens_device_id'), ['device_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_tokens_serie_number'), ['serie_number'], unique=False)
    plans = sa.table(
        "plans",
        sa.column("name", sa.String),
        sa.column("limits", sa.JSON),
        sa.column("created_at", sluice.db.models.UTCDateTime(timezone=True)),
        sa.column("updated_at", sluice.db.models.UTCDateTime(timezone=True)),
    )
    now = utcnow()
    op.bulk_insert(
        plans,
        [
            {"name": name, "limits": limits, "created_at": now, "updated_at": now}
            for name, limits in DEFAULT_PLANS.items()
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table('device_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_device_tokens_serie_number'))
        batch_op.drop_index(batch_op.f('ix_device_tokens_device_id'))
        batch_op.drop_index(batch_op.f('ix_device_tokens_account_id'))

    op.drop_table('device_tokens')
    with op.batch_alter_table('device_params', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_device_params_device_id'))

    op.drop_table('device_params')
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_devices_account_id'))

    op.drop_table('devices')
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_actions_account_id'))

    op.drop_table('actions')
    with op.batch_alter_table('account_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_tokens_account_id'))

    op.drop_table('account_tokens')
    op.drop_table('plans')
    with op.batch_alter_table('data_points', schema=None) as batch_op:
        batch_op.drop_index('ix_data_message')
        batch_op.drop_index('ix_data_device_variable_time')
        batch_op.drop_index('ix_data_device_time')
        batch_op.drop_index('ix_data_device_group')

    op.drop_table('data_points')
    op.drop_table('accounts')
