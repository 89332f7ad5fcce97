"""Alembic's entry point: migrate on the connection the store passes in, inside the
write transaction it has already begun (so concurrent openers queue behind it)."""
from alembic import context

context.configure(connection=context.config.attributes["connection"], transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
