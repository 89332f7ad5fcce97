"""The annotation tables as the store's queries see them (the newest schema).

The migrations in ``migrations/versions`` create and change the real tables; this
module only describes the result, so queries are written once for SQLite and PostgreSQL.
"""
from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, ForeignKeyConstraint, Integer, MetaData, Table, Text

metadata = MetaData()

queues = Table(
    "queues", metadata,
    Column("name", Text, primary_key=True),
    Column("required_labels", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("instructions", Text),  # Markdown for the annotators, set by an admin
    Column("strategy", Text),  # the order items are served in (annotation.priority); None: insertion
)

items = Table(
    "items", metadata,
    Column("id", Integer, primary_key=True),
    Column("sha256", Text, nullable=False, unique=True),
    Column("modality", Text, nullable=False),
    Column("media", Text),  # relative to the store's root; None for text
    Column("text", Text),
    Column("original_name", Text),
    Column("created_at", Float, nullable=False),
    Column("context", Text),  # JSON list of the dialogue turns before a text item; None for others
)

queue_items = Table(
    "queue_items", metadata,
    Column("queue", Text, ForeignKey("queues.name"), primary_key=True),
    Column("item_id", Integer, ForeignKey("items.id"), primary_key=True),
    Column("source", Text, nullable=False),
    Column("added_at", Float, nullable=False),
    Column("position", Integer),  # queue order: the order items were added
    Column("priority", Float),  # higher is served first under the queue's strategy; None: not scored
    Column("scored_by", Text),  # the model whose prediction the priority rests on
    Column("score_error", Text),  # why the item could not be scored: it is not tried again
)

predictions = Table(
    "predictions", metadata,
    Column("id", Integer, primary_key=True),
    Column("item_id", Integer, ForeignKey("items.id"), nullable=False),
    Column("model", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("probs", Text, nullable=False),  # JSON
    Column("created_at", Float, nullable=False),
)

labels = Table(
    "labels", metadata,
    Column("id", Integer, primary_key=True),
    Column("queue", Text, nullable=False),
    Column("item_id", Integer, nullable=False),
    Column("annotator", Text, nullable=False),
    Column("label", Text),  # None: skipped
    Column("unsure", Integer, nullable=False),
    Column("token", Text, nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("superseded_by", Integer, ForeignKey("labels.id")),
    Column("superseded_at", Float),  # None: the annotator's current answer
    ForeignKeyConstraint(["queue", "item_id"], ["queue_items.queue", "queue_items.item_id"]),
)

claims = Table(
    "claims", metadata,
    Column("queue", Text, primary_key=True),
    Column("item_id", Integer, primary_key=True),
    Column("annotator", Text, nullable=False),
    Column("expires_at", Float, nullable=False),
)

history = Table(
    "history", metadata,
    Column("id", Integer, primary_key=True),
    Column("at", Float, nullable=False),
    Column("action", Text, nullable=False),
    Column("queue", Text),
    Column("item_id", Integer),
    Column("annotator", Text),
    Column("detail", Text),  # JSON
)
