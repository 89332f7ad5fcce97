"""Run by ``torchrun --nproc_per_node 2 -m tests.ddp_fit OUT`` (tests/test_distributed.py):
a few epochs of ``fit`` on the package's gated fusion network and tiny synthetic
features, data-parallel over the gloo backend. Every rank writes its final weights and
what ``fit`` returned; rank 0 alone saves the model, as a training script does."""
import json
import logging
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from emotion_app.models.fusion import build_fusion_network
from emotion_app.train.distributed import is_main_process, join_process_group, rank_and_world
from emotion_app.train.export import fp16_state
from emotion_app.train.loop import fit

DIMS = [8, 6, 4]
ROWS, BATCH, EPOCHS = 96, 16, 3


def main(out: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="rank %(process)d %(name)s: %(message)s")
    assert join_process_group()
    rank, world = rank_and_world()
    torch.manual_seed(rank)  # replicas start different: DDP must make them one
    net = build_fusion_network("gated", DIMS, hidden=16)
    data = torch.Generator().manual_seed(0)  # the same stream on every rank
    xs = [torch.randn(ROWS, d, generator=data) for d in DIMS]
    mask = torch.rand(ROWS, len(DIMS), generator=data) > 0.3
    mask[:, 0] = True
    y = torch.randint(0, 7, (ROWS,), generator=data)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-2, total_steps=EPOCHS * ROWS // BATCH)
    loss_fn = torch.nn.CrossEntropyLoss()

    def batches(epoch):
        order = torch.randperm(ROWS, generator=data)
        for start in range(0, ROWS, BATCH):
            rows = order[start:start + BATCH]
            yield [x[rows] for x in xs], mask[rows], y[rows]

    def loss(batch):
        x, m, target = batch
        return loss_fn(net(x, m), target)

    def evaluate(epoch):
        with torch.no_grad():
            return {"val_accuracy": round((net(xs, mask).argmax(1) == y).float().mean().item(), 4)}

    result = fit(net, batches, loss, EPOCHS, optimizer, scheduler, evaluate=evaluate, keep_best="val_accuracy",
                 name="ddp test")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / f"rank{rank}.safetensors"))
    (out / f"rank{rank}.json").write_text(json.dumps({"history": result.history, "best_epoch": result.best_epoch,
                                                     "world": world, "lr_steps": scheduler.last_epoch}))
    if is_main_process():
        save_file(fp16_state(net), str(out / "model.safetensors"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
