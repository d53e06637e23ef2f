"""audio-first jobs: the video manifest, the client's thumbnails and the open frame request

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("manifest", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("thumbnails", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("thumbnail_samples", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("frames_request", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("frames_request")
        batch.drop_column("thumbnail_samples")
        batch.drop_column("thumbnails")
        batch.drop_column("manifest")
