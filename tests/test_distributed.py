"""``fit`` under ``torchrun``: two CPU processes on the gloo backend train one network
data-parallel and end with the same weights; rank 0's saved model loads."""
import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from emotion_app.models.base import load_weights
from emotion_app.models.fusion import build_fusion_network
from emotion_app.train.distributed import shard

from .conftest import ROOT, free_port
from .ddp_fit import DIMS, EPOCHS


def test_shard_gives_each_rank_whole_rounds_only():
    assert [list(shard(range(7), rank, 2)) for rank in (0, 1)] == [[0, 2, 4], [1, 3, 5]]
    assert list(shard(range(3), 0, 1)) == [0, 1, 2]


def test_two_cpu_processes_end_with_identical_weights_and_a_loadable_model(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(free_port()), "-m", "tests.ddp_fit", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    weights = [load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert reports[0] == reports[1] and reports[0]["world"] == 2  # one history, one best epoch
    assert len(reports[0]["history"]) == EPOCHS and reports[0]["best_epoch"] is not None
    assert reports[0]["lr_steps"] == EPOCHS * 6  # the schedule counts all 6 batches of each epoch's stream
    assert proc.stderr.count("ddp test epoch") == EPOCHS  # rank 0 alone logs

    net = build_fusion_network("gated", DIMS, hidden=16)
    load_weights(net, load_file(tmp_path / "model.safetensors"))
    assert all(torch.allclose(p, weights[0][k], atol=1e-2) for k, p in net.state_dict().items())
