"""Data-parallel training over the processes ``torchrun`` or ``accelerate launch`` start.

Every process (a rank) holds a replica and trains on its share of the batches;
DistributedDataParallel averages the gradients in backward, so all replicas take the
same step and stay identical. Outside such a launch every helper here answers as for
one process, and ``fit`` runs as it always did.
"""
from __future__ import annotations

import atexit
import os
from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
import torch.distributed as dist

LAUNCHER_ENV = "WORLD_SIZE"  # set by torchrun and accelerate launch, with RANK, LOCAL_RANK, MASTER_ADDR/PORT


def join_process_group() -> bool:
    """Join the process group the launcher describes in the environment: NCCL with one
    GPU per process (by LOCAL_RANK) where there are GPUs, gloo on CPUs. False, and
    nothing done, in a plain one-process run."""
    if dist.is_initialized():
        return True
    if int(os.environ.get(LAUNCHER_ENV, "1")) < 2:
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    # Left alive at exit, the group's threads can abort the process after the work is done
    # ("terminate called without an active exception", exit -6): leave it before exiting.
    atexit.register(dist.destroy_process_group)
    return True


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes); (0, 1) outside a distributed run."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Rank 0: the one process that logs, evaluates and saves."""
    return rank_and_world()[0] == 0


def local_device() -> torch.device:
    """This rank's GPU (by LOCAL_RANK) in a distributed run on GPUs, else CUDA or the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if rank_and_world()[1] > 1 else 0)


def shard(stream: Iterable, rank: int, world: int) -> Iterator:
    """This rank's share of a batch stream every rank draws alike (same seeds): batch i
    goes to rank i % world. Only whole rounds are kept, so every rank takes the same
    number of steps (DDP waits for all of them at each step); a last partial round is
    dropped, as DistributedSampler's drop_last does."""
    if world == 1:
        yield from stream
        return
    mine = None
    for i, batch in enumerate(stream):
        if i % world == rank:
            mine = batch
        if i % world == world - 1:
            yield mine


class _Forward(torch.nn.Module):
    """The network's own forward, as a module DDP can wrap (see ``data_parallel``)."""

    def __init__(self, net: torch.nn.Module, forward):
        super().__init__()
        self.net, self.inner = net, forward

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)


@contextmanager
def data_parallel(net: torch.nn.Module):
    """Within, ``net(...)`` goes through a DistributedDataParallel wrapper, so the
    callers' loss functions, which call ``net`` itself, sync gradients unchanged.
    Wrapping broadcasts rank 0's weights (and DDP its buffers at each forward), so every
    replica starts the same. Only training steps belong inside: a forward by one rank
    alone (rank 0's evaluation) would wait for the others' buffer broadcast."""
    if rank_and_world()[1] == 1:
        yield
        return
    from torch.nn.parallel import DistributedDataParallel
    device = next(net.parameters()).device
    ddp = DistributedDataParallel(_Forward(net, net.forward), device_ids=[device] if device.type == "cuda" else None,
                                  find_unused_parameters=True)  # e.g. a fusion head of a modality a batch lacks
    # an instance attribute (not a registered submodule: no cycle in the state dict), which
    # nn.Module.__call__ finds before the class's forward
    object.__setattr__(net, "forward", ddp)
    try:
        yield
    finally:
        del net.__dict__["forward"]


def broadcast(value):
    """Rank 0's ``value`` on every rank (a picklable object), so all take the same decisions."""
    if rank_and_world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar tensor over all ranks."""
    world = rank_and_world()[1]
    if world == 1:
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / world
