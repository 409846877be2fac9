"""`python -m export.triton MODEL -o model_repository`: one model of a Triton Inference Server repository.

    model_repository/sunet/config.pbtxt     platform, dynamic batching, instances, the metadata
    model_repository/sunet/labels.txt       the class names (Triton's label_filename)
    model_repository/sunet/1/model.onnx     or model.plan for a TensorRT engine

MODEL is an ONNX model (platform onnxruntime_onnx), a TensorRT engine built by export.tensorrt
(tensorrt_plan: input dims and the largest batch come from the profile in its sidecar) or a
checkpoint (exported to ONNX first, with export.onnx's checks). Inputs are [3, -1, -1] for a
dynamic model; the output is the artifact's own: logits [C, -1, -1] or labels [-1, -1]. The
artifact's metadata travels in the config's parameters: the ArtifactInfo JSON under
"sunet_deploy.artifact" (what the triton:// runtime adapter rebuilds it from) and the plain
strings of sunet_deploy.artifact.info_to_strings.

--backend python writes a model for Triton's python backend instead, for servers without the
onnxruntime backend: export/triton_model.py runs the ONNX model with runtimes.ort inside Triton.
With --io image (the default) it takes encoded images (TYPE_STRING) and returns palette PNG
masks, pre- and post-processing included; with --io tensor it serves the onnxruntime_onnx
interface (normalised float32 NCHW in, logits or labels out), which the triton:// runtime speaks.

Every config.pbtxt is parsed with Triton's own schema (tritonclient's model_config_pb2) before
anything is written, and the model folder appears whole or not at all. An existing model of the
same name is refused unless --overwrite.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from google.protobuf import text_encoding

from export.cli import parse_export_args
from export.trt_build import BuildError
from runtimes.triton import INSTALL_HINT
from sunet_deploy import formats
from sunet_deploy.artifact import ArtifactError, ArtifactInfo, dtype_as, info_to_strings, read_onnx_info
from sunet_deploy.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from sunet_deploy.engine_env import EngineEnvironmentError, read_matching_sidecar
from sunet_deploy.formats import TritonRecipe

PYTHON_MODEL = Path(__file__).with_name("triton_model.py")
SERVABLE = ("onnx", "tensorrt", "checkpoint")
"""The formats (sunet_deploy.formats) a repository model is made from."""
THREADS_KEY = "intra_op_thread_count"
"""The onnxruntime backend's own parameter for ONNX Runtime's intra-op threads; the python model reads it too."""


class TritonExportError(ValueError):
    """The repository model cannot be written as asked; the message says why."""


class ConfigSchemaError(RuntimeError):
    """The written config.pbtxt does not parse as Triton's ModelConfig."""


@dataclass(frozen=True)
class Tensor:
    name: str
    data_type: str  # TYPE_FP32, ...
    dims: tuple[int, ...]  # without the batch dimension; -1 where free


@dataclass(frozen=True)
class Artifact:
    """What the config says of the model file in the version folder: its ArtifactInfo, tensors, largest
    batch, and parameters beyond the ArtifactInfo's strings."""

    info: ArtifactInfo
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    max_batch: int
    parameters: dict[str, str]


# ---------------------------------------------------------------- the artifact in the version folder


def stage_artifact(model: Path, version_dir: Path, max_batch: int | None) -> Artifact:
    """Copy (or, for a checkpoint, export) MODEL into `version_dir`; read what the config needs."""
    kind = formats.by_suffix(model.suffix).name
    if kind == "tensorrt":
        return stage_engine(model, version_dir, max_batch)
    onnx_path = version_dir / "model.onnx"
    if kind == "checkpoint":
        from export.onnx import export_onnx

        print(export_onnx(model, onnx_path, progress=lambda message: print(message, flush=True)).report())
    else:
        shutil.copyfile(model, onnx_path)
    info = read_onnx_info(onnx_path)
    if isinstance(info.inputs[0]["shape"][0], int):
        raise TritonExportError(f"{model}: the batch dimension is fixed; Triton's dynamic batching needs it free")
    return Artifact(info.artifact, tensors(info.inputs), output_tensors(info.outputs, info.artifact),
                    max_batch or 8, {})


def stage_engine(engine: Path, version_dir: Path, max_batch: int | None) -> Artifact:
    """The engine as model.plan; dims and the largest batch from its profile (Triton sends batches 1..max)."""
    sidecar = read_matching_sidecar(engine)
    low, _, high = sidecar.artifact.profile
    if low[0] != 1:
        raise TritonExportError(f"{engine}: its profile starts at batch {low[0]}; Triton also sends batch 1")
    if max_batch and max_batch > high[0]:
        raise TritonExportError(f"{engine}: its profile accepts batches up to {high[0]}, not --max-batch {max_batch}")
    shutil.copyfile(engine, version_dir / "model.plan")
    dims = tuple(lo if lo == hi else -1 for lo, hi in zip(low[1:], high[1:]))
    inputs = tuple(replace(t, dims=dims) for t in tensors(sidecar.inputs))
    extra = {"sunet_deploy.tensorrt_version": sidecar.tensorrt_version, "sunet_deploy.gpu": sidecar.gpu.describe()}
    outputs = output_tensors(sidecar.outputs, sidecar.artifact)
    return Artifact(sidecar.artifact, inputs, outputs, max_batch or high[0], extra)


def tensors(listed: list[dict]) -> tuple[Tensor, ...]:
    """Tensors as export.tensorrt and engine sidecars list them (name, shape with batch, dtype)."""
    return tuple(Tensor(t["name"], dtype_as("triton", t["dtype"]),
                        tuple(d if isinstance(d, int) and d > 0 else -1 for d in t["shape"][1:])) for t in listed)


def output_tensors(listed: list[dict], info: ArtifactInfo) -> tuple[Tensor, ...]:
    """The outputs, logits with their class dimension, which the ONNX exporter leaves symbolic."""
    outputs = tensors(listed)
    if info.metadata.output == "logits":
        return tuple(replace(t, dims=(info.metadata.num_classes, *t.dims[1:])) for t in outputs)
    return outputs


# ---------------------------------------------------------------- config.pbtxt


def config_text(name: str, artifact: Artifact, options: TritonRecipe) -> str:
    """The config.pbtxt of the model, in Triton's protobuf text format."""
    backend = options.backend
    runtime = {"onnxruntime": 'platform: "onnxruntime_onnx"', "tensorrt": 'platform: "tensorrt_plan"',
               "python": 'backend: "python"'}[backend]
    inputs, outputs = artifact.inputs, artifact.outputs
    if backend == "python" and options.io == "image":
        inputs, outputs = (Tensor("image", "TYPE_STRING", (1,)),), (Tensor("mask", "TYPE_STRING", (1,)),)
    kind = {"onnxruntime": "KIND_AUTO", "tensorrt": "KIND_GPU", "python": "KIND_CPU"}[backend]
    parameters = {k: v for k, v in info_to_strings(artifact.info).items() if k != "sunet_deploy.classes"}
    parameters.update(artifact.parameters)
    if options.threads:
        parameters[THREADS_KEY] = str(options.threads)
    lines = [f"name: {quote(name)}", runtime, f"max_batch_size: {artifact.max_batch}",
             "input [", ",\n".join(map(tensor_text, inputs)), "]",
             "output [", ",\n".join(tensor_text(t, 'label_filename: "labels.txt"') for t in outputs), "]",
             f"dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}",
             f"instance_group [ {{ count: {options.instances} kind: {kind} }} ]"]
    lines += [f"parameters {{ key: {quote(k)} value {{ string_value: {quote(v)} }} }}" for k, v in parameters.items()]
    return "\n".join(lines) + "\n"


def tensor_text(tensor: Tensor, extra: str = "") -> str:
    dims = ", ".join(map(str, tensor.dims))
    return f"  {{ name: {quote(tensor.name)} data_type: {tensor.data_type} dims: [ {dims} ] {extra}}}"


def quote(text: str) -> str:
    return '"' + text_encoding.CEscape(text, as_utf8=True) + '"'


def validate_config(text: str):
    """Parse `text` as Triton's ModelConfig (tritonclient's model_config_pb2); a typo is an error."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise TritonExportError(INSTALL_HINT) from exc
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ConfigSchemaError(f"config.pbtxt does not follow Triton's model configuration schema: {exc}") from exc


# ---------------------------------------------------------------- the repository


def check_options(model: Path, options: TritonRecipe) -> TritonRecipe:
    """Fill in the backend; refuse what cannot be served, before any slow work."""
    if not model.is_file():
        raise FileNotFoundError(f"{model}: no such file")
    if model.suffix.lower() not in formats.suffixes(*SERVABLE):
        raise TritonExportError(f"{model}: expected a .onnx model, a .engine/.plan or a .safetensors checkpoint")
    engine = model.suffix.lower() in formats.suffixes("tensorrt")
    backend = options.backend or ("tensorrt" if engine else "onnxruntime")
    if engine and backend != "tensorrt":
        raise TritonExportError(f"{model}: a TensorRT engine runs on the tensorrt backend only")
    if backend == "tensorrt" and not engine:
        raise TritonExportError(f"{model}: the tensorrt backend runs engines; build one with python -m export.tensorrt")
    return replace(options, backend=backend)


def export_repository_model(model: str | Path, repository: str | Path, options: TritonRecipe) -> Path:
    """Write repository/NAME (config, labels, version 1) and return its folder.

    Raises TritonExportError (a usage problem), ConfigSchemaError, FileExistsError (the model is there
    and not options.overwrite), OSError, and the exporters' errors for the artifact itself.
    """
    model, repository = Path(model), Path(repository)
    options = check_options(model, options)
    target = repository / options.name
    if target.exists() and not options.overwrite:
        raise FileExistsError(f"{target}: the repository already holds model {options.name!r}; pass --overwrite")
    repository.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=repository, prefix=f".{options.name}."))
    try:
        write_model(model, staging, options)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def write_model(model: Path, folder: Path, options: TritonRecipe) -> None:
    version_dir = folder / "1"
    version_dir.mkdir()
    artifact = stage_artifact(model, version_dir, options.max_batch)
    text = config_text(options.name, artifact, options)
    validate_config(text)
    if options.backend == "python":
        shutil.copyfile(PYTHON_MODEL, version_dir / "model.py")
    (folder / "config.pbtxt").write_text(text)
    (folder / "labels.txt").write_text("".join(f"{name}\n" for name in artifact.info.metadata.classes))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return parse_export_args(argv, "python -m export.triton", __doc__,
                             ("model", ".onnx model, .engine/.plan (with its sidecar) or .safetensors"),
                             "the model repository (created if missing)", TritonRecipe)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        folder = export_repository_model(args.model, args.output, args.recipe)
    except (TritonExportError, ArtifactError, BuildError, EngineEnvironmentError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as exc:  # ConfigSchemaError, or export.onnx's ExportError: a check failed
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {folder} (its config.pbtxt parses with Triton's model configuration schema)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
