"""A throwaway PostgreSQL server for the store tests: Debian's ``postgresql`` binaries
(setup.sh installs them), a cluster in a temporary folder, reached only through a Unix
socket there (no TCP port), stopped and deleted at the end.

PostgreSQL refuses to run as root, so as root the server runs as ``nobody``.
"""
from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

UNPRIVILEGED_USER = "nobody"
SUPERUSER = "postgres"
# Debian keeps the server binaries off PATH, one folder per major version.
SEARCH = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
SETTINGS = ("-c", "fsync=off", "-c", "max_connections=300", "-c", "listen_addresses=")


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl, or None where PostgreSQL is not installed."""
    for folder in SEARCH:
        if (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    on_path = shutil.which("pg_ctl")
    return Path(on_path).resolve().parent if on_path else None


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", UNPRIVILEGED_USER, "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def throwaway_server(bin_dir: Path):
    """Start a server; yields the folder of its Unix socket."""
    folder = Path(tempfile.mkdtemp(prefix="annotation-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(folder, UNPRIVILEGED_USER)
        cluster, logfile = folder / "cluster", folder / "server.log"
        subprocess.run(_as_server_user([str(bin_dir / "initdb"), "-D", str(cluster), "-U", SUPERUSER, "-A", "trust",
                                        "-E", "UTF8", "--no-locale", "--no-sync"]),
                       check=True, capture_output=True, text=True)
        options = " ".join([*SETTINGS, "-k", str(folder)])
        subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(cluster), "-o", options, "-l", str(logfile),
                                        "-w", "start"]), check=True, capture_output=True, text=True)
        log.info("throwaway PostgreSQL running with its socket in %s", folder)
        try:
            yield folder
        finally:
            subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(cluster), "-m", "immediate", "-w",
                                            "stop"]), capture_output=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def url(socket_folder: Path, database: str) -> str:
    return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={socket_folder}"
