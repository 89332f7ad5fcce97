"""The file kinds and size limits each modality accepts: one list for every reader,
the app and the annotation import."""
from __future__ import annotations

IMAGE_KINDS = ("jpg", "jpeg", "png", "bmp", "webp", "gif", "tif", "tiff")
AUDIO_KINDS = ("wav", "flac", "ogg", "oga", "opus", "mp3", "webm", "m4a", "aac", "weba")
VIDEO_KINDS = ("mp4", "m4v", "mov", "avi", "mkv", "webm", "flv", "mpg", "mpeg")
MAX_IMAGE_MB = 25
MAX_AUDIO_MB = 200.0
MAX_VIDEO_MB = 500.0
