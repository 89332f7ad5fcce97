"""The Models tab: the registry with metrics cards and confusion matrices; switch the
active model."""
from __future__ import annotations

import gradio as gr

from ..models.registry import active_model, get_entry, list_models, set_active
from .charts import confusion_heatmap

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


def model_card(model: str | None):
    """Models tab: the card's Markdown and a confusion-matrix heatmap of its headline evaluation."""
    if not model:
        return "Pick a model.", None
    entry = get_entry(model)
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
    entry = get_entry(model)
    set_active(entry.modality, entry.ref)
    return models_table(), f"`{entry.ref}` is now the active {entry.modality} model."


def build() -> None:
    models = gr.Dataframe(models_table, headers=HEADERS, label="Registry", interactive=False, elem_id="models")
    with gr.Row():
        model_pick = gr.Dropdown([row[0] for row in models_table()], value=None, label="Model", elem_id="model-pick")
        activate_btn = gr.Button("Make active", elem_id="activate-btn")
    models_msg = gr.Markdown(elem_id="models-msg")
    card_plot = gr.Plot(label="Confusion matrix", elem_id="card-plot")
    card_md = gr.Markdown(elem_id="card-md")
    model_pick.change(model_card, model_pick, [card_md, card_plot], api_name="model_card")
    model_pick.change(lambda: "", None, models_msg, api_visibility="private")  # the last switch's message is stale
    activate_btn.click(activate, model_pick, [models, models_msg], api_name="activate")
