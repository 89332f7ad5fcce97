"""Emotion recognition app: face, text, voice, video and their fusion.

Run ``python app.py`` (offline, bundled weights). Each tab is a module of
``emotion_app.app`` whose ``build()`` wires its components to plain handler functions;
every action also has an API endpoint (api_name).
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import gradio as gr
from packaging.requirements import Requirement

from emotion_app.app import access, annotate, audio, finetune, image, live, models, text, trimodal, video

log = logging.getLogger("app")
ROOT = Path(__file__).resolve().parent
NODEPS_REQUIREMENTS = ROOT / "requirements-nodeps.txt"
MAX_UPLOAD = "200mb"
UPLOAD_CACHE = (3600, 3600)  # every hour, delete uploads older than an hour: they were analysed by then
TABS = [("Image", image), ("Text", text), ("Audio", audio), ("Video", video), ("Tri-modal", trimodal),
        ("Annotate", annotate), ("Fine-tune", finetune), ("Models", models), ("Live", live)]


def install_nodeps_packages(requirements: Path = NODEPS_REQUIREMENTS) -> list[str]:
    """Install the packages of ``requirements`` that are missing, with ``--no-deps``.

    A Space pip-installs requirements.txt only, and these packages cannot go there: their
    metadata pins an old torch that pip would then install over ours. Called once at the
    Space's start-up (never at import); returns what it installed.
    """
    missing = []
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            metadata.version(Requirement(line).name)
        except metadata.PackageNotFoundError:
            missing.append(line)
    if missing:
        log.info("installing with --no-deps: %s", " ".join(missing))
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", *missing], check=True)
    return missing


def build_app() -> gr.Blocks:
    with gr.Blocks(title="Emotion recognition", delete_cache=UPLOAD_CACHE) as demo:
        with gr.Row():
            gr.Markdown("# Emotion recognition\nFace, text, voice and video, per modality and fused. "
                        "Seven classes: angry, disgust, fear, happy, neutral, sad, surprise.")
            with gr.Column(scale=0, min_width=260):
                who = gr.Markdown(elem_id="signed-in")
                if access.auth_mode() == "oauth":
                    gr.LoginButton()
        tabs = []
        for title, module in TABS:
            role = getattr(module, "ROLE", "visitor")
            with gr.Tab(title, visible=role == "visitor") as tab:
                on_show = module.build()  # a tab may ask to be refreshed for the user when it is shown
            tabs.append((tab, role))
            if on_show:
                handler, outputs = on_show
                for trigger in (tab.select, demo.load):
                    access.on(trigger, handler, None, outputs, with_user=True, api_visibility="private")
        access.on(demo.load, lambda user: [gr.Tab(visible=user.has(role)) for _, role in tabs], None,
                  [tab for tab, _ in tabs], with_user=True, api_visibility="private")
        demo.load(access.identity, None, who, api_visibility="private")
    return demo


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if os.environ.get("SPACE_ID"):
        install_nodeps_packages()
    demo = build_app()
    demo.queue(default_concurrency_limit=2, max_size=64)
    mode = access.auth_mode()
    log.info("sign-in mode: %s", mode)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), max_file_size=MAX_UPLOAD,
                auth=access.password_check if mode == "password" else None)


if __name__ == "__main__":
    main()
