"""Per-queue instructions for annotators, and a text item's context (the dialogue turns
before it), shown above the item.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("queues", sa.Column("instructions", sa.Text))
    op.add_column("items", sa.Column("context", sa.Text))  # JSON list of the turns before a dialogue turn
