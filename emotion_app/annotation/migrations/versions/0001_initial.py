"""The schema as the store made it before Alembic (its ``schema_version`` 1).

Revision ID: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

CURRENT = sa.text("superseded_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "queues",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("required_labels", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.CheckConstraint("required_labels >= 1"))
    op.create_table(
        "items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.Text, nullable=False, unique=True),
        sa.Column("modality", sa.Text, nullable=False),
        sa.Column("media", sa.Text),
        sa.Column("text", sa.Text),
        sa.Column("original_name", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False))
    op.create_table(
        "queue_items",
        sa.Column("queue", sa.Text, sa.ForeignKey("queues.name"), primary_key=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("added_at", sa.Float, nullable=False))
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("probs", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("item_id", "model"))
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("item_id", sa.Integer, nullable=False),
        sa.Column("annotator", sa.Text, nullable=False),
        sa.Column("label", sa.Text),
        sa.Column("unsure", sa.Integer, nullable=False, server_default="0"),
        sa.Column("token", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("superseded_by", sa.Integer, sa.ForeignKey("labels.id")),
        sa.Column("superseded_at", sa.Float),
        sa.ForeignKeyConstraint(["queue", "item_id"], ["queue_items.queue", "queue_items.item_id"]))
    # At most one current answer (label or skip) per annotator and item.
    op.create_index("labels_current", "labels", ["queue", "item_id", "annotator"], unique=True,
                    sqlite_where=CURRENT, postgresql_where=CURRENT)
    op.create_index("labels_by_annotator", "labels", ["queue", "annotator", "id"])
    op.create_table(
        "claims",
        sa.Column("queue", sa.Text, primary_key=True),
        sa.Column("item_id", sa.Integer, primary_key=True),
        sa.Column("annotator", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False))
    op.create_table(
        "history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("queue", sa.Text),
        sa.Column("item_id", sa.Integer),
        sa.Column("annotator", sa.Text),
        sa.Column("detail", sa.Text))
