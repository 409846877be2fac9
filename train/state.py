"""What a run writes: the resumable training state and the best model, both safetensors, atomic.

`latest_state.safetensors` (kind "train_state") holds the model, the optimizer, the AMP scaler,
the position in the data (epoch, micro-batch, step) and the python/numpy/torch RNG states, so
`--resume` continues bit for bit. `best.safetensors` is a normal sunet-deploy checkpoint with
metadata (classes, palette, mean/std, training summary) that export and the runtimes load.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sunet_deploy.checkpoint import CheckpointError, load_state_into, load_tensors, save_checkpoint, save_tensors
from sunet_deploy.metadata import ModelMetadata

from .config import TrainConfig

STATE_KIND = "train_state"
STATE_FILE = "latest_state.safetensors"
BEST_FILE = "best.safetensors"
# Options that define the model or the data: a resumed run must use the same ones.
FIXED_ON_RESUME = ("task", "arch", "model_overrides", "output_stride", "head", "dataset", "num_classes", "seed")


@dataclass
class Progress:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of `epoch` already trained on
    best_score: float = -math.inf
    best_step: int = 0


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    tensors = {
        "rng.torch": torch.get_rng_state(),
        "rng.numpy": torch.from_numpy(keys.astype(np.int64)),
        "rng.python": torch.tensor(py_state, dtype=torch.int64),
    }
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return tensors, {"numpy": [name, pos, has_gauss, cached], "python": [version, gauss]}


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, gauss = meta["python"]
    random.setstate((version, tuple(tensors["rng.python"].tolist()), gauss))
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def save_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scaler, progress: Progress,
               config: TrainConfig) -> None:  # fmt: skip
    """Everything `--resume` needs, in one safetensors file (never a pickle)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for index, entries in opt["state"].items():
        tensors.update({f"optimizer.{index}.{key}": value for key, value in entries.items()})
    rng_tensors, rng_meta = _rng_state()
    tensors.update(rng_tensors)
    meta = {
        "progress": asdict(progress), "config": asdict(config), "param_groups": opt["param_groups"],
        "scaler": scaler.state_dict(), "rng": rng_meta,
    }  # fmt: skip
    save_tensors(path, tensors, STATE_KIND, json.dumps(meta))


def load_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scaler, config: TrainConfig) -> Progress:
    """Restore what `save_state` wrote into the model, optimizer, scaler and RNGs; returns the progress."""
    tensors, meta_json = load_tensors(path, STATE_KIND)
    meta = json.loads(meta_json)
    changed = [k for k in FIXED_ON_RESUME if meta["config"].get(k) != getattr(config, k)]
    if changed:
        details = ", ".join(f"{k}: {meta['config'].get(k)!r} -> {getattr(config, k)!r}" for k in changed)
        raise CheckpointError(path, f"was written with other model/data options ({details}); resume with the same ones")
    load_state_into(model, _strip(tensors, "model."), path)
    state: dict[int, dict] = {}
    for name, value in _strip(tensors, "optimizer.").items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    scaler.load_state_dict(meta["scaler"])
    _set_rng_state(tensors, meta["rng"])
    return Progress(**meta["progress"])


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def save_best(path: Path, model: nn.Module, spec_dict: dict, dataset, summary: dict) -> None:
    """The model as a normal checkpoint with the dataset's classes and palette and a training summary."""
    palette = np.asarray(getattr(dataset, "palette", _gray_palette(len(dataset.classes))))
    meta = ModelMetadata(model=spec_dict, classes=list(dataset.classes), palette=palette.tolist(), training=summary)
    save_checkpoint(path, model, meta)


def _gray_palette(n: int) -> np.ndarray:
    return np.repeat(np.linspace(0, 255, n).astype(np.uint8)[:, None], 3, axis=1)
