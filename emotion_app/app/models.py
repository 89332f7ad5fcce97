"""The Models tab: the registry with metrics cards and confusion matrices; switch the
active model."""
from __future__ import annotations

import gradio as gr

from ..core.errors import ModelNotFound
from ..models.fusion import FUSION, method_of
from ..models.registry import active_model, get_entry, list_models, set_active
from .access import User, on
from .annotate import rescore_after_model_change
from .charts import confusion_heatmap
from .messages import warning

HEADERS = ["model", "modality", "architecture", "source", "active", "evaluated on", "accuracy", "weighted F1"]


def models_table() -> list[list]:
    """Models tab: one row per registry entry."""
    rows = []
    for e in list_models():
        active = e.modality != "fusion" and active_model(e.modality).ref == e.ref
        name, scores = e.evaluation("headline") or (None, None)
        rows.append([e.ref, e.modality, e.architecture, e.source, "✓" if active else "",
                     name or "", round(scores["accuracy"], 4) if scores else None,
                     round(scores["weighted_f1"], 4) if scores else None])
    return rows


def _entry(model):
    """The picked model's registry entry. The API may send any JSON (a number, a list):
    read as text, it is an unknown model, said with the ids there are."""
    return get_entry(str(model))


def model_card(model: str | None):
    """Models tab: the card's Markdown and a confusion-matrix heatmap of its headline evaluation."""
    if not model:
        return "Pick a model.", None
    try:
        entry = _entry(model)
    except ModelNotFound as exc:
        return warning(exc), None
    card = (entry.folder / "README.md").read_text()
    card = card.split("---", 2)[2] if card.startswith("---") else card  # drop the Hub front matter
    head, training, rest = card.partition("\n## Training\n")
    if training:  # the training record (settings, per-epoch history) is long: folded
        card = f"{head}\n<details><summary>Training record</summary>\n\n{rest.strip()}\n\n</details>\n"
    headline = entry.evaluation("headline")
    if headline is None:
        return card, None
    name, metrics = headline
    return card, confusion_heatmap(metrics["confusion_matrix"], f"{entry.ref} on {name}")


def activate(model: str | None):
    """Models tab: make the chosen model the active one for its modality."""
    if not model:
        return models_table(), "Pick a model."
    try:
        entry = _entry(model)
        set_active(entry.modality, entry.ref)
    except (ModelNotFound, ValueError) as exc:
        return models_table(), warning(exc)
    served = (f" The Video and Tri-modal tabs serve it when their fusion method is **{method_of(entry.id)}**."
              if entry.modality == FUSION else "")
    return (models_table(), f"`{entry.ref}` is now the active {entry.modality} model.{served}"
            + rescore_after_model_change())


def model_choices() -> list[str]:
    return [entry.ref for entry in list_models()]


def refresh(user: User):
    """The registry as it is now (fine-tunes published since the page loaded, the active
    marks after an activation elsewhere); switching models is for admins."""
    return models_table(), gr.Dropdown(choices=model_choices()), gr.Button(visible=user.has("admin"))


def build():
    """Lays the tab out; returns what to run when the tab is selected (``refresh``)."""
    models = gr.Dataframe(models_table, headers=HEADERS, label="Registry", interactive=False, elem_id="models")
    with gr.Row():
        # any model id is accepted (the API names models published after start-up); the
        # handlers check it against the registry
        model_pick = gr.Dropdown(model_choices(), value=None, label="Model", allow_custom_value=True,
                                 elem_id="model-pick")
        activate_btn = gr.Button("Make active", elem_id="activate-btn", visible=False)
    models_msg = gr.Markdown(elem_id="models-msg")
    card_plot = gr.Plot(label="Confusion matrix", elem_id="card-plot")
    card_md = gr.Markdown(elem_id="card-md")
    model_pick.change(model_card, model_pick, [card_md, card_plot], api_name="model_card")
    model_pick.change(lambda: "", None, models_msg, api_visibility="private")  # the last switch's message is stale
    on(activate_btn.click, activate, model_pick, [models, models_msg], role="admin", api_name="activate")
    model_pick.focus(lambda: gr.Dropdown(choices=model_choices()), None, model_pick, api_visibility="private")
    return refresh, [models, model_pick, activate_btn]
