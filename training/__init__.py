"""Training routines that reproduce every committed model from ../shared/data."""
