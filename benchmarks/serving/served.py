"""What a benchmark needs to know of a served model (its configuration, as the server reports it) and what
it sends to it (one request's payload): shared by benchmarks.serving.serve, serve_search and serve_transports."""

from __future__ import annotations

import numpy as np

from runtimes.triton import ServedModel
from sunet_deploy.artifact import dtype_name
from sunet_deploy.data import SyntheticSegmentation
from sunet_deploy.pipeline.images import encode_png


def served_model(uri: str) -> dict:
    """The server's name and version and the model's serving configuration."""
    served = ServedModel.parse(uri)
    config = served.config()
    client = served.client()
    try:
        meta = client.get_server_metadata(**({"as_json": True} if served.protocol == "grpc" else {}))
    finally:
        client.close()
    return {
        "server": f"{meta['name']} {meta['version']}", "uri": uri, "model": served.model,
        "interface": "image" if config["input"][0]["data_type"] == "TYPE_STRING" else "tensor",
        "input": config["input"][0]["name"], "output": config["output"][0]["name"],
        "output_dims": [int(d) for d in config["output"][0]["dims"]], "output_type": config["output"][0]["data_type"],
        "backend": config.get("platform") or config.get("backend"),
        "max_batch_size": int(config["max_batch_size"]),
        "max_queue_delay_us": int(config.get("dynamic_batching", {}).get("max_queue_delay_microseconds", 0)),
        "instances": sum(int(group.get("count", 1)) for group in config.get("instance_group", [])),
    }  # fmt: skip


def payload(interface: str, size: tuple[int, int]) -> np.ndarray | bytes:
    if interface == "tensor":
        return np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)
    return encode_png(SyntheticSegmentation(num_samples=1, size=size, split="val")[0][0])


def output_bytes(model: dict, size: tuple[int, int]) -> int:
    """Bytes of one tensor model's output for one image of `size` (for shared-memory regions)."""
    itemsize = np.dtype(dtype_name("triton", model["output_type"])).itemsize
    return int(np.prod(model["output_dims"][:-2] or [1])) * size[0] * size[1] * itemsize
