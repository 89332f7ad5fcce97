"""Queue order as a choice: each queue's strategy (insertion, uncertainty, disagreement,
diversity) and each queued item's priority under it, the model that scored it, and why
it could not be scored (a broken item is flagged once, not re-scored forever).

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column("queues", sa.Column("strategy", sa.Text))  # None: insertion order
    op.add_column("queue_items", sa.Column("priority", sa.Float))  # higher first; None: not scored
    op.add_column("queue_items", sa.Column("scored_by", sa.Text))  # the model ref the priority rests on
    op.add_column("queue_items", sa.Column("score_error", sa.Text))
    op.create_index("queue_items_priority", "queue_items", ["queue", "priority"])
