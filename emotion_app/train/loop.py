"""The one training loop every training script and in-app fine-tuning runs: ``fit``.

What differs between models is passed in: how an epoch's batches are drawn
(``batches(epoch)``) and how a batch becomes a loss (``loss(batch)``). The loop owns
the rest: train mode, bf16 autocast on CUDA, gradient clipping, the optimizer and
schedule steps, per-epoch evaluation, keeping the best epoch's weights (rounded to
fp16, as a model folder stores them), early stopping, and Ctrl-C, which ends training
early and keeps the best epoch so far.

Launched by ``torchrun`` or ``accelerate launch`` (the process group joined, see
``train.distributed``), the same call trains data-parallel: each rank takes every
world-th batch of the stream, DistributedDataParallel averages the gradients, rank 0
alone evaluates, logs and reports, and its scores decide the best epoch and early
stopping for all ranks, so they end with the same weights.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..models.base import load_weights
from .distributed import broadcast, data_parallel, mean_over_ranks, rank_and_world, shard
from .export import fp16_state

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # one record per epoch: epoch, loss, seconds, scores
    best_epoch: int | None = None  # the epoch whose weights the network holds at the end (None: the last)
    stopped: str | None = None  # why training ended before its last epoch
    seconds: float = 0.0


def fit(net, batches: Callable[[int], Iterable], loss: Callable[[object], object], epochs: int, optimizer,
        scheduler=None, *, clip_norm: float | None = None, evaluate: Callable[[int], dict] | None = None,
        keep_best: str | None = None, patience: int | None = None, train_mode: Callable[[], None] | None = None,
        on_step: Callable[[int, int, object], None] | None = None, on_epoch: Callable[[dict], None] | None = None,
        name: str = "model") -> FitResult:
    """Train ``net`` for ``epochs`` and return what happened.

    ``batches(epoch)`` yields one epoch's batches (epochs count from 1); ``loss(batch)``
    returns a scalar loss tensor. ``evaluate(epoch)`` returns scores to record after
    each epoch; with ``keep_best`` (a key of those scores, higher is better) the best
    epoch's fp16 weights are kept and put back at the end, and ``patience`` epochs
    without a gain stop training. ``train_mode()`` replaces ``net.train()`` at the
    start of each epoch (e.g. to keep BatchNorm frozen). ``on_step(epoch, step, loss)``
    (``loss`` a tensor) and ``on_epoch(record)`` report progress; an exception raised from them (e.g. a
    cancelled job) ends training. In a distributed run the schedule still counts the
    stream's batches (it steps once per batch of every rank), so a ``total_steps`` made
    for one process holds; the callbacks run on rank 0 only.
    """
    import torch
    params = [p for p in net.parameters() if p.requires_grad]
    device = next(iter(params)).device
    rank, world = rank_and_world()
    result, best_score, best_state, start = FitResult(), None, None, time.time()
    try:
        for epoch in range(1, epochs + 1):
            train_mode() if train_mode else net.train()
            losses = []  # detached: no device sync per step
            with data_parallel(net):
                for step, batch in enumerate(shard(batches(epoch), rank, world), 1):
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                        value = loss(batch)
                    optimizer.zero_grad(set_to_none=True)
                    value.backward()
                    if clip_norm:
                        torch.nn.utils.clip_grad_norm_(params, clip_norm)
                    optimizer.step()
                    for _ in range(world if scheduler is not None else 0):
                        scheduler.step()
                    losses.append(value.detach())
                    if on_step and rank == 0:
                        on_step(epoch, step, value)
            net.eval()
            mean_loss = mean_over_ranks(torch.stack(losses).float().mean()).item() if losses else None
            record = None
            if rank == 0:
                record = {"epoch": epoch, "loss": None if mean_loss is None else round(mean_loss, 4),
                          "seconds": round(time.time() - start, 1), **(evaluate(epoch) if evaluate else {})}
                (on_epoch or _log_epoch(name, epochs))(record)
            record = broadcast(record)
            result.history.append(record)
            if keep_best:
                if best_score is None or record[keep_best] > best_score:
                    best_score, best_state, result.best_epoch = record[keep_best], fp16_state(net), epoch
                elif patience and epoch - result.best_epoch >= patience:
                    result.stopped = f"no gain in {keep_best} for {patience} epochs"
                    break
    except KeyboardInterrupt:
        result.stopped = "interrupted"
    result.seconds = round(time.time() - start, 1)
    if result.stopped:
        log.info("%s: stopped (%s) after %d epochs", name, result.stopped, len(result.history))
    if keep_best:
        if best_state is None:
            raise RuntimeError(f"{name}: stopped before the first epoch ended; nothing to keep")
        load_weights(net, best_state)
    net.eval()
    return result


def _log_epoch(name: str, epochs: int):
    def report(record: dict) -> None:
        scores = " ".join(f"{k} {v}" for k, v in record.items() if k not in ("epoch", "loss", "seconds"))
        log.info("%s epoch %d/%d: loss %s %s (%.0f s)", name, record["epoch"], epochs, record["loss"], scores,
                 record["seconds"])
    return report
