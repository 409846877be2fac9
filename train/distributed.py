"""torch.distributed set-up for runs started by `torchrun` (NCCL on GPU, Gloo on CPU).

A plain `python -m train` is a world of one process and never touches torch.distributed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda, but no CUDA device is available")
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device("cpu")


def setup(device_name: str) -> Context:
    """Join the process group torchrun describes in the environment (WORLD_SIZE, RANK, LOCAL_RANK)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(rank, world_size, local_rank, device)


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Sum over processes (in place on a copy on the process device); identity for one process."""
    if not ctx.distributed:
        return tensor
    reduced = tensor.to(ctx.device, copy=True)
    dist.all_reduce(reduced)
    return reduced.to(tensor.device)


def any_process(flag: bool, ctx: Context) -> bool:
    """True on every process if `flag` is true on any (e.g. a NaN loss), so all stop together."""
    return bool(all_reduce_sum(torch.tensor([float(flag)]), ctx).item() > 0)


def parameters_sha256(model: nn.Module) -> str:
    """Hash of every parameter's bytes in module order: equal hashes mean bitwise-equal weights."""
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def gather_hashes(text: str, ctx: Context) -> list[str]:
    """The hex digest of every process, in rank order (all-gathered as bytes, no pickling)."""
    if not ctx.distributed:
        return [text]
    mine = torch.tensor(list(bytes.fromhex(text)), dtype=torch.uint8, device=ctx.device)
    everyone = [torch.empty_like(mine) for _ in range(ctx.world_size)]
    dist.all_gather(everyone, mine)
    return [bytes(t.cpu().tolist()).hex() for t in everyone]


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def broadcast_buffers(model: nn.Module, ctx: Context) -> None:
    """Give every process rank 0's BatchNorm statistics (each process updated them on its own batches)."""
    if ctx.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)
