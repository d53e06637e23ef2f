"""upload storage_key index: the sweeper asks whether any upload's object lies in a day folder

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 00:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's LIKE ignores the case of ASCII letters, and reads an index for a prefix only
        # when the index compares the same way.
        op.create_index(
            "ix_uploads_storage_key", "uploads", [sa.text("storage_key COLLATE NOCASE")]
        )
    else:
        # PostgreSQL reads an index for LIKE 'prefix%' only in byte order, whatever the
        # database's collation: pattern ops, which serve equality too.
        op.create_index(
            "ix_uploads_storage_key",
            "uploads",
            ["storage_key"],
            postgresql_ops={"storage_key": "varchar_pattern_ops"},
        )


def downgrade() -> None:
    op.drop_index("ix_uploads_storage_key", table_name="uploads")
