"""The fake GPU of tests/test_trt_runtime.py (the tensorrt 10.x and pycuda.driver fakes, one GpuInfo) set up in
a whole process, so that `runtimes.predict ENGINE --cluster local` takes its GPU path on a machine without
one: `install()` in the driver, and as Ray's `worker_process_setup_hook` in every worker it starts (Ray is
told of 2 GPUs, and gives each actor one, as on a GPU cluster). With NO_PYCUDA=1 in the environment a
process gets no pycuda: a worker machine where the engine cannot load."""

from __future__ import annotations

import os
import sys

from fakes import tensorrt10
from fakes.pycuda_driver import FakeDriver
from sunet_deploy.engine_env import GpuInfo

GPU = GpuInfo("NVIDIA Test GPU", "9.0")
NO_PYCUDA = "SUNET_TEST_NO_PYCUDA"


def install() -> None:
    from runtimes import trt, trt_buffers
    from sunet_deploy import engine_env

    tensorrt = tensorrt10.make()
    sys.modules["tensorrt"] = tensorrt
    engine_env.query_gpu = lambda device_id=0: GPU
    trt._cuda_device_count = lambda: 1
    if os.environ.get(NO_PYCUDA) != "1":
        driver = FakeDriver()
        trt_buffers._pycuda_driver = lambda: driver
        tensorrt.scenario.on_execute = driver.require_context  # TensorRT needs a current context
