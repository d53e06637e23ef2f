"""job client address: the address a job was created from, for the per-address share

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("client_address", sa.String(length=64), nullable=True))
        batch.create_index("ix_jobs_address_status", ["client_address", "status"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_address_status")
        batch.drop_column("client_address")
