"""PyTorch eager runtime: a checkpoint on CPU or CUDA, FP32/FP16/BF16, channels_last, CUDA graphs.

The constructor checks the whole checkpoint without reading its weights: the header's metadata, its
size against the tensors it promises, and every tensor's name and shape against the architecture the
metadata describes (built on the meta device), so a file that cannot load fails in `open_runtime`.
`threads` is torch's intra-op thread count while this runtime computes (torch's setting is
process-wide: it is set around each call and restored, so two runtimes in one process keep theirs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sunet_deploy.artifact import ArtifactInfo, derived_info, labels_dtype, read_checkpoint_info, read_safetensors_header
from sunet_deploy.checkpoint import CheckpointError, check_state_shapes, load_model
from sunet_deploy.fileio import file_sha256
from sunet_deploy.models import ModelSpec, build_model

from .base import Runtime, TensorInfo, Timing, image_input_info, output_info, torch_device_availability, torch_threads
from .options import PyTorchOptions

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class PyTorchRuntime(Runtime):
    name = "pytorch"

    def __init__(self, path: str | Path, options: PyTorchOptions | None = None) -> None:
        super().__init__(path, options or PyTorchOptions())
        output = "labels" if self.options.argmax else "logits"
        info = read_checkpoint_info(self.path)
        check_architecture(self.path, info)
        self.info = derived_info(info, file_sha256(self.path), "checkpoint", output, self.options.precision)
        self.model = self.module = None
        self.device = torch.device(self.options.device)
        self.dtype = PRECISIONS[self.options.precision]
        self.memory_format = torch.channels_last if self.options.channels_last else torch.contiguous_format
        self._graphs: dict[tuple, tuple] = {}

    @classmethod
    def availability(cls, options: PyTorchOptions) -> str | None:
        if options.cuda_graph and not options.device.startswith("cuda"):
            return "CUDA graphs need --device cuda"
        if options.cuda_graph and options.compile:
            return "choose CUDA graphs or torch.compile (its reduce-overhead/max-autotune modes use CUDA graphs)"
        return torch_device_availability(options.device)

    def inputs(self) -> list[TensorInfo]:
        return [image_input_info()]

    def outputs(self) -> list[TensorInfo]:
        return [output_info(self.output_kind, self.metadata.num_classes)]

    def _activate(self) -> None:
        self.model, _ = load_model(self.path)
        self.model.to(self.device, self.dtype, memory_format=self.memory_format)
        self.module = torch.compile(self.model, mode=self.options.compile) if self.options.compile else self.model

    def _deactivate(self) -> None:
        self.model = self.module = None
        self._graphs.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module(x)
        if self.output_kind == "labels":  # the element type an --argmax export gives (export.heads)
            return out.argmax(1).to(getattr(torch, labels_dtype(self.metadata.num_classes)))
        return out.float()

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, Timing]:
        with torch_threads(self.options.threads):
            if self.device.type != "cuda":
                x = torch.from_numpy(batch).to(self.dtype).contiguous(memory_format=self.memory_format)
                with torch.inference_mode():
                    return self._forward(x).numpy(), Timing(0.0)
            return self._infer_cuda(batch)

    def _infer_cuda(self, batch: np.ndarray) -> tuple[np.ndarray, Timing]:
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        host = torch.from_numpy(batch).pin_memory()
        events[0].record()
        x = host.to(self.device, non_blocking=True).to(self.dtype).contiguous(memory_format=self.memory_format)
        events[1].record()
        with torch.inference_mode():
            out = self._replay(x) if self.options.cuda_graph else self._forward(x)
        events[2].record()
        result = out.cpu()
        events[3].record()
        events[3].synchronize()
        h2d, compute, d2h = (events[i].elapsed_time(events[i + 1]) for i in range(3))
        return result.numpy(), Timing(0.0, h2d, compute, d2h)

    def _replay(self, x: torch.Tensor) -> torch.Tensor:
        """Capture one CUDA graph per input shape, then replay it (static buffers, no launch overhead)."""
        key = tuple(x.shape)
        if key not in self._graphs:
            static_in = x.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):  # warm-up outside the graph, as the CUDA-graph docs require
                    self._forward(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._forward(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()



def check_architecture(path: Path, info: ArtifactInfo) -> None:
    """CheckpointError unless the checkpoint's tensors are exactly those of the model its metadata
    describes (names and shapes from the header; the model built on the meta device, no weights read)."""
    try:
        with torch.device("meta"):
            model = build_model(ModelSpec.from_dict(info.metadata.model))
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(path, f"describes a model that cannot be built ({exc})") from exc
    header = read_safetensors_header(path)
    check_state_shapes(model, {k: tuple(t["shape"]) for k, t in header.items() if k != "__metadata__"}, path)
