"""Queue order as a column: it was SQLite's hidden rowid, which PostgreSQL lacks.

Revision ID: 0002
Revises: 0001
"""
import time

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("queue_items", sa.Column("position", sa.Integer))
    op.create_index("queue_items_order", "queue_items", ["queue", "position"])
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":  # only SQLite databases from before this revision hold rows here
        op.execute("UPDATE queue_items SET position = rowid")
    if sa.inspect(bind).has_table("schema_version"):
        # The pre-Alembic store refuses a version it does not know, instead of writing rows without a position.
        op.execute(sa.text("INSERT INTO schema_version VALUES (2, :now)").bindparams(now=time.time()))
