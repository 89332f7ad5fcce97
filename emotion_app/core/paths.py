"""Where things live: the repository's bundled weights and the user's data folder."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUNDLED_WEIGHTS = ROOT / "weights"


def data_dir() -> Path:
    """Where user state lives: EMOTION_APP_DATA, else /data on a Space with storage, else ./data."""
    if os.environ.get("EMOTION_APP_DATA"):
        return Path(os.environ["EMOTION_APP_DATA"])
    if os.environ.get("SPACE_ID") and os.access("/data", os.W_OK):
        return Path("/data")
    return ROOT / "data"


def user_weights_dir() -> Path:
    return data_dir() / "weights"
