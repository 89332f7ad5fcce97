"""Fine-tune jobs: submitted from the app or the command line, run one at a time by a
background worker, and published to the user's weights folder, never over ``weights/``.

    python -m emotion_app.finetune submit --modality text data.zip --epochs 3 --wait
    python -m emotion_app.finetune submit --modality image --queue NAME
    python -m emotion_app.finetune submit --modality video clips.zip --wait
    python -m emotion_app.finetune {status [JOB],cancel JOB,activate JOB,rollback JOB}

``submit`` checks the upload (``data``), stores its usable examples in the job's
folder, adds the job to the table (``jobs``) and starts ``python -m
emotion_app.finetune work`` in the background. The worker holds a lock file, so one runs
per machine and jobs queue; it runs each job, oldest first, as its own process (``...
run JOB``, doing ``train.fine_tune``). Cancel terminates that process. New model
folders are written in the job's ``staging/`` and renamed into ``<data>/weights/`` only
when everything succeeded, so a cancelled or failed job leaves no model behind.

A job starts from the model that was active when it was submitted, trains one member
(``tuners``) on a stratified four fifths of the upload — CUDA with bf16
autocast when available, else the CPU minus one core, so the app stays responsive — and
scores the model before and after on the held-out fifth and on a sample of the
modality's own validation data (when the shared data is present). Nothing is activated:
the user compares, then activates the new version or rolls back. A video job
(``video.fine_tune_clips``) adapts the face and voice models and fits the late-fusion
weights from labelled clips; activating it activates all three.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import InputError, ModelNotFound
from ..core.paths import ROOT, data_dir, user_weights_dir
from ..models.fusion import AUDIO, FUSION, IMAGE, fusion_model
from ..models.registry import active_model, set_active
from .clips import save_clips
from .data import MODALITIES, ValidationReport, check_rows, queue_rows, save_examples, upload_rows
from .jobs import ACTIVE_STATES, Job, JobStore, ProgressLog, finetune_dir
from .train import fine_tune
from .tuners import member_to_tune
from .video import fine_tune_clips

DEFAULT_EPOCHS = 5
HELDOUT = 0.2
VALIDATION_LIMIT = 500  # examples per own validation set: enough to see a change, minutes on a CPU


# --- submitting -------------------------------------------------------------------------------

def validate(modality: str, upload=None, queue: str | None = None, progress=None,
             workdir: Path | None = None) -> ValidationReport:
    """Read and check an upload (zip, CSV or folder) or a queue's agreed labels. A zip is
    unpacked into ``workdir`` when given (a video job copies its clips from there), else
    into a temporary folder."""
    if modality not in MODALITIES:
        raise InputError(f"cannot fine-tune {modality!r}; choose one of {', '.join(MODALITIES)}")
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="finetune-upload-") as tmp:
            return validate(modality, upload, queue, progress, Path(tmp))
    try:
        if upload:
            (rows, problems), notes = upload_rows(upload, modality, workdir), []
        elif queue:
            (rows, notes), problems = queue_rows(queue, modality), []
        else:
            raise InputError("give an upload (a zip or CSV) or choose an annotation queue")
    except InputError as exc:
        return ValidationReport(modality, problems=[str(exc)])
    report = check_rows(rows, modality, progress)
    report.problems[:0] = problems
    report.notes[:0] = notes
    return report


def submit(modality: str, upload=None, queue: str | None = None, epochs: int = DEFAULT_EPOCHS,
           validation_limit: int | None = VALIDATION_LIMIT, seed: int = 0, progress=None,
           start: bool = True, owner: str | None = None) -> tuple[Job | None, ValidationReport]:
    """Check the data and queue a job (None when nothing is usable) for ``owner``, within
    the job quota; starts the worker."""
    if not 1 <= int(epochs) <= 100:
        raise InputError(f"epochs must be between 1 and 100, got {epochs}")
    JobStore().check_quota(owner)  # before the slow check of the data; add() checks again
    with tempfile.TemporaryDirectory(prefix="finetune-upload-") as tmp:  # a video job's clips are copied from it
        report = validate(modality, upload, queue, progress, Path(tmp))
        try:
            models = models_to_tune(modality)
        except (KeyError, ValueError, ModelNotFound) as exc:
            report.problems.insert(0, str(exc))
            return None, report
        if not report.ok:
            return None, report
        job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        folder = finetune_dir() / "jobs" / job_id
        folder.mkdir(parents=True)
        if modality == "video":
            save_clips(folder, report.examples, report.labels, report.speakers)
        else:
            save_examples(folder / "examples.npz", report.examples, report.labels)
    (folder / "report.json").write_text(json.dumps(report.to_json(), indent=2))
    spec = {**models, "epochs": int(epochs), "heldout": HELDOUT, "seed": seed,
            "validation_limit": validation_limit, "source": Path(upload).name if upload else f"queue {queue}",
            "counts": report.counts, "owner": owner}
    try:
        job = JobStore().add(job_id, modality, spec)
    except InputError:
        shutil.rmtree(folder)
        raise
    if start:
        start_worker()
    return job, report


def models_to_tune(modality: str) -> dict:
    """The job's ``base`` and ``member`` (as the app shows them); for video also ``bases``
    and ``members`` by registry modality: the active face and voice models, the members
    trained, and the late-fusion model whose weights are fitted."""
    if modality != "video":
        base = active_model(modality)
        return {"base": base.ref, "member": member_to_tune(base).ref}
    bases = {m: active_model(m) for m in (IMAGE, AUDIO)}
    members = {m: member_to_tune(b).ref for m, b in bases.items()}
    bases = {**{m: b.ref for m, b in bases.items()}, FUSION: fusion_model("late").entry.ref}
    return {"base": " + ".join(bases.values()), "member": " + ".join(members.values()), "bases": bases,
            "members": members}


def start_worker() -> None:
    """Start a background worker (it exits at once if another one holds the lock)."""
    finetune_dir().mkdir(parents=True, exist_ok=True)
    with open(finetune_dir() / "worker.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "emotion_app.finetune", "work"], cwd=ROOT,
                                env={**os.environ, "EMOTION_APP_DATA": str(data_dir())}, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    threading.Thread(target=proc.wait, daemon=True).start()  # reap it when it exits


def resume() -> None:
    """After a restart: a worker for jobs still queued, or left marked as running."""
    if any(j.status in ("queued", *ACTIVE_STATES) for j in JobStore().jobs()):
        start_worker()


def cancel(job_id: str) -> str:
    job = JobStore().request_cancel(job_id)
    if job.status == "queued":
        return f"Job {job_id} cancelled before it started."
    if job.status == "running":
        if job.pid:
            try:
                os.killpg(job.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        return f"Job {job_id}: cancelling; nothing it trained is kept."
    if job.status == "publishing":
        return f"Job {job_id} is already saving its model; it can no longer be cancelled."
    return f"Job {job_id} already {job.status}."


def _candidates(job: Job) -> dict[str, str]:
    """Registry modality -> the job's model to activate (a video job has one per modality)."""
    result = job.result or {}
    return result.get("candidates") or {job.modality: result.get("candidate")}


def _bases(job: Job) -> dict[str, str]:
    return job.spec.get("bases") or {job.modality: job.spec["base"]}


def activate(job_id: str) -> str:
    job = JobStore().get(job_id)
    if job.status != "done":
        raise InputError(f"job {job_id} is {job.status}: it has no model to activate")
    for modality, ref in _candidates(job).items():
        set_active(modality, ref)
    return " ".join(f"`{ref}` is now the active {modality} model." for modality, ref in _candidates(job).items())


def rollback(job_id: str) -> str:
    """Make the models the job started from active again (the default when it is the default),
    for each modality whose active model is the job's: another model chosen since is left alone."""
    job = JobStore().get(job_id)
    messages = []
    for modality, candidate in _candidates(job).items():
        active = active_model(modality).ref
        if active != candidate:
            messages.append(f"Nothing rolled back: `{active}` is the active {modality} model, not job {job_id}'s model.")
            continue
        set_active(modality, None)
        if active_model(modality).ref != _bases(job)[modality]:
            set_active(modality, _bases(job)[modality])
        messages.append(f"`{active_model(modality).ref}` is the active {modality} model again.")
    return " ".join(messages)


# --- the worker ---------------------------------------------------------------------------------

@contextmanager
def _worker_lock():
    """The lock file's descriptor, or None when another worker holds it. Job processes
    inherit it, so the lock lasts while a job runs even if its worker dies."""
    fd = os.open(finetune_dir() / "worker.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield fd
    finally:
        os.close(fd)


def work() -> None:
    """Run queued jobs one at a time until none is left."""
    store = JobStore()
    while True:
        with _worker_lock() as lock:
            if lock is None:
                return
            for job in store.jobs():  # with the lock held, a job marked running has no process left
                if job.status in ACTIVE_STATES:
                    store.finish(job.id, "failed", error="interrupted: the app or machine stopped during the job")
                    shutil.rmtree(job.folder / "staging", ignore_errors=True)
            while (job := store.claim_next()) is not None:
                _run_job_process(store, job, lock)
        if not any(j.status == "queued" for j in store.jobs()):
            return


def _run_job_process(store: JobStore, job: Job, lock: int) -> None:
    with open(job.folder / "output.log", "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "emotion_app.finetune", "run", job.id], cwd=ROOT,
                                env={**os.environ, "EMOTION_APP_DATA": str(data_dir())}, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, pass_fds=(lock,), start_new_session=True)
    store.update(job.id, pid=proc.pid)
    code = proc.wait()
    job = store.get(job.id)
    if job.status in ACTIVE_STATES:  # the process died without saying why (killed, out of memory)
        if job.cancel_requested:
            store.finish(job.id, "cancelled")
        else:
            store.finish(job.id, "failed", error=f"the training process exited with status {code}")
        shutil.rmtree(job.folder / "staging", ignore_errors=True)


# --- one job ------------------------------------------------------------------------------------

class Cancelled(Exception):
    """Raised in the job process when it is asked to stop."""


_publishing = threading.Event()  # set once the job's folders are being renamed into place


def _raise_cancelled(signum, frame):
    if not _publishing.is_set():  # a cancel arriving while the model is being published is too late
        raise Cancelled()


def _check_cancel(store: JobStore, job_id: str) -> None:
    if store.get(job_id).cancel_requested:
        raise Cancelled()


def run_job(job_id: str) -> int:
    """The job process: train, evaluate, stage, publish. Exit status 0 done, 1 failed, 3 cancelled."""
    signal.signal(signal.SIGTERM, _raise_cancelled)
    store = JobStore()
    job = store.get(job_id)
    log = ProgressLog(job.folder / "progress.jsonl")
    try:
        store.update(job_id, pid=os.getpid())
        _check_cancel(store, job_id)
        tune = fine_tune_clips if job.modality == "video" else fine_tune
        staged, result = tune(job, log, lambda: _check_cancel(store, job_id))
        publish(store, job, staged, result)
        log.write("done", candidate=result["candidate"], seconds=result["seconds"])
        return 0
    except Cancelled:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log.write("cancelled")
        store.finish(job_id, "cancelled")
        return 3
    except Exception as exc:
        traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}"
        log.write("error", message=message)
        store.finish(job_id, "failed", error=message)
        return 1
    finally:
        shutil.rmtree(job.folder / "staging", ignore_errors=True)


def publish(store: JobStore, job: Job, staged: list[Path], result: dict) -> None:
    """Rename the staged folders into the user weights folder. The status changes to
    'publishing' in the same transaction that checks for a cancel request, so a cancel
    either comes first (and nothing is published) or is refused."""
    with store.transaction() as conn:
        if conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job.id,)).fetchone()[0]:
            raise Cancelled()
        conn.execute("UPDATE jobs SET status = 'publishing' WHERE id = ?", (job.id,))
        _publishing.set()
    user_weights_dir().mkdir(parents=True, exist_ok=True)
    for folder in staged:  # the member before the ensemble that names it
        os.rename(folder, user_weights_dir() / folder.name)
    store.finish(job.id, "done", result=result)
