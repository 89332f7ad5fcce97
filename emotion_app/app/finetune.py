"""The Fine-tune tab: upload labelled data (or pick an annotation queue), check it, start a
job, watch its loss and held-out scores live, compare before and after per class, and
activate the new version or roll back.

``build_finetune_tab()`` is called inside an open ``gr.Blocks()`` + ``gr.Tab``. The
handlers are plain functions of the components' values; the jobs themselves run in a
background worker process (``emotion_app.finetune``), so the app stays responsive and a
job outlives the browser tab that started it. A timer polls the job's progress log.
"""
from __future__ import annotations

import json
import logging
import time

import gradio as gr
import plotly.graph_objects as go

from ..core.errors import InputError, ModelNotFound
from ..core.inputs import markdown_escape
from ..finetune.data import MIN_PER_CLASS, MODALITIES
from ..finetune.jobs import FINISHED_STATES, JobStore, finetune_dir, read_progress
from ..finetune.runner import DEFAULT_EPOCHS, VALIDATION_LIMIT, activate, cancel, resume, rollback, submit, validate
from ..finetune.train import COMPARISON_HEADERS, comparison_rows, too_few_to_tell
from ..models.registry import active_model
from .access import User, on
from .annotate import rescore_after_model_change
from .charts import fit_margins
from .messages import HEAVY, warning

ROLE = "admin"  # who sees the tab
POLL_SECONDS = 2.0
LOG_LINES = 40
HELP = f"""Fine-tune the active model of a modality on your own labelled examples. Upload a **zip** with a
CSV manifest (`path,label`, or `text,label` for text) or with files in folders named by their label
(for text: `.txt` files, one text per line), or a **CSV** of `text,label` rows — or use an annotation
queue's agreed labels. For **video**, a zip of labelled clips (`path,label` and an optional `speaker` column,
or label folders): one job adapts the face model on the tracked face, the voice model on the speech and the
fusion weights, and keeps each speaker's clips on one side of the held-out split.
Every row is checked first; bad rows are listed and the rest can still be used
(each class needs {MIN_PER_CLASS} usable examples). A stratified fifth is held out to compare the model
before and after, together with a sample of the model's own validation data. Jobs run one at a time
in the background; the new version is saved beside the bundled models, never over them, and is only
used once you activate it."""

log = logging.getLogger(__name__)


def queue_names() -> list[str]:
    from ..annotation import default_store
    return default_store().queue_names()


def job_choices() -> list[tuple[str, str]]:
    return [(" · ".join(filter(None, (j.id, j.modality, j.status, j.spec["source"], j.spec.get("owner")))), j.id)
            for j in JobStore().jobs()]


def _source(upload, queue):
    """The upload, else a queue the store has: the queue dropdown takes any value (its
    choices are filled only on an admin's page load, not for API callers), so an unknown
    name is refused here, by name."""
    if upload:
        return upload, None
    if queue and queue not in queue_names():
        raise InputError(f"no annotation queue named {queue!r}")
    return None, queue or None


def check(upload, queue: str | None, modality: str, progress=gr.Progress()) -> str:
    try:
        report = validate(modality, *_source(upload, queue), lambda i, n: progress((i, n), desc="Checking rows"))
    except InputError as exc:
        return warning(exc)
    return report.markdown()


def start(user: User, upload, queue: str | None, modality: str, epochs: float, validation_limit: float | None,
          progress=gr.Progress()):
    """Check the data and queue the job as ``user``'s; the job list then shows (and selects) it."""
    try:
        upload, queue = _source(upload, queue)
        job, report = submit(modality, upload, queue, int(epochs or DEFAULT_EPOCHS), int(validation_limit or 0) or None,
                             progress=lambda i, n: progress((i, n), desc="Checking rows"), owner=user.name)
    except InputError as exc:
        return warning(exc), gr.Dropdown()
    if job is None:
        return "**Not started.**\n\n" + report.markdown(), gr.Dropdown()
    message = (f"**Job {job.id} submitted**: fine-tunes `{job.spec['member']}` (from the active "
               f"`{job.spec['base']}`) for {job.spec['epochs']} epoch(s); its status and progress are below.\n\n"
               + report.markdown())
    return message, gr.Dropdown(choices=job_choices(), value=job.id)


def cancel_job(job_id: str | None) -> str:
    if not job_id:
        return "Pick a job first."
    try:
        return cancel(job_id)
    except InputError as exc:  # an unknown id, say: the job dropdown takes any value
        return warning(exc)


def activate_job(job_id: str | None) -> str:
    if not job_id:
        return "Pick a finished job first."
    try:
        return activate(job_id) + rescore_after_model_change()
    except (InputError, ModelNotFound, ValueError) as exc:
        return warning(exc)


def rollback_job(job_id: str | None) -> str:
    if not job_id:
        return "Pick a job first."
    try:
        return rollback(job_id) + rescore_after_model_change()
    except (InputError, ModelNotFound, ValueError) as exc:
        return warning(exc)


# --- the job on screen -----------------------------------------------------------------------

def progress_figure(events: list[dict]) -> go.Figure:
    """Training loss per logged step and held-out accuracy / weighted F1 per epoch."""
    steps = [e for e in events if e["event"] == "step"]
    epochs = [e for e in events if e["event"] == "epoch"]
    fig = go.Figure()
    if steps:
        per_epoch = steps[-1]["steps"] / max(e["epochs"] for e in epochs) if epochs else None
        x = [s["step"] / per_epoch if per_epoch else s["epoch"] for s in steps]
        fig.add_scatter(x=x, y=[s["loss"] for s in steps], mode="lines+markers", name="training loss")
    for key, name in (("heldout_accuracy", "held-out accuracy"), ("heldout_weighted_f1", "held-out weighted F1")):
        fig.add_scatter(x=[e["epoch"] for e in epochs], y=[e[key] for e in epochs], mode="lines+markers",
                        name=name, yaxis="y2")
    fig.update_layout(title="Training progress", xaxis_title="epoch", yaxis_title="loss", height=320,
                      yaxis2=dict(title="held-out score", overlaying="y", side="right", range=[0, 1]),
                      margin=dict(l=50, r=50, t=40, b=30), legend=dict(orientation="h", y=-0.2))
    return fit_margins(fig)


def _status_text(job, events: list[dict]) -> str:
    lines = [f"**Job {job.id}** ({job.modality}, {markdown_escape(job.spec['source'])}): **{job.status}**"]
    started = next((e for e in events if e["event"] == "start"), None)
    if started:
        lines.append(f"Fine-tuning `{started['member']}` of `{started['base']}` on {started['train']} examples "
                     f"({started['heldout']} held out), {started['epochs']} epoch(s) on {started['device']}.")
    last = next((e for e in reversed(events) if e["event"] in ("step", "epoch")), None)
    if last and job.status not in FINISHED_STATES:
        lines.append(f"Epoch {last['epoch']}, step {last.get('step', '–')} of {last.get('steps', '–')}.")
    if job.status == "queued":
        lines.append("Waiting for the worker (one job runs at a time).")
    if job.error:
        lines.append(warning(job.error))  # it may name the upload
    if job.result:
        lines.append(f"New version(s): {', '.join(f'`{m}`' for m in job.result['new_models'])}; activate "
                     f"`{job.result['candidate']}` to use it.")
        caveat = too_few_to_tell(job.result)
        if caveat:
            lines.append(f"⚠️ {caveat}")
    try:
        lines.append(f"Active {job.modality} model: `{active_model(job.modality).ref}`.")
    except ModelNotFound:
        pass
    return "\n\n".join(lines)


def _log_tail(events: list[dict]) -> str:
    """The job's last progress events as lines a person reads ("14:02:11 epoch 1: loss 0.84, ...")."""
    lines = []
    for event in events[-LOG_LINES:]:
        when = time.strftime("%H:%M:%S", time.localtime(event.get("time", 0)))
        details = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in event.items() if k not in ("time", "event"))
        lines.append(f"{when} {event['event']}" + (f": {details}" if details else ""))
    return "\n".join(lines)


def show_job(job_id: str | None, seen: str | None = None):
    """Status, progress plot, before/after table, log tail, a change signature and the job
    list; when nothing changed since ``seen``, the components are left as they are. An
    unknown id (the job dropdown takes any value) stays picked and is named in the status,
    so the poll does not replace the message."""
    choices = job_choices()
    unknown = None
    try:
        job = JobStore().get(job_id) if job_id else None
    except InputError as exc:
        job, unknown = None, warning(exc)
    events = read_progress(job) if job else []
    signature = json.dumps([choices, job_id, job and job.status, len(events)])
    if signature == seen:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), seen, gr.skip()
    jobs = gr.Dropdown(choices=choices, value=job_id or None)
    if job is None:
        return unknown or "Start a job or pick one.", None, [], "", signature, jobs
    rows = comparison_rows(job.result) if job.result else []
    return _status_text(job, events), progress_figure(events), rows, _log_tail(events), signature, jobs


def refresh(user: User):
    """The queues and jobs, and the job poll, for admins only (they are not in the page a
    visitor loads)."""
    if not user.has("admin"):
        return gr.Dropdown(choices=[]), gr.Dropdown(choices=[]), gr.Timer(active=False)
    return gr.Dropdown(choices=queue_names()), gr.Dropdown(choices=job_choices()), gr.Timer(active=True)


def build():
    """Lays the tab out (admins only: the app hides it from others and every endpoint
    checks); returns what to run when the tab is shown."""
    try:
        resume()  # jobs left queued by a restart
    except Exception as exc:  # noqa: BLE001 - a broken job store must not stop the app
        log.exception("fine-tune job store unavailable")
        gr.Markdown(f"⚠️ **Fine-tuning is unavailable:** its job store in `{finetune_dir()}` cannot be opened "
                    f"({markdown_escape(str(exc))}). Nothing was changed. Move the damaged file aside (or free disk "
                    "space) and restart the app; the prediction tabs work meanwhile.", elem_id="finetune-unavailable")
        return None
    gr.Markdown(HELP)
    with gr.Row():
        upload = gr.File(label="Labelled data (zip or CSV)", file_types=[".zip", ".csv"], type="filepath",
                         elem_id="ft-upload")
        with gr.Column():
            # the choices are filled for admins on page load; any name is accepted (an API
            # caller's session has no choices) and the handlers check it against the store
            queue = gr.Dropdown([], value=None, allow_custom_value=True,
                                label="…or an annotation queue's agreed labels", elem_id="ft-queue")
            modality = gr.Dropdown(list(MODALITIES), value="text", label="Modality", elem_id="ft-modality")
            epochs = gr.Slider(1, 30, value=DEFAULT_EPOCHS, step=1, label="Epochs", elem_id="ft-epochs")
            limit = gr.Number(VALIDATION_LIMIT, precision=0, minimum=0, elem_id="ft-limit",
                              label="Own validation examples per set (0: all; more is slower)")
    with gr.Row():
        check_btn = gr.Button("Check data", elem_id="ft-check")
        start_btn = gr.Button("Start fine-tuning", variant="primary", elem_id="ft-start")
        cancel_btn = gr.Button("Cancel job", variant="stop", elem_id="ft-cancel")
    report = gr.Markdown(elem_id="ft-report")
    job = gr.Dropdown([], value=None, allow_custom_value=True, label="Job", elem_id="ft-job")  # as the queue
    status = gr.Markdown(elem_id="ft-status")
    plot = gr.Plot(label="Progress", elem_id="ft-plot")
    table = gr.Dataframe(headers=COMPARISON_HEADERS, label="Before and after (the model active when the job started "
                         "vs the new version)", interactive=False, elem_id="ft-compare")
    with gr.Row():
        activate_btn = gr.Button("Activate new version", elem_id="ft-activate")
        rollback_btn = gr.Button("Roll back", elem_id="ft-rollback")
    action = gr.Markdown(elem_id="ft-action")
    log_box = gr.Textbox(label="Log", lines=8, max_lines=12, interactive=False, elem_id="ft-log")
    seen = gr.State(None)
    timer = gr.Timer(POLL_SECONDS, active=False)  # started for admins by refresh

    view = [status, plot, table, log_box, seen, job]
    admin = {"role": "admin"}
    on(queue.focus, lambda: gr.Dropdown(choices=queue_names()), None, queue, api_name="finetune_queues", **admin)
    on(check_btn.click, check, [upload, queue, modality], report, api_name="finetune_check", **admin, **HEAVY)
    for button, handler, outputs, name in ((start_btn, start, [report, job], "finetune_start"),
                                           (cancel_btn, cancel_job, action, "finetune_cancel"),
                                           (activate_btn, activate_job, action, "finetune_activate"),
                                           (rollback_btn, rollback_job, action, "finetune_rollback")):
        inputs = [upload, queue, modality, epochs, limit] if handler is start else job
        event = on(button.click, handler, inputs, outputs, api_name=name, with_user=handler is start, **admin)
        on(event.then, show_job, job, view, api_visibility="private", **admin)
    on(job.input, show_job, job, view, api_name="finetune_job", **admin)
    on(timer.tick, show_job, [job, seen], view, api_name="finetune_poll", show_progress="hidden",
       concurrency_limit=None, **admin)  # a cheap read: never queued behind a long prediction
    return refresh, [queue, job, timer]
