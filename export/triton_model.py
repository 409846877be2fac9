"""A sunet-deploy model for Triton's python backend: model.onnx beside this file, run by the project's
torch-free ONNX Runtime adapter (runtimes.ort).

`python -m export.triton --backend python` copies this file into a repository as NAME/1/model.py;
it runs only inside Triton (triton_python_backend_utils is the backend's). The config's input type
picks the interface:

- image (TYPE_STRING): every element is an encoded image, decoded exactly as runtimes.predict reads
  image files; every output element is the palette PNG mask at the image's size, after the model's
  own pre- and post-processing, so masks equal a local runtimes.predict run's.
- tensor: normalised float32 NCHW in, logits or labels out, as the onnxruntime backend serves the
  same ONNX file.

The requests of one dynamic batch run as one ONNX Runtime call (per image size for images). The
interpreter needs numpy, onnxruntime, opencv, pillow and this project's torch-free modules:
`python -m runtimes.serve` runs Triton with one that has them.
"""

import io
import json
import os
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from runtimes.options import OnnxRuntimeOptions
from runtimes.ort import OnnxRuntimeRuntime
from sunet_deploy.pipeline.images import ImageError, read_image
from sunet_deploy.pipeline.masks import output_to_mask
from sunet_deploy.pipeline.normalize import Normalization
from sunet_deploy.pipeline.palettes import save_palette_png


def decode_image(data: bytes) -> np.ndarray:
    """Encoded image bytes -> HxWx3 uint8 RGB through pipeline.images.read_image itself, which reads files:
    an in-memory file (memfd) gives the bytes a path without touching the disk."""
    fd = os.memfd_create("image")
    try:
        os.write(fd, data)
        path = f"/proc/self/fd/{fd}"
        try:
            return read_image(path)
        except ImageError as exc:
            raise ValueError(str(exc).removeprefix(f"{path}: ")) from None
    finally:
        os.close(fd)


def encode_mask(mask: np.ndarray, palette: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    save_palette_png(buffer, mask, palette)
    return buffer.getvalue()


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        threads = config.get("parameters", {}).get("intra_op_thread_count", {}).get("string_value")
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.runtime = OnnxRuntimeRuntime(path, OnnxRuntimeOptions(threads=int(threads) if threads else None))
        self.runtime.activate()
        self.input_name, self.output_name = config["input"][0]["name"], config["output"][0]["name"]
        self.images = config["input"][0]["data_type"] == "TYPE_STRING"
        self.normalize = Normalization.for_artifact(self.runtime.info)  # letterboxes into a --static model's size
        self.palette = np.asarray(self.runtime.metadata.palette, dtype=np.uint8)

    def execute(self, requests: list) -> list:
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        results = self.masks(arrays) if self.images else self.tensors(arrays)
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError(r)) if isinstance(r, str)
                else pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, r)]) for r in results]

    def tensors(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Requests of one batch have one shape (Triton's batcher sees to it): one call for all."""
        out = self.runtime.infer(np.concatenate(arrays))
        return np.split(out, np.cumsum([len(a) for a in arrays])[:-1])

    def masks(self, arrays: list[np.ndarray]) -> list[np.ndarray | str]:
        """Per request an [n, 1] array of PNG bytes, or an error message when one of its images is unreadable."""
        decoded: dict[tuple[int, int], np.ndarray] = {}
        errors: dict[int, str] = {}
        for r, array in enumerate(arrays):
            for i, data in enumerate(array.reshape(-1)):
                try:
                    decoded[r, i] = decode_image(data)
                except ValueError as exc:
                    errors.setdefault(r, f"image {i}: {exc}")
        masks = self.segment({key: image for key, image in decoded.items() if key[0] not in errors})
        return [errors[r] if r in errors else np.array([[masks[r, i]] for i in range(array.size)], dtype=np.object_)
                for r, array in enumerate(arrays)]

    def segment(self, images: dict[tuple[int, int], np.ndarray]) -> dict[tuple[int, int], bytes]:
        """One ONNX Runtime call per image size; PNG masks by the same keys."""
        by_size: dict[tuple[int, int], list] = {}
        for key, image in images.items():
            by_size.setdefault(image.shape[:2], []).append(key)
        masks = {}
        for keys in by_size.values():
            batch, geometries = self.normalize([images[key] for key in keys])
            out = self.runtime.infer(batch)
            for key, mask in zip(keys, output_to_mask(out, self.runtime.output_kind, geometries)):
                masks[key] = encode_mask(mask, self.palette)
        return masks

    def finalize(self) -> None:
        self.runtime.deactivate()
