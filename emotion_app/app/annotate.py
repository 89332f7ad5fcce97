"""The Annotate tab: an annotator labels a queue's items one by one, with the model's
prediction beside each, keyboard shortcuts, undo and back; queues are filled by upload,
by the other tabs' "send to annotation", or from the command line, and exported here.

``build()`` is called inside an open ``gr.Blocks()`` + ``gr.Tab`` context.
Every handler is a plain function of the store and the components' values; the session
state only remembers which item is on screen, so several annotators (and several tabs
of one annotator) can work on a queue at once: the database decides who gets what.
"""
from __future__ import annotations

import html
import json
import logging
import shutil
import tempfile
import time
import uuid
from collections import Counter
from functools import partial
from pathlib import Path

import gradio as gr

from ..annotation import SENT_QUEUE, AnnotationStore, default_store, rescoring
from ..annotation.export import export_queue, queue_slug
from ..annotation.priority import STRATEGIES
from ..annotation.rounds import rounds
from ..core.errors import InputError
from ..core.inputs import elided, markdown_escape, with_file_names
from ..core.labels import LABELS
from ..core.paths import data_dir
from .access import User, auth_mode, current_user, on
from .charts import rounds_chart
from .messages import warning

log = logging.getLogger(__name__)
ROLE = "annotator"  # who sees the tab
HEARTBEAT_SECONDS = 30  # how often a page renews its item's lease (store.LEASE_SECONDS is a few of these)
RESCORE_POLL_SECONDS = 2  # how often an admin's page shows a running re-scoring's progress
MAX_REQUIRED_LABELS = 100  # labels one item may need (k): more is a typo, and past SQLite's integers a crash
# An import's answer names the first skipped uploads, each cut to its start (the name) and end
# (the reason): a zip may skip thousands of members, each named by up to 64 KB; the rest are counted.
MAX_LISTED_SKIPS = 10
MAX_SKIP_CHARS = 600

# Keys to element ids; the handler ignores keys typed into text fields and works only
# while the Annotate tab is showing (a hidden tab's buttons have no offsetParent). After a
# label or skip (key or click) further ones are ignored until the item line names another
# item (not the pending timer shown meanwhile), Back or Undo is pressed, or
# ANSWER_KEY_LOCK_MS pass: two answers given for one showing are sent as two requests that
# can reach the server in either order, and the store keeps the first to arrive, so a
# second answer could win over the first.
ANSWER_KEY_LOCK_MS = 3000
SHORTCUTS = {**{str(i): f"annotate-label-{i}" for i in range(1, len(LABELS) + 1)},
             "u": "annotate-unsure", "s": "annotate-skip", "b": "annotate-back", "z": "annotate-undo"}
SHORTCUTS_JS = """
if (!window.annotateShortcuts) {
  window.annotateShortcuts = %s;
  const answerLocked = () => {  // true while the item answered last is still the one on screen
    const line = (document.getElementById("annotate-item") || {}).innerText || "";
    const last = window.annotateLastAnswer;
    const moved = !last || (/^Item \\d+/.test(line) && line !== last.line);
    if (!moved && Date.now() - last.time < %d) return true;
    window.annotateLastAnswer = {line: line, time: Date.now()};
    return false;
  };
  const isAnswer = (id) => id.startsWith("annotate-label-") || id === "annotate-skip";
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const t = event.target;
    if (t && (t.isContentEditable || t.tagName === "TEXTAREA" || t.tagName === "SELECT" ||
        (t.tagName === "INPUT" && !["checkbox", "radio", "button", "range"].includes(t.type)))) return;
    const id = window.annotateShortcuts[event.key.toLowerCase()];
    const element = id && document.getElementById(id);
    if (!element || element.offsetParent === null) return;
    const target = element.matches("button, input") ? element : element.querySelector("input, button");
    if (!target) return;
    event.preventDefault();
    if (isAnswer(id) && answerLocked()) return;
    target.click();
  });
  document.addEventListener("click", (event) => {
    const hit = event.target.closest && event.target.closest("button[id^='annotate-']");
    if (!hit) return;
    if (hit.id === "annotate-back" || hit.id === "annotate-undo") {  // an answered item again: answers count anew
      window.annotateLastAnswer = null;
    } else if (event.isTrusted && isAnswer(hit.id) && answerLocked()) {  // a key's click was checked above
      event.stopPropagation();
      event.preventDefault();
    }
  }, true);
}
""" % (json.dumps(SHORTCUTS), ANSWER_KEY_LOCK_MS)


def send_to_annotation(modality: str, media_or_text, prediction: dict | None = None, dialogue: bool = False) -> str:
    """For the other tabs' "send to annotation" buttons: queue what was just classified,
    with its prediction, and say where it went (a group photo: one item per face; a
    dialogue: one item per turn). Where annotation is off (a public address without
    sign-in) nothing is stored: nobody could label it, and anyone could fill the disk."""
    if auth_mode() == "open":
        return "Not sent to annotation: annotation is off on this server (no sign-in is configured), so nothing is stored."
    try:
        ids = default_store().add_sent(modality, media_or_text, prediction, dialogue=dialogue)
    except (InputError, ValueError, OSError) as exc:  # a damaged or unreachable store is said, not raised
        reason = str(exc) if modality == "text" else with_file_names(str(exc), [media_or_text])
        return f"Not sent to annotation: {markdown_escape(reason)}"
    if len(ids) == 1:
        return f"Sent to the annotation queue **{SENT_QUEUE}** (item {ids[0]})."
    parts = "turns" if dialogue else "faces"
    return f"Sent {len(ids)} {parts} to the annotation queue **{SENT_QUEUE}** (items {', '.join(map(str, ids))})."


def send_text_to_annotation(text: str, dialogue: bool = False) -> str:
    """The Text tab's button: a dialogue (its checkbox on) is sent turn by turn."""
    return send_to_annotation("text", text, dialogue=bool(dialogue))


def rescore_after_model_change() -> str:
    """For the tabs that switch models (Models, Fine-tune): queues served by uncertainty (or
    another model-based order) follow the model now active, their remaining items re-scored
    in the background. Says which queues, or nothing."""
    try:
        queues = rescoring.start_outdated(default_store())
    except OSError as exc:  # an unavailable store does not undo the switch
        log.warning("queues not re-scored: %s", exc)
        return ""
    return f" Re-scoring {len(queues)} annotation queue(s) in the background: {', '.join(queues)}." if queues else ""


# --- what is on screen -----------------------------------------------------------------

def _state(item: int | None, revisit: bool = False, last: str = "") -> dict:
    """``view`` is the token of this showing of the item: a double-clicked label is stored once."""
    return {"item": item, "revisit": revisit, "view": uuid.uuid4().hex, "last": last}


def _kappa(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _agreement_text(store: AnnotationStore, queue: str, state: dict) -> str:
    """The previous item's votes (not the current one's: seeing them first would bias the
    annotator), a revisited item's votes, and the queue's kappas."""
    lines = []
    if state.get("last"):
        lines.append(f"Previous item: {state['last']}")
    if state.get("revisit") and state.get("item") is not None:
        lines.append(f"This item: {_votes_text(store, queue, state['item'])}")
    stats = store.agreement(queue)
    if stats["items_with_two_or_more_labels"]:
        parts = [f"Fleiss κ {_kappa(stats['fleiss_kappa'])} over {stats['items_with_two_or_more_labels']} "
                 f"items with 2+ labels, mean item agreement {stats['mean_item_agreement']:.0%}"]
        parts += [f"Cohen κ {pair}: {_kappa(c['kappa'])} ({c['items']} items)" for pair, c in stats["cohen_kappa"].items()]
        lines.append("Queue: " + " · ".join(parts))
    return "\n\n".join(lines)


def _votes_text(store: AnnotationStore, queue: str, item_id: int) -> str:
    counts = Counter(v.label for v in store.votes(queue, item_id)).most_common()
    if not counts:
        return "no labels yet"
    return (", ".join(f"{label} ×{n}" for label, n in counts)
            + f" (agreement {counts[0][1]}/{sum(n for _, n in counts)})")


def _escape(text: str) -> str:
    """Show a text item literally, not as Markdown, its line breaks kept."""
    return markdown_escape(text, block=True).replace("\n", "  \n")


def _text_item(item) -> str:
    """A text item, after the dialogue turns before it (each literal, as a quote)."""
    if not item.context:
        return _escape(item.text)
    before = "\n>\n".join(f"> {_escape(line)}" for line in item.context)
    return f"_Before this turn:_\n\n{before}\n\n**This turn:** {_escape(item.text)}"


def _instructions(store: AnnotationStore, queue: str):
    """The queue's instructions as the admin wrote them (Markdown; any HTML shown as text)."""
    text = store.instructions(queue) if queue in store.queue_names() else ""
    return gr.Markdown(value=f"**Instructions**\n\n{html.escape(text, quote=False)}" if text else "",
                       visible=bool(text))


def _render(store: AnnotationStore, queue: str, annotator: str, state: dict, note: str = ""):
    """Every output of a navigation event, in the order build_annotate_tab wires them."""
    progress = note
    if queue and queue in store.queue_names():
        p = store.progress(queue, annotator)
        progress = (f"**{markdown_escape(queue)}**: {p.complete} of {p.total} items done ({p.required} label{'s' * (p.required > 1)} "
                    f"each) · you: {p.labelled_by_me} labelled, {p.skipped_by_me} skipped, {p.left_for_me} left"
                    + (f"\n\n{note}" if note else ""))
    hidden = (gr.Image(value=None, visible=False), gr.Audio(value=None, visible=False),
              gr.Video(value=None, visible=False), gr.Markdown(value="", visible=False))
    state = {**state, "queue": queue}  # which queue the item on screen is in: Start elsewhere releases it
    shown_item = state.get("item") is not None
    instructions, heartbeat = _instructions(store, queue), gr.Timer(active=shown_item)  # renew the lease while shown
    if not shown_item:
        done = "**Nothing left for you in this queue.** Add items, choose another queue, or press Back." \
            if queue and annotator else ""
        agreement = _agreement_text(store, queue, state) if queue in store.queue_names() else ""
        return (state, progress, *hidden, done, agreement, False, None, "", state["view"], instructions, heartbeat)
    item = store.item(queue, state["item"])
    shown = list(hidden)
    if item.modality == "text":
        shown[3] = gr.Markdown(value=_text_item(item), visible=True)
    else:
        index = ("image", "audio", "video").index(item.modality)
        shown[index] = type(hidden[index])(value=str(item.media), visible=True)
    mine = store.answer(queue, item.id, annotator)
    info = (f"**Item {item.id}** · {item.modality} · {markdown_escape(item.original_name or 'text')} · "
            f"from {item.source}")
    if mine:
        info += f" · your answer: **{mine.label or 'skipped'}**" + (" (unsure)" if mine.unsure else "")
    return (state, progress, *shown, info, _agreement_text(store, queue, state),
            bool(mine and mine.unsure), None, "Predicting…", state["view"], instructions, heartbeat)


# --- handlers ------------------------------------------------------------------------

def start(store: AnnotationStore, queue: str, annotator: str, state: dict | None, queues: list[str] | None = None):
    """Show the annotator's next item of ``queue``; ``queues`` are the ones they may open
    (all when None), offered in the queue list."""
    queue, annotator = (queue or "").strip(), (annotator or "").strip()
    choices = gr.Dropdown(choices=store.queue_names() if queues is None else queues)
    if not queue or not annotator:  # locally, and once signed in, there is always an annotator: no sign-in to ask for
        todo = "Choose a queue, then press Start." if annotator else "Sign in and choose a queue, then press Start."
        return (*_render(store, queue, annotator, _state(None), todo), choices)
    left = (state or {}).get("queue")
    if left and left != queue and (state or {}).get("item") is not None:
        store.release(annotator, left)  # leaving a queue gives its item back at once
    if queue in store.queue_names():
        rescoring.start(store, queue)  # a fine-tune activated since the order was computed: re-score in the background
    item = store.next_item(queue, annotator)
    note = "" if queue in store.queue_names() else f"There is no queue named {markdown_escape(repr(queue))} yet: add items to create it."
    return (*_render(store, queue, annotator, _state(item.id if item else None), note), choices)


def _served_queue(state: dict | None, queue: str | None) -> str:
    """The queue the item on screen was served from; the list's choice only before one
    was (the list may show another queue, picked without pressing Start)."""
    return (state or {}).get("queue") or (queue or "").strip()


def answer(store: AnnotationStore, label: str | None, queue: str, annotator: str, unsure: bool, state: dict | None,
           shown: str | None = None):
    """Label (or skip, ``label=None``) the item on screen, then show the next one: the next
    answered item when walking back through earlier ones, else a new item.

    ``shown`` is the view token the browser had on screen when the key was pressed. A
    label whose token is not the current showing's (a second key pressed while the next
    item was on its way) is refused: it was meant for an item that is no longer shown,
    and must never land on one the annotator has not seen. The answer goes to the queue
    the item was served from, not to one picked in the list since without pressing Start."""
    annotator, state = (annotator or "").strip(), state or _state(None)
    queue = _served_queue(state, queue)
    if state.get("item") is None or not annotator:
        todo = "Press Start first." if annotator else "Sign in and press Start first."
        return _render(store, queue, annotator, state, todo)
    if shown != state["view"]:
        return _render(store, queue, annotator, state, "That key was pressed for the previous item, which is no "
                       "longer on screen: nothing was saved for this one.")
    item_id = state["item"]
    mine = store.answer(queue, item_id, annotator)
    unchanged = mine and (label is None or (mine.label == label and mine.unsure == bool(unsure)))
    if not unchanged:  # skipping an answered item moves on without erasing its label
        store.submit(queue, item_id, annotator, label, unsure, token=state["view"])
    answered = store.answered_items(queue, annotator)
    last = f"item {item_id}: {_votes_text(store, queue, item_id)}"
    if state.get("revisit") and item_id in answered and answered.index(item_id) + 1 < len(answered):
        return _render(store, queue, annotator, _state(answered[answered.index(item_id) + 1], True, last))
    item = store.next_item(queue, annotator)
    return _render(store, queue, annotator, _state(item.id if item else None, False, last))


def back(store: AnnotationStore, queue: str, annotator: str, state: dict | None):
    queue, annotator, state = (queue or "").strip(), (annotator or "").strip(), state or _state(None)
    answered = store.answered_items(queue, annotator) if queue and annotator else []
    current = state.get("item")
    position = answered.index(current) - 1 if state.get("revisit") and current in answered else len(answered) - 1
    if position < 0:
        return _render(store, queue, annotator, state, "Nothing earlier to go back to.")
    return _render(store, queue, annotator, _state(answered[position], True, state.get("last", "")))


def undo(store: AnnotationStore, queue: str, annotator: str, state: dict | None):
    queue, annotator, state = (queue or "").strip(), (annotator or "").strip(), state or _state(None)
    item_id = store.undo(queue, annotator) if queue and annotator else None
    if item_id is None:
        return _render(store, queue, annotator, state, "Nothing to undo.")
    restored = store.answer(queue, item_id, annotator)
    return _render(store, queue, annotator, _state(item_id, restored is not None, state.get("last", "")),
                   f"Undid your last answer on item {item_id}.")


def show_prediction(store: AnnotationStore, queue: str, state: dict | None, hidden: bool = False):
    """Runs after the item is on screen: the prediction is stored, or computed now (slow
    for video), and a missing or failing model is said, not hidden. An annotator who hides
    the pre-annotation (not to be swayed by it) is sent none."""
    if not state or state.get("item") is None:
        return None, ""
    if hidden:
        return None, "_The model's pre-annotation is hidden._"
    item = store.item(_served_queue(state, queue), state["item"])
    result = store.prediction(item)
    if isinstance(result, str):
        return None, result.replace(str(item.input), item.original_name or "the item")
    return result["probs"], f"Model **{result['model']}** predicts **{result['label']}**."


def _required(value: float | None) -> int:
    """The "labels required per item" field as a whole number, 0 when left empty; a
    negative, NaN or huge value (no queue needs more than ``MAX_REQUIRED_LABELS``) is refused."""
    if value is None or value == 0:
        return 0
    if not 1 <= value <= MAX_REQUIRED_LABELS:  # NaN compares false: refused too
        raise InputError(f"k must be 1 or more, at most {MAX_REQUIRED_LABELS}, not {value:g}")
    return int(value)


def import_files(store: AnnotationStore, queue: str, files, required: float | None):
    """Import uploads into the queue and say what came of each: every skipped one is a
    reason the admin needs, but only the first ``MAX_LISTED_SKIPS`` are named."""
    queue = (queue or "").strip()
    if not queue:
        return "Type a queue name first.", gr.Dropdown()
    if not files:
        return "Choose files or a zip to import.", gr.Dropdown()
    try:
        report = store.import_paths(queue, files, source="upload")
    except InputError as exc:  # a queue name the store refuses: nothing was imported
        return warning(exc), gr.Dropdown()
    lines = [f"**{markdown_escape(queue)}**: {report.summary()}."]
    try:
        k = _required(required)
    except InputError as exc:
        lines.append(f"{warning(exc)}: the queue's k is unchanged.")
    else:
        if k:
            store.set_required_labels(queue, k)
    lines += [f"- skipped {markdown_escape(elided(with_file_names(error, files), MAX_SKIP_CHARS))}"
              for error in report.errors[:MAX_LISTED_SKIPS]]
    if len(report.errors) > MAX_LISTED_SKIPS:
        lines.append(f"- … and {len(report.errors) - MAX_LISTED_SKIPS} more skipped")
    return "\n".join(lines), gr.Dropdown(choices=store.queue_names(), value=queue)


def renew(store: AnnotationStore, queue: str, annotator: str, state: dict | None) -> None:
    """The page's heartbeat: keep holding the item on screen, in the queue it was served
    from (the list may show another, picked without pressing Start), while the page is open."""
    queue = _served_queue(state, queue)
    if queue and state and state.get("item") is not None and not store.renew(queue, state["item"], annotator):
        log.info("%s's item %s in %r was given to someone else while on screen", annotator, state["item"], queue)


def set_instructions(store: AnnotationStore, queue: str, text: str):
    queue = (queue or "").strip()
    if not queue:
        return "Type a queue name first.", gr.Markdown()
    try:
        store.set_instructions(queue, text)
    except InputError as exc:
        return warning(exc), gr.Markdown()
    said = "set" if (text or "").strip() else "removed"
    return f"Instructions for **{markdown_escape(queue)}** {said}.", _instructions(store, queue)


def _rescore_status(store: AnnotationStore, queue: str):
    """The queue's order and its re-scoring's progress; the poll runs while it does."""
    job = rescoring.status(store, queue)
    order = f"**{markdown_escape(queue)}** is served in **{store.strategy(queue)}** order."
    return (order + (f" {job.describe()}." if job else ""), gr.Timer(active=bool(job and job.state == "running")))


def set_order(store: AnnotationStore, queue: str, strategy: str):
    """Serve the queue in ``strategy``'s order; its remaining items are re-scored in the background."""
    queue = (queue or "").strip()
    if not queue:
        return "Type a queue name first.", gr.Timer(active=False)
    try:
        store.set_strategy(queue, strategy)
    except InputError as exc:
        return warning(exc), gr.Timer(active=False)
    rescoring.start(store, queue, force=True)
    return _rescore_status(store, queue)


def queue_settings(store: AnnotationStore, user: User, queue: str):
    """An admin picking a queue sees the order it is served in, and its re-scoring; for
    others nothing changes."""
    queue = (queue or "").strip()
    if not user.has("admin") or queue not in store.queue_names():
        return gr.skip(), gr.skip(), gr.skip()
    return (gr.Dropdown(choices=list(STRATEGIES), value=store.strategy(queue)), *_rescore_status(store, queue))


def rescore_status(store: AnnotationStore, queue: str):
    queue = (queue or "").strip()
    if queue not in store.queue_names():
        return "", gr.Timer(active=False)
    return _rescore_status(store, queue)


def show_rounds(store: AnnotationStore, queue: str):
    """The queue's rounds (one per model that served its pre-annotations) as a chart."""
    queue = (queue or "").strip()
    rows = rounds(store, queue) if queue in store.queue_names() else []
    if not rows:
        return None, "No labels yet: rounds appear as the queue is labelled."
    listed = " · ".join(f"{markdown_escape(r['model'])}: {r['labels']} labels, {r['changed']} pre-annotations changed"
                        for r in rows)
    return rounds_chart(rows, f"Rounds of {html.escape(queue)}"), listed


def set_required(store: AnnotationStore, queue: str, required: float | None) -> str:
    queue = (queue or "").strip()
    if not queue:
        return "Type a queue name first."
    try:
        k = _required(required)
        store.set_required_labels(queue, k)
    except (InputError, ValueError) as exc:
        return warning(exc)
    return f"Each item of **{markdown_escape(queue)}** now needs {k} label(s)."


def export(store: AnnotationStore, queue: str):
    """Export to ``<data>/exports/<queue>-<time>/`` and offer it as one zip to download."""
    queue = (queue or "").strip()
    if queue not in store.queue_names():
        return None, f"No queue named {markdown_escape(repr(queue))}."
    folder = store.root / "exports" / f"{queue_slug(queue)}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        export_queue(store, queue, folder)
    except ValueError as exc:  # nothing labelled yet: the message names the queue
        return None, warning(exc)
    archive = shutil.make_archive(str(Path(tempfile.mkdtemp()) / folder.name), "zip", folder)
    return archive, (f"Exported {len(store.labelled_items(queue))} labelled items to `{folder}` "
                     "(`dataset/` for `datasets.load_from_disk`, parquet, CSV manifests).")


# --- layout ------------------------------------------------------------------------------

def _open_to(user: User, queue: str) -> str:
    """The queue name, if the signed-in user may label it (refused on the server, not hidden)."""
    queue = (queue or "").strip()
    if queue and not user.may_label(queue):
        raise gr.Error(f"{user.shown_as} may not open the queue {queue!r}.")
    return queue


def as_annotator(handler):
    """``handler(queue, annotator, *rest)`` for the signed-in user, on a queue open to them."""
    def call(user: User, queue: str, *rest):
        return handler(_open_to(user, queue), user.name, *rest)
    return call


def refresh(store: AnnotationStore, user: User):
    """What the tab shows this user: their queues, and the admin's import and export."""
    return (gr.Dropdown(choices=user.visible_queues(store.queue_names())), gr.Accordion(visible=user.has("admin")),
            gr.Accordion(visible=user.has("admin")), f"Annotating as **{markdown_escape(user.shown_as)}**."
            if user.has("annotator") else "Annotation needs the annotator role: sign in as an annotator.")


def build(store: AnnotationStore | None = None):
    """Create and wire the tab's components inside the caller's open Blocks/Tab context;
    returns what to run when the tab is shown. A store that cannot be opened (corrupt,
    unreadable, disk full) leaves the tab saying so and what to do; the other tabs start
    as usual."""
    try:
        store = store or default_store()
        store.media_dir.mkdir(parents=True, exist_ok=True)
    except Exception as exc:  # noqa: BLE001 - any failure here must not stop the app
        log.exception("annotation store unavailable")
        gr.Markdown(f"⚠️ **Annotation is unavailable:** the store in `{data_dir()}` cannot be opened "
                    f"({markdown_escape(str(exc))}). Nothing was changed. Move the damaged file aside (or free disk "
                    "space) and restart the app; the prediction tabs work meanwhile.", elem_id="annotate-unavailable")
        return None
    gr.set_static_paths([store.media_dir])  # media are shown from the store, not copied
    with gr.Row():
        who = gr.Markdown(elem_id="annotate-who")
        queue = gr.Dropdown(choices=[], value=None, allow_custom_value=True, label="Queue", elem_id="annotate-queue",
                            scale=2)
        start_btn = gr.Button("Start", variant="primary", elem_id="annotate-start", scale=1)
    with gr.Accordion("Add items / settings (admin)", open=False, visible=False) as settings:
        files = gr.File(file_count="multiple", label="Images, audio, video, a zip, .txt (one text per line) "
                        "or .csv (a 'text' column)", elem_id="annotate-files")
        with gr.Row():
            required = gr.Number(value=None, precision=0, label="Labels required per item (k; empty or 0 keeps "
                                 "the queue's, 1 for a new queue)", elem_id="annotate-required")
            import_btn = gr.Button("Import into queue", elem_id="annotate-import")
            required_btn = gr.Button("Set k", elem_id="annotate-set-required")
        with gr.Row():
            instructions_in = gr.Textbox(lines=3, label="Instructions for the queue's annotators (Markdown)",
                                         elem_id="annotate-instructions-in", scale=3)
            instructions_btn = gr.Button("Set instructions", elem_id="annotate-set-instructions", scale=1)
        with gr.Row():
            order = gr.Dropdown(choices=list(STRATEGIES), value=STRATEGIES[0], label="Order items are served in "
                                "(margin/entropy: the model's least sure first)", elem_id="annotate-order", scale=3)
            order_btn = gr.Button("Set order", elem_id="annotate-set-order", scale=1)
        import_msg = gr.Markdown(elem_id="annotate-import-msg")
        rescore_md = gr.Markdown(elem_id="annotate-rescore")
        rounds_btn = gr.Button("Show rounds", elem_id="annotate-show-rounds")
        rounds_plot = gr.Plot(label="Rounds: labels per model and its scores", elem_id="annotate-rounds")
        rounds_md = gr.Markdown(elem_id="annotate-rounds-msg")
    progress = gr.Markdown(elem_id="annotate-progress")
    instructions = gr.Markdown(visible=False, elem_id="annotate-instructions")
    with gr.Row():
        with gr.Column(scale=3):
            image = gr.Image(type="filepath", interactive=False, visible=False, label="Image", elem_id="annotate-image")
            audio = gr.Audio(type="filepath", interactive=False, visible=False, label="Audio", elem_id="annotate-audio")
            video = gr.Video(interactive=False, visible=False, label="Video", elem_id="annotate-video")
            text = gr.Markdown(visible=False, elem_id="annotate-text")
            item_md = gr.Markdown(elem_id="annotate-item")
        with gr.Column(scale=2):
            hide_prediction = gr.Checkbox(label="Hide the model's pre-annotation", elem_id="annotate-hide-prediction")
            prediction = gr.Label(num_top_classes=len(LABELS), label="Model prediction", elem_id="annotate-prediction")
            prediction_md = gr.Markdown(elem_id="annotate-prediction-msg")
    with gr.Row():
        label_btns = [gr.Button(f"{i} · {label}", elem_id=f"annotate-label-{i}", min_width=90)
                      for i, label in enumerate(LABELS, 1)]
    with gr.Row():
        unsure = gr.Checkbox(label="Unsure (U)", elem_id="annotate-unsure")
        skip_btn = gr.Button("Skip / next (S)", elem_id="annotate-skip")
        back_btn = gr.Button("Back (B)", elem_id="annotate-back")
        undo_btn = gr.Button("Undo (Z)", elem_id="annotate-undo")
    gr.Markdown("Keys: **1–7** label · **U** unsure · **S** skip · **B** back · **Z** undo")
    agreement = gr.Markdown(elem_id="annotate-agreement")
    with gr.Accordion("Export (admin)", open=False, visible=False) as exports:
        export_btn = gr.Button("Export queue", elem_id="annotate-export")
        export_msg = gr.Markdown(elem_id="annotate-export-msg")
        export_file = gr.File(label="Exported queue (zip)", interactive=False, elem_id="annotate-export-file")
    gr.HTML("", js_on_load=SHORTCUTS_JS, elem_id="annotate-shortcuts")
    state = gr.State(_state(None))
    view = gr.Textbox(visible=False, elem_id="annotate-view")  # the showing the browser has on screen
    heartbeat = gr.Timer(HEARTBEAT_SECONDS, active=False)
    rescore_poll = gr.Timer(RESCORE_POLL_SECONDS, active=False)

    outputs = [state, progress, image, audio, video, text, item_md, agreement, unsure, prediction, prediction_md, view,
               instructions, heartbeat]
    navigation = [queue, state]

    def predict_for(user: User, queue_name: str, shown: dict | None, hidden: bool = False):
        return show_prediction(store, _open_to(user, queue_name), shown, hidden)

    def then_predict(event, name: str) -> None:
        on(event.then, predict_for, [queue, state, hide_prediction], [prediction, prediction_md], role="annotator",
           with_user=True, api_name=f"annotate_{name}_prediction")

    def start_for(user: User, queue_name: str, shown: dict | None):
        return start(store, _open_to(user, queue_name), user.name, shown, user.visible_queues(store.queue_names()))

    def annotator_event(button, handler, inputs, api_name: str):
        then_predict(on(button.click, as_annotator(handler), inputs, outputs, role="annotator", with_user=True,
                        api_name=api_name), api_name.removeprefix("annotate_"))

    then_predict(on(start_btn.click, start_for, navigation, outputs + [queue], role="annotator", with_user=True,
                    api_name="annotate_start"), "start")
    for label, btn in zip(LABELS, label_btns):
        annotator_event(btn, partial(answer, store, label), [queue, unsure, state, view], f"annotate_{label}")
    annotator_event(skip_btn, partial(answer, store, None), [queue, unsure, state, view], "annotate_skip")
    annotator_event(back_btn, partial(back, store), navigation, "annotate_back")
    annotator_event(undo_btn, partial(undo, store), navigation, "annotate_undo")
    on(hide_prediction.change, predict_for, [queue, state, hide_prediction], [prediction, prediction_md],
       role="annotator", with_user=True, api_name="annotate_hide_prediction")
    on(heartbeat.tick, as_annotator(partial(renew, store)), navigation, None, role="annotator", with_user=True,
       api_name="annotate_heartbeat", show_progress="hidden")
    def release_on_leave(request: gr.Request, profile: gr.OAuthProfile | None = None) -> None:
        """Closing or reloading the page gives the user's items back at once (a page of
        theirs still open elsewhere takes its item back at its next heartbeat)."""
        user = current_user(request, profile)
        if user.name and user.has("annotator"):
            store.release(user.name)

    gr.context.Context.root_block.unload(release_on_leave)  # Gradio's unload takes no inputs: not an access.on event
    on(instructions_btn.click, partial(set_instructions, store), [queue, instructions_in], [import_msg, instructions],
       role="admin", api_name="annotate_set_instructions")
    on(order_btn.click, partial(set_order, store), [queue, order], [rescore_md, rescore_poll], role="admin",
       api_name="annotate_set_order")
    on(queue.change, partial(queue_settings, store), queue, [order, rescore_md, rescore_poll], role="annotator",
       with_user=True, api_visibility="private", show_progress="hidden")
    on(rescore_poll.tick, partial(rescore_status, store), queue, [rescore_md, rescore_poll], role="admin",
       api_name="annotate_rescore_status", show_progress="hidden")
    on(rounds_btn.click, partial(show_rounds, store), queue, [rounds_plot, rounds_md], role="admin",
       api_name="annotate_rounds")
    on(import_btn.click, partial(import_files, store), [queue, files, required], [import_msg, queue], role="admin",
       api_name="annotate_import")
    on(required_btn.click, partial(set_required, store), [queue, required], import_msg, role="admin",
       api_name="annotate_set_required")
    on(export_btn.click, partial(export, store), queue, [export_file, export_msg], role="admin",
       api_name="annotate_export")
    # Queues made since the page loaded (sent from other tabs, imported elsewhere) appear when the list opens.
    on(queue.focus, lambda user: gr.Dropdown(choices=user.visible_queues(store.queue_names())), None, queue,
       role="annotator", with_user=True, api_name="annotate_queues")
    return partial(refresh, store), [queue, settings, exports, who]
