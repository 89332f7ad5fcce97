"""The fine-tune job table and progress logs, shared by the app, the worker and job processes.

Jobs live in SQLite (``<data>/finetune/jobs.sqlite3``), each with its folder
(``<data>/finetune/jobs/<job>/``: the checked examples, ``progress.jsonl`` with one JSON
object per event, ``output.log``, and ``staging/`` while model folders are written).
Every change is one ``BEGIN IMMEDIATE`` transaction, so all three processes can write.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InputError
from ..core.paths import data_dir

ACTIVE_STATES = ("running", "publishing")
FINISHED_STATES = ("done", "failed", "cancelled")
MAX_UNFINISHED = 4  # queued or running jobs, all owners together (each holds its examples on disk)
MAX_UNFINISHED_PER_OWNER = 1
SCHEMA = """CREATE TABLE IF NOT EXISTS jobs(
    id TEXT PRIMARY KEY, modality TEXT NOT NULL, status TEXT NOT NULL, spec TEXT NOT NULL,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL, pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0, error TEXT, result TEXT)"""

log = logging.getLogger(__name__)


def finetune_dir() -> Path:
    return data_dir() / "finetune"


# --- the job table ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    id: str
    modality: str
    status: str  # queued, running, publishing, done, failed, cancelled
    spec: dict
    created_at: float
    started_at: float | None
    finished_at: float | None
    pid: int | None
    cancel_requested: bool
    error: str | None
    result: dict | None

    @property
    def folder(self) -> Path:
        return finetune_dir() / "jobs" / self.id

    @classmethod
    def from_row(cls, row) -> "Job":
        return cls(row["id"], row["modality"], row["status"], json.loads(row["spec"]), row["created_at"],
                   row["started_at"], row["finished_at"], row["pid"], bool(row["cancel_requested"]), row["error"],
                   json.loads(row["result"]) if row["result"] else None)


class JobStore:
    """The job table."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root or finetune_dir())
        self.root.mkdir(parents=True, exist_ok=True)
        with self.transaction() as conn:
            conn.execute(SCHEMA)

    @contextmanager
    def transaction(self):
        conn = sqlite3.connect(self.root / "jobs.sqlite3", timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def check_quota(self, owner: str | None, conn=None) -> None:
        """Refuse a new job past ``MAX_UNFINISHED`` unfinished jobs in all, or past
        ``MAX_UNFINISHED_PER_OWNER`` for ``owner``: one person cannot fill the queue or the disk."""
        if conn is None:
            with self.transaction() as conn:
                return self.check_quota(owner, conn)
        finished = ",".join("?" * len(FINISHED_STATES))
        unfinished = [json.loads(spec).get("owner") for (spec,) in conn.execute(
            f"SELECT spec FROM jobs WHERE status NOT IN ({finished})", FINISHED_STATES)]
        if len(unfinished) >= MAX_UNFINISHED:
            raise InputError(f"{len(unfinished)} fine-tune jobs are waiting or running, the most the server takes: "
                             "try again when one has finished")
        if owner and unfinished.count(owner) >= MAX_UNFINISHED_PER_OWNER:
            raise InputError(f"{owner} already has a fine-tune job waiting or running: wait for it to finish, "
                             "or cancel it, before starting another")

    def add(self, job_id: str, modality: str, spec: dict) -> Job:
        """Queue a job, within the quota (checked in the same transaction, so two quick
        submits cannot both pass it)."""
        with self.transaction() as conn:
            self.check_quota(spec.get("owner"), conn)
            conn.execute("INSERT INTO jobs(id, modality, status, spec, created_at) VALUES (?, ?, 'queued', ?, ?)",
                         (job_id, modality, json.dumps(spec), time.time()))
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise InputError(f"no fine-tune job {job_id!r}")
        return Job.from_row(row)

    def jobs(self) -> list[Job]:
        """Newest first."""
        with self.transaction() as conn:
            return [Job.from_row(r) for r in conn.execute("SELECT * FROM jobs ORDER BY created_at DESC, id DESC")]

    def claim_next(self) -> Job | None:
        """The oldest queued job, now marked running."""
        with self.transaction() as conn:
            row = conn.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, id LIMIT 1").fetchone()
            if row is None:
                return None
            conn.execute("UPDATE jobs SET status = 'running', started_at = ? WHERE id = ?", (time.time(), row["id"]))
        return self.get(row["id"])

    def update(self, job_id: str, **fields) -> None:
        fields = {k: json.dumps(v) if k == "result" else v for k, v in fields.items()}
        with self.transaction() as conn:
            conn.execute(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?",
                         (*fields.values(), job_id))

    def finish(self, job_id: str, status: str, error: str | None = None, result: dict | None = None) -> None:
        self.update(job_id, status=status, error=error, finished_at=time.time(),
                    **({"result": result} if result is not None else {}))

    def request_cancel(self, job_id: str) -> Job:
        """Queued: cancelled now. Running: flagged (the caller stops the process). Returns the job as it was."""
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise InputError(f"no fine-tune job {job_id!r}")
            if row["status"] == "queued":
                conn.execute("UPDATE jobs SET status = 'cancelled', cancel_requested = 1, finished_at = ? WHERE id = ?",
                             (time.time(), job_id))
            elif row["status"] == "running":
                conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        return Job.from_row(row)


class ProgressLog:
    """One JSON object per line: start, evaluation, step, epoch, saved, done, error, cancelled."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, event: str, **fields) -> None:
        line = json.dumps({"time": round(time.time(), 2), "event": event, **fields})
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        log.info(line)  # the job process's output.log, beside the progress file


def read_progress(job: Job) -> list[dict]:
    path = job.folder / "progress.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # the line being written
            continue
    return events
