"""The one table of artifact formats, and the recipes their exporters follow (torch-free).

A row says, for one format: the file suffixes (or URI schemes) that name it, the `ArtifactInfo.format`
it carries, the runtime adapter that opens it and that adapter's options (both as module and class,
imported only when used, so reading the table imports neither torch nor any engine), the exporter
that writes it, its recipe class and the install hint shown when its library is missing.

A recipe is a frozen dataclass of how an exporter makes the artifact; its fields are declared with
`option()` (sunet_deploy.options), so the exporter's flags, the benchmark variants and the cache
key of a built artifact (`options.digest(source_sha256, recipe)`) all read the same declaration.

Adding a format is one `register(Format(...))` (and a recipe class when it has an exporter):
`runtimes.open_runtime`, `runtimes.predict`'s flags and `ArtifactInfo` pick it up from the table.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from .cli import parse_dims, parse_size
from .options import check_choices, option

# ---------------------------------------------------------------- recipes

INT8_METHODS = ("minmax", "entropy", "percentile")
INT8_ACTIVATIONS = ("int8", "uint8")
INT8_FLOAT_PARTS = ("auto", "fp16", "fp32")


@dataclass(frozen=True)
class Int8Recipe:
    """How an INT8 (Q/DQ) ONNX export is calibrated, and how many layers a sensitivity search may keep FP32."""

    method: str = option("percentile", "how ranges are chosen from the calibration images (default percentile)",
                         choices=INT8_METHODS, flag="--calibration-method")
    images: int = option(32, "images the activation ranges are calibrated on (default 32)", metavar="N",
                         flag="--calibration-images")
    percentile: float = option(99.9, "percentile method: the share of |values| a range covers (default 99.9)",
                               metavar="P", flag="--calibration-percentile")
    sensitivity_budget: int = option(0, "keep up to N layers FP32, those whose quantization costs the most agreement "
                                     "with PyTorch FP32 (measured layer by layer; default 0: every layer INT8)",
                                     metavar="N")
    target_agreement: float | None = option(None, "stop the sensitivity search once the agreement reaches SHARE "
                                            "(e.g. 0.99)", metavar="SHARE")
    activations: str = option("int8", "int8 (zero point 0, default): for TensorRT; uint8 (zero point 128, the same "
                              "values): for ONNX Runtime on x86 CPUs, whose fast kernels take uint8 activations (an "
                              "int8 graph runs there too, unfused and no faster than FP32); a uint8 graph is not for "
                              "TensorRT", choices=INT8_ACTIVATIONS, flag="--int8-activations")
    float_parts: str = option("auto", "type of the unquantized parts (Add, Concat, Resize, head): auto (default) is "
                              "fp16 with int8 activations, since TensorRT takes every type from a Q/DQ graph (fp32 "
                              "parts would run in FP32 there), and fp32 with uint8 activations (ONNX Runtime on CPU)",
                              choices=INT8_FLOAT_PARTS, flag="--int8-float")

    def __post_init__(self) -> None:
        check_choices(self)
        if self.images < 1 or self.sensitivity_budget < 0:
            raise ValueError("calibration images must be at least 1 and the sensitivity budget at least 0")
        if not 50 < self.percentile <= 100:
            raise ValueError(f"the calibration percentile must be in (50, 100], got {self.percentile}")

    @property
    def float_type(self) -> str:
        """'fp16' or 'fp32': the type of everything that is not quantized."""
        if self.float_parts != "auto":
            return self.float_parts
        return "fp16" if self.activations == "int8" else "fp32"


@dataclass(frozen=True)
class OnnxRecipe:
    """How export.onnx writes a graph; `int8` (its own flags, --int8 turns them on) quantizes it."""

    static: tuple[int, int] | None = option(None, "fix the input height x width (batch stays dynamic); default: "
                                            "dynamic height and width", parse=parse_size, metavar="HxW")
    argmax: bool = option(False, "output int64 labels (N,H,W) computed in the graph instead of float32 logits "
                          "(N,C,H,W)")
    fp16: bool = option(False, "FP16 weights and compute with FP32 inputs/outputs (for TensorRT 11 strongly typed "
                        "FP16)")
    opset: int = option(17, "ONNX opset, 17 or newer (default 17)")
    simplify: bool = option(False, "simplify with onnxslim (folds constants, drops Identity nodes); off by default: "
                            "on SUNet it adds about 10 s and did not speed up ONNX Runtime (docs/export.md)")
    tensorrt_check: bool = option(True, "accept a graph that TensorRT's ONNX parser would refuse (for ONNX "
                                  "Runtime-only use)", flag="--skip-tensorrt-check")
    int8: Int8Recipe | None = None

    def __post_init__(self) -> None:
        if self.fp16 and self.int8:
            raise ValueError("--fp16 and --int8 exclude each other")
        if self.opset < 17:
            raise ValueError(f"--opset must be 17 or newer, got {self.opset}")

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp16" if self.fp16 else "fp32"


@dataclass(frozen=True)
class AotiRecipe:
    """How export.aoti compiles a package: one input size and batch, one device."""

    size: tuple[int, int] = option((512, 512), "the input height x width compiled in (default 512x512); "
                                   "runtimes.predict letterboxes other images to it", parse=parse_size, metavar="HxW")
    batch: int = option(1, "batch size compiled in (default 1)")
    device: str = option("cpu", "device the code is compiled for", choices=("cpu", "cuda"))
    output_kind: str = option("logits", "logits (N,C,H,W float32) or labels (N,H,W int64, argmax built in); "
                              "default logits", choices=("logits", "labels"))

    def __post_init__(self) -> None:
        check_choices(self)
        if self.batch < 1:
            raise ValueError("--batch must be at least 1")


DEFAULT_PROFILE = ((1, 3, 64, 64), (1, 3, 512, 512), (4, 3, 1024, 1024))


def _profile_help(index: int) -> str:
    name = ("min", "opt", "max")[index]
    shape = "x".join(map(str, DEFAULT_PROFILE[index]))
    return f"{name} input shape of the optimization profile (default: the graph's fixed dimensions, else {shape})"


def _shape4(text: str) -> tuple[int, ...]:
    return parse_dims(text, 4, "1x3x512x512")


@dataclass(frozen=True)
class EngineRecipe:
    """How export.tensorrt builds an engine from an ONNX model; the defaults are the CLI's."""

    fp32: bool = option(False, "build an FP32 engine (default: FP16)")
    tf32: bool = option(False, "let FP32 layers use TF32 tensor cores (TensorRT's own default; off here so that an "
                        "FP32 engine computes in FP32; recorded in the sidecar)")
    min: tuple[int, ...] | None = option(None, _profile_help(0), parse=_shape4, metavar="NxCxHxW")
    opt: tuple[int, ...] | None = option(None, _profile_help(1), parse=_shape4, metavar="NxCxHxW")
    max: tuple[int, ...] | None = option(None, _profile_help(2), parse=_shape4, metavar="NxCxHxW")
    workspace_gib: float = option(4.0, "builder workspace memory limit in GiB (default 4)", flag="--workspace",
                                  metavar="GiB")
    timing_cache: Path | None = option(None, "TensorRT timing cache: read if it exists, updated after the build "
                                       "(faster rebuilds)", metavar="FILE")
    optimization_level: int = option(3, "builder optimization level: higher searches longer for faster kernels "
                                     "(default 3)", choices=range(6), metavar="0-5")
    min_int8_share: float = option(0.5, "refuse an INT8 engine (from a Q/DQ graph, python -m export.onnx --int8) "
                                   "unless this share of its convolutions runs in INT8 (default 0.5)", metavar="SHARE")
    min_fp16_share: float = option(0.9, "refuse an FP16 engine unless this share of its convolutions runs in FP16 "
                                   "(default 0.9)", metavar="SHARE")

    def __post_init__(self) -> None:
        check_choices(self)
        if self.workspace_gib <= 0:
            raise ValueError("--workspace must be positive")

    def min_share(self, precision: str) -> float:
        return {"fp16": self.min_fp16_share, "int8": self.min_int8_share}.get(precision, 0.0)


@dataclass(frozen=True)
class TritonRecipe:
    """How export.triton writes one model of a Triton repository."""

    name: str = option("sunet", "model name in the repository (default: sunet)")
    backend: str | None = option(None, "default: tensorrt for an engine, onnxruntime otherwise",
                                 choices=("onnxruntime", "tensorrt", "python"))
    io: str = option("image", "python backend: encoded images in and PNG masks out (default), or the tensor "
                     "interface", choices=("image", "tensor"))
    max_batch: int | None = option(None, "largest batch the dynamic batcher forms (default: 8, for an engine its "
                                   "profile's largest)")
    max_queue_delay_us: int = option(2000, "how long a request may wait for others to batch with (default: 2000 us)")
    instances: int = option(1, "execution instances of the model (default: 1)")
    threads: int | None = option(None, "ONNX Runtime intra-op threads per instance (default: all cores)")
    overwrite: bool = option(False, "replace a model of the same name")

    def __post_init__(self) -> None:
        check_choices(self)
        if self.io != "image" and self.backend != "python":
            raise ValueError("--io applies to --backend python only")
        if min(self.max_batch or 1, self.instances, self.threads or 1) < 1 or self.max_queue_delay_us < 0:
            raise ValueError("--max-batch, --instances and --threads must be positive, --max-queue-delay-us not "
                             "negative")


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Format:
    """One artifact format: how it is named, opened, written and installed."""

    name: str  # ArtifactInfo.format of its files (a served format names its row only)
    runtime: str  # the adapter's name, the `runtime` of its options
    adapter: tuple[str, str]  # (module, class) of the runtimes.base.Runtime subclass
    options: tuple[str, str]  # (module, class) of its RuntimeOptions
    suffixes: tuple[str, ...] = ()
    schemes: tuple[str, ...] = ()  # URI schemes of a served model (triton://...)
    exporter: str | None = None  # the module whose CLI writes it (python -m ...)
    recipe: type | None = None
    install: str = ""  # what to install when its library is missing
    reads: tuple[str, ...] = ()  # other formats whose files this row's runtime opens (openvino: onnx)

    @property
    def files(self) -> bool:
        return bool(self.suffixes)

    def adapter_class(self) -> type:
        """The runtimes.base.Runtime subclass that opens this format, imported now (ImportError when a module
        it needs at import is missing)."""
        return load(self.adapter)

    def options_class(self) -> type:
        """The RuntimeOptions dataclass of this format's adapter, imported now (torch-free)."""
        return load(self.options)


_TABLE: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add a format (or replace one of the same name); its suffixes, schemes and runtime must be its own
    (so that `by_runtime` names one row: a runtime that opens several suffixes is one row with several)."""
    taken = {s: f.name for f in _TABLE.values() if f.name != fmt.name for s in (*f.suffixes, *f.schemes)}
    clash = [s for s in (*fmt.suffixes, *fmt.schemes) if s in taken]
    if clash:
        raise ValueError(f"{clash[0]!r} already names the {taken[clash[0]]} format")
    other = next((f.name for f in _TABLE.values() if f.name != fmt.name and f.runtime == fmt.runtime), None)
    if other is not None:
        raise ValueError(f"the {fmt.runtime} runtime already opens the {other} format (one row per runtime)")
    _TABLE[fmt.name] = fmt
    return fmt


def unregister(name: str) -> None:
    _TABLE.pop(name, None)


def formats() -> list[Format]:
    return list(_TABLE.values())


def get(name: str) -> Format:
    return _TABLE[name]


def artifact_formats() -> tuple[str, ...]:
    """The values ArtifactInfo.format takes: the formats stored in files."""
    return tuple(f.name for f in _TABLE.values() if f.files)


def by_suffix(suffix: str) -> Format | None:
    return next((f for f in _TABLE.values() if suffix.lower() in f.suffixes), None)


def by_scheme(scheme: str) -> Format | None:
    return next((f for f in _TABLE.values() if scheme in f.schemes), None)


def by_runtime(runtime: str) -> Format:
    """The row whose adapter is named `runtime` (one at most: `register` refuses a second)."""
    found = next((f for f in _TABLE.values() if f.runtime == runtime), None)
    if found is None:
        known = ", ".join(f.runtime for f in _TABLE.values())
        raise KeyError(f"no format is opened by a {runtime!r} runtime; known: {known}")
    return found


def opener(fmt: Format, runtime: str) -> Format | None:
    """The row whose adapter opens `fmt`'s files as `runtime`: fmt's own, or one that reads them; None if none does."""
    if runtime == fmt.runtime:
        return fmt
    found = by_runtime(runtime)
    return found if found.name == fmt.name or fmt.name in found.reads else None


def by_recipe(recipe) -> Format:
    return next(f for f in _TABLE.values() if f.recipe is not None and isinstance(recipe, f.recipe))


def suffixes(*names: str) -> tuple[str, ...]:
    """The suffixes of the named formats (all of them without names)."""
    return tuple(s for f in _TABLE.values() if not names or f.name in names for s in f.suffixes)


def load(ref: tuple[str, str]):
    """The object a (module, name) pair of the table names, imported now."""
    module, name = ref
    return getattr(importlib.import_module(module), name)


for _fmt in (
    Format("checkpoint", "pytorch", ("runtimes.pytorch", "PyTorchRuntime"), ("runtimes.options", "PyTorchOptions"),
           suffixes=(".safetensors",), exporter="train", install="pip install 'sunet-deploy[torch]'"),
    Format("onnx", "onnxruntime", ("runtimes.ort", "OnnxRuntimeRuntime"), ("runtimes.options", "OnnxRuntimeOptions"),
           suffixes=(".onnx",), exporter="export.onnx", recipe=OnnxRecipe,
           install="pip install onnxruntime (sunet-deploy's core install has it)"),
    # OpenVINO reads the ONNX files export.onnx writes (FP32, and INT8 from their Q/DQ nodes); its own IR is not used
    Format("openvino", "openvino", ("runtimes.openvino", "OpenVINORuntime"), ("runtimes.options", "OpenVINOOptions"),
           reads=("onnx",), exporter="export.onnx", install="pip install 'sunet-deploy[openvino]'"),
    Format("tensorrt", "tensorrt", ("runtimes.trt", "TensorRTRuntime"), ("runtimes.options", "TensorRTOptions"),
           suffixes=(".engine", ".plan"), exporter="export.tensorrt", recipe=EngineRecipe,
           install="pip install 'sunet-deploy[gpu]' (tensorrt 10.x or 11.x, pycuda) on a machine with an NVIDIA GPU "
                   "and driver"),
    Format("aoti", "aoti", ("runtimes.aoti", "AOTInductorRuntime"), ("runtimes.options", "AOTInductorOptions"),
           suffixes=(".pt2",), exporter="export.aoti", recipe=AotiRecipe, install="pip install 'sunet-deploy[torch]'"),
    Format("triton", "triton", ("runtimes.triton", "TritonRuntime"), ("runtimes.options", "TritonOptions"),
           schemes=("triton", "triton+grpc"), exporter="export.triton", recipe=TritonRecipe,
           install="pip install 'sunet-deploy[serve]'"),
):
    register(_fmt)
