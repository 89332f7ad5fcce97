"""``python -m emotion_app batch`` on a real local Ray cluster: Parquet shards, resuming,
bad inputs as error rows, and a worker killed mid-run."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emotion_app.batch import answer_lost, list_input_dir, run_batch, to_row, write_shard
from emotion_app.core.errors import InputError
from emotion_app.core.labels import LABELS

from .conftest import ROOT

EXAMPLES = ROOT / "examples"
KILL_WAIT_S = 120  # for the first shard (the worker loads its model first)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "emotion_app", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def ray_cluster():
    """One small local cluster for the in-process runs (the CLI test starts its own)."""
    import ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_batch_cli_on_a_laptop_writes_parquet_and_resumes(tmp_path):
    texts = ["I can't believe we won!", "I miss her so much", "", "   ", "I am terrified of the dark",
             "I can't believe we won!"]
    manifest = tmp_path / "texts.csv"
    pd.DataFrame({"text": texts}).to_csv(manifest, index=False)
    out = tmp_path / "out"
    proc = run_cli("batch", "--modality", "text", "--manifest", str(manifest), "--out", str(out), "--workers", "1",
                   "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr
    assert "6 inputs: 0 already" in proc.stderr and "4 classified, 2 failed" in proc.stderr
    assert "empty text: nothing to classify" in proc.stderr  # the summary's error reasons

    df = pd.read_parquet(out).sort_values("index")
    assert df["index"].tolist() == list(range(len(texts))) and df["input"].tolist() == texts
    assert df["error"].notna().tolist() == [False, False, True, True, False, False]
    good = df[df["error"].isna()]
    assert np.allclose(good[list(LABELS)].sum(axis=1), 1, atol=1e-3)
    assert (good["label"] == good[list(LABELS)].idxmax(axis=1)).all() and good["model"].str.contains("@").all()
    assert df.iloc[1]["label"] == "sad" and (df["seconds"] >= 0).all()

    from datasets import load_dataset
    loaded = load_dataset("parquet", data_dir=str(out), split="train")  # one schema, even for an all-error shard
    assert len(loaded) == len(texts) and "timeline" in loaded.column_names

    again = run_cli("batch", "--modality", "text", "--manifest", str(manifest), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "6 inputs: 6 already" in again.stderr and "Ray" not in again.stderr  # nothing to do: no cluster started
    assert len(pd.read_parquet(out)) == len(texts)


def _image_inputs(folder):
    """Good photos (faces, and noise read whole) and bad ones (missing, empty, not an image)."""
    rng = np.random.default_rng(0)
    good = [str(EXAMPLES / "astronaut.jpg"), str(EXAMPLES / "two_faces.jpg")]
    for i in range(14):
        path = folder / f"noise{i}.png"
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
        good.append(str(path))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not a picture")
    bad = [str(folder / "missing.jpg"), str(folder / "empty.jpg"), str(folder / "text.jpg")]
    return good[:8] + bad + good[8:]


def _kill_first_worker(out, killed: list):
    """SIGKILL the worker that wrote the first shard, while batches are still to come."""
    deadline = time.time() + KILL_WAIT_S
    while time.time() < deadline and not killed:
        shards = list(out.glob("part-*.parquet"))
        if shards:
            pid = int(pd.read_parquet(shards[0])["worker"].iloc[0].rsplit(":", 1)[1])
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        time.sleep(0.05)


def test_a_killed_worker_loses_nothing_and_every_input_is_answered_once(tmp_path, ray_cluster, caplog):
    inputs = _image_inputs(tmp_path)
    out = tmp_path / "out"
    killed = []
    killer = threading.Thread(target=_kill_first_worker, args=(out, killed))
    killer.start()
    summary = run_batch(inputs, "image", str(out), workers=1, batch_size=1)
    killer.join()
    assert killed, "no shard appeared to find the worker by"

    df = pd.read_parquet(out)
    assert sorted(df["index"]) == list(range(len(inputs)))  # each input exactly once
    assert sorted(df["input"]) == sorted(inputs)
    assert set(df["worker"].str.rsplit(":", n=1).str[1].astype(int)) - set(killed)  # a new worker finished the run
    errors = df.set_index("input")["error"]
    assert errors.notna().sum() == 3 == summary["failed"]
    assert "file not found" in errors[inputs[8]] and "empty" in errors[inputs[9]]
    assert summary["classified"] == len(inputs) - 3
    assert df.loc[df["input"] == inputs[0], "label"].item() in LABELS
    assert "timeline" in df.columns and df["details"].str.contains("face_detected").any()


def test_a_batch_that_kills_its_worker_every_time_gets_error_rows(tmp_path):
    """What Ray gives up on (its worker died on every try) is answered by the driver."""
    out = tmp_path / "out"
    out.mkdir()
    row = to_row("text", 0, {"input": "fine", "label": "happy", "probs": dict.fromkeys(LABELS, 1 / 7), "model": "m@1"},
                 0.1, 0.1, "host:1")
    write_shard(out, [row])
    assert answer_lost(["fine", "crashes", "fine"], "text", out) == 2
    df = pd.read_parquet(out).sort_values("index")
    assert df["index"].tolist() == [0, 1, 2] and df["error"].isna().tolist() == [True, False, False]
    assert "worker died" in df.iloc[1]["error"]


def test_input_dir_lists_the_modality_files(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.JPG", "y.png", "notes.txt", "clip.mp4"):
        (tmp_path / name).write_bytes(b"1")
    assert [os.path.basename(p) for p in list_input_dir(str(tmp_path), "image")] == ["x.JPG", "y.png"]
    with pytest.raises(InputError, match="manifest"):
        list_input_dir(str(tmp_path), "text")


@pytest.mark.parametrize("args, message", [
    (["--modality", "text", "--out", "o"], "one of the arguments --manifest --input-dir is required"),
    (["--modality", "text", "--manifest", "m.csv", "--out", "o", "--workers", "0"], "1 or more"),
    (["--modality", "text", "--manifest", "m.csv", "--out", "o", "--dialogue"], "unrecognized arguments"),
    (["--modality", "text", "--manifest", "m.csv", "--out", "o", "--model", "no-such-model"], "no-such-model"),
])
def test_bad_batch_commands_are_refused(args, message):
    proc = run_cli("batch", *args)
    assert proc.returncode == 2 and message in proc.stderr
