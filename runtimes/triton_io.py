"""How the triton:// runtime moves tensors to and from the server: plain HTTP, or shared memory.

`HttpTensors`: one keep-alive HTTP/1.1 connection (the standard library's) speaking Triton's v2
protocol with binary tensors. The request body is tritonclient's own (`generate_request_body`); the
response is read straight into the output arrays. tritonclient's HTTP client reads a response in
4 KiB blocks through gevent and copies the body twice more before numpy sees it, which for 22 MB
of logits cost about 27 ms of client CPU per request here (see docs/serving.md).

`SharedMemory`: inputs and outputs through Triton's system shared memory (client and server on one
host) or CUDA shared memory (client and server on one GPU), over either protocol. Regions are
registered once per input shape and unregistered on close. A system region's name is unlinked from
/dev/shm as soon as the server has mapped it: both keep their mappings, so a client killed even by
SIGKILL leaves no file in /dev/shm; what a killed client leaves is the server's registration (and
its mapping), which the next client of this module unregisters when the owning process is gone.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import re
import socket
from multiprocessing import shared_memory
from typing import Callable

import numpy as np

INFER_HEADER = "Inference-Header-Content-Length"
HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())  # another container on the host has other pids
REGION = re.compile(rf"{re.escape(f'sunet-{HOST}-')}(\d+)-\d+-(in|out)$")
NUMBERS = itertools.count()


def region_prefix(pid: int | None = None) -> str:
    """The start of the names of the regions process `pid` (default: this one) makes, in /dev/shm and on the server."""
    return f"sunet-{HOST}-{pid or os.getpid()}-"


class HttpTensors:
    """Tensors in, arrays out over one HTTP connection (one per thread, like any tritonclient client)."""

    def __init__(self, url: str, model: str, timeout: float) -> None:
        host, _, port = url.rpartition(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
        self.path = f"/v2/models/{model}/infer"

    def infer(self, inputs: list, outputs: list) -> dict[str, np.ndarray]:
        """tritonclient.http InferInput / InferRequestedOutput objects in; the outputs sent back as arrays
        (outputs placed in shared memory are not in the answer)."""
        from tritonclient.http import InferenceServerClient

        body, json_size = InferenceServerClient.generate_request_body(inputs, outputs)
        headers = {"Content-Type": "application/octet-stream"}
        if json_size is not None:
            headers[INFER_HEADER] = str(json_size)
        try:
            self.connection.request("POST", self.path, body, headers)
            response = self.connection.getresponse()
            if response.status != 200:
                raise_error(response)
            size = response.getheader(INFER_HEADER)
            header = json.loads(response.read(int(size)) if size is not None else response.read())
            return {o["name"]: read_output(response, o) for o in header["outputs"]
                    if "binary_data_size" in o.get("parameters", {})}
        except BaseException:
            # whatever is left of this answer must not be read as the next one's: the next request reconnects
            self.connection.close()
            raise

    def tensor(self, batch: np.ndarray, input_name: str, output_name: str) -> np.ndarray:
        """One float32 batch in, one output out."""
        from tritonclient.http import InferInput, InferRequestedOutput

        request = InferInput(input_name, list(batch.shape), "FP32")
        request.set_data_from_numpy(batch)
        return self.infer([request], [InferRequestedOutput(output_name)])[output_name]

    def close(self) -> None:
        self.connection.close()


def read_output(response: http.client.HTTPResponse, output: dict) -> np.ndarray:
    """One binary output, read from the socket into its array (BYTES tensors through tritonclient's decoder)."""
    from tritonclient.utils import deserialize_bytes_tensor, triton_to_np_dtype

    size = output["parameters"]["binary_data_size"]
    if output["datatype"] == "BYTES":
        return deserialize_bytes_tensor(response.read(size)).reshape(output["shape"])
    array = np.empty(output["shape"], dtype=triton_to_np_dtype(output["datatype"]))
    view = memoryview(array).cast("B")
    if view.nbytes != size:
        raise ValueError(f"output {output['name']}: {size} bytes for shape {output['shape']} {output['datatype']}")
    filled = 0
    while filled < size:
        count = response.readinto(view[filled:])
        if not count:
            raise http.client.IncompleteRead(bytes(), size - filled)
        filled += count
    return array


def raise_error(response: http.client.HTTPResponse):
    from tritonclient.utils import InferenceServerException

    text = response.read().decode(errors="replace")
    try:
        message = json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        message = text or response.reason
    raise InferenceServerException(msg=message, status=str(response.status))


# ---------------------------------------------------------------- shared memory


class SystemRegion:
    """A POSIX shared-memory region registered with the server, its name unlinked once the server mapped it."""

    def __init__(self, client, name: str, size: int) -> None:
        self.client, self.name = client, name
        self.memory = shared_memory.SharedMemory(name=name, create=True, size=size)
        try:
            client.register_system_shared_memory(name, f"/{name}", size)
        except BaseException:
            self.memory.close()
            raise
        finally:
            self.memory.unlink()  # the server has mapped it (or failed to): the name is no longer needed

    def array(self, shape: tuple, dtype) -> np.ndarray:
        return np.ndarray(shape, dtype=dtype, buffer=self.memory.buf)

    def close(self, unregister: bool = True) -> None:
        try:
            if unregister:
                self.client.unregister_system_shared_memory(self.name)
        finally:
            self.memory.close()


class CudaRegion:
    """A CUDA shared-memory region (tritonclient's cuda_shared_memory) registered with the server."""

    def __init__(self, client, name: str, size: int, device_id: int = 0) -> None:
        from tritonclient.utils import cuda_shared_memory as cudashm

        self.client, self.name, self.cudashm = client, name, cudashm
        self.handle = cudashm.create_shared_memory_region(name, size, device_id)
        client.register_cuda_shared_memory(name, cudashm.get_raw_handle(self.handle), device_id, size)

    def write(self, data: np.ndarray) -> None:
        self.cudashm.set_shared_memory_region(self.handle, [data])

    def read(self, shape: tuple, dtype) -> np.ndarray:
        from tritonclient.utils import np_to_triton_dtype

        return self.cudashm.get_contents_as_numpy(self.handle, np_to_triton_dtype(np.dtype(dtype)), shape)

    def close(self, unregister: bool = True) -> None:
        try:
            if unregister:
                self.client.unregister_cuda_shared_memory(self.name)
        finally:
            self.cudashm.destroy_shared_memory_region(self.handle)


def cuda_availability() -> str | None:
    """None when this client can make CUDA shared-memory regions, else why not."""
    try:
        from tritonclient.utils import cuda_shared_memory  # noqa: F401  (needs cuda-python and a CUDA driver)
    except (ImportError, OSError, RuntimeError) as exc:
        return f"CUDA shared memory needs CUDA and tritonclient's cuda_shared_memory on the client ({exc})"
    return None


class SharedMemory:
    """Inputs and outputs of a tensor model through shared-memory regions: one input and one output region
    per input shape, registered on first use and unregistered by close()."""

    def __init__(self, client, module, kind: str = "system") -> None:
        self.client, self.module, self.kind = client, module, kind
        self.regions: dict[tuple, tuple] = {}
        if kind == "system":
            unregister_orphans(client)

    def _regions(self, shape: tuple, out_shape: tuple, out_dtype) -> tuple:
        if shape not in self.regions:
            prefix = f"{region_prefix()}{next(NUMBERS)}"
            make: Callable = SystemRegion if self.kind == "system" else CudaRegion
            in_bytes, out_bytes = int(np.prod(shape)) * 4, int(np.prod(out_shape)) * np.dtype(out_dtype).itemsize
            self.regions[shape] = (make(self.client, f"{prefix}-in", in_bytes),
                                   make(self.client, f"{prefix}-out", out_bytes))
        return self.regions[shape]

    def infer(self, model: str, batch: np.ndarray, input_: dict, output: dict, out_shape: tuple, out_dtype,
              **kwargs) -> np.ndarray:
        """One request of the float32 `batch`; the output (a copy: the region is reused) as an array. Regions the
        server no longer knows (a restarted server; perf_analyzer --shared-memory unregisters every region) are
        made and registered again, once."""
        from tritonclient.utils import InferenceServerException

        try:
            return self._infer(model, batch, input_, output, out_shape, out_dtype, **kwargs)
        except InferenceServerException as exc:
            if "shared memory region" not in str(exc):
                raise
        for region in self.regions.pop(batch.shape):
            region.close(unregister=False)
        return self._infer(model, batch, input_, output, out_shape, out_dtype, **kwargs)

    def _infer(self, model: str, batch: np.ndarray, input_: dict, output: dict, out_shape: tuple, out_dtype,
               **kwargs) -> np.ndarray:
        region_in, region_out = self._regions(batch.shape, out_shape, out_dtype)
        if self.kind == "system":
            region_in.array(batch.shape, np.float32)[...] = batch
        else:
            region_in.write(batch)
        request = self.module.InferInput(input_["name"], list(batch.shape), "FP32")
        request.set_shared_memory(region_in.name, batch.nbytes)
        wanted = self.module.InferRequestedOutput(output["name"])
        out_bytes = int(np.prod(out_shape)) * np.dtype(out_dtype).itemsize
        wanted.set_shared_memory(region_out.name, out_bytes)
        self.client.infer(model, [request], outputs=[wanted], **kwargs)
        if self.kind == "system":
            return region_out.array(out_shape, out_dtype).copy()
        return region_out.read(out_shape, out_dtype)

    def close(self) -> None:
        for regions in self.regions.values():
            for region in regions:
                region.close()
        self.regions.clear()


def unregister_orphans(client) -> list[str]:
    """Unregister the system regions this module registered for processes of this host (by its name) that no
    longer exist (a killed client cannot unregister its own); their names."""
    if type(client).__module__.startswith("tritonclient.grpc"):
        names = list(client.get_system_shared_memory_status(as_json=True).get("regions", {}))
    else:
        names = [region["name"] for region in client.get_system_shared_memory_status()]
    orphans = [n for n in names if (m := REGION.match(n)) and not pid_alive(int(m.group(1)))]
    for name in orphans:
        client.unregister_system_shared_memory(name)
    return orphans


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
