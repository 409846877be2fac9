"""Every way a model can fail to open, for every format the table knows (issue 25): through
`python -m runtimes.predict` one `error:` line, exit 2, and no output folder (so no summary); through
`runtimes.open_runtime` the exception a Python caller gets: its type, one line naming the model, and
whether `open_runtime` or loading (`activate`, `with`) raises it.

The artifacts are made once per module: small valid ones (a random checkpoint, an ONNX graph with
sunet-deploy metadata, a torch.export program) and, from them, the broken ones. Formats whose library is missing here
(TensorRT) answer with the install hint where the file itself is not already refused.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import socket
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from factory import engine_with_sidecar, make_meta, relu_model
from runtimes import ArtifactError, RuntimeUnavailable, availability, open_runtime
from runtimes.options import TensorRTOptions
from sunet_deploy import formats
from sunet_deploy.artifact import ARTIFACT_KEY, ArtifactInfo, set_onnx_info
from sunet_deploy.checkpoint import CheckpointError, save_checkpoint
from sunet_deploy.engine_env import EngineEnvironmentError
from sunet_deploy.models import ModelSpec, build_model

ROOT = Path(__file__).resolve().parents[1]
TRT_REASON = availability(TensorRTOptions())
TRT_MISSING = (RuntimeUnavailable, "load", re.escape(TRT_REASON)) if TRT_REASON else None
"""Here (no TensorRT, or no GPU): the reason, with what to install."""


@dataclass(frozen=True)
class Case:
    """One cell: a format, a way to fail, and what a Python caller gets (type, where, message)."""

    format: str
    kind: str
    suffix: str
    error: type  # the exception open_runtime or activation raises
    when: str  # "open" (open_runtime raises) or "load" (activation raises)
    message: str  # a regular expression the one-line message matches

    @property
    def id(self) -> str:
        return f"{self.format}-{self.kind}" + (f"-{self.suffix.lstrip('.')}" if self.kind == "random" else "")


def file_cases() -> list[Case]:
    cases = []
    for fmt in (f for f in formats.formats() if f.files):
        suffix = fmt.suffixes[0]
        trt = fmt.name == "tensorrt"
        # a file that is not what its suffix says: refused by its reader, or (an engine) by its missing sidecar
        foreign = (EngineEnvironmentError, "open", "no build environment file") if trt else None
        generic = {
            "missing": (ArtifactError, "open", "no such file"),
            "folder": (ArtifactError, "open", "is a folder, not a model file"),
            "empty": foreign or (ArtifactError, "open", "too short|not a loadable ONNX model|not an AOTInductor"),
            "pickle": foreign or (ArtifactError, "open", "Python pickle|not a loadable ONNX|not an AOTInductor"),
            "torch-pickle": foreign or (ArtifactError, "open", "zip archive|not a loadable ONNX|no AOTInductor"),
        }
        cases += [Case(fmt.name, kind, suffix, *expected) for kind, expected in generic.items()]
        for each in fmt.suffixes:  # random bytes under every suffix the table knows
            cases.append(Case(fmt.name, "random", each, *(foreign or (
                ArtifactError, "open", "not a safetensors|not a loadable ONNX|not an AOTInductor"))))
    return cases + [
        Case("checkpoint", "truncated", ".safetensors", ArtifactError, "open", "truncated: holds"),
        Case("checkpoint", "onnx-inside", ".safetensors", ArtifactError, "open", "not a safetensors"),
        Case("checkpoint", "plain-safetensors", ".safetensors", ArtifactError, "open", "not a sunet-deploy checkpoint"),
        Case("checkpoint", "other-architecture", ".safetensors", CheckpointError, "open",
             r"weights are for another architecture: .*wrong shape \(e\.g\. head"),
        Case("onnx", "truncated", ".onnx", ArtifactError, "open", "not a loadable ONNX model"),
        Case("onnx", "checkpoint-inside", ".onnx", ArtifactError, "open", "not a loadable ONNX model"),
        Case("onnx", "no-metadata", ".onnx", ArtifactError, "open", "has no sunet-deploy metadata"),
        Case("tensorrt", "onnx-inside", ".engine", EngineEnvironmentError, "open", "no build environment file"),
        Case("tensorrt", "bad-sidecar", ".engine", EngineEnvironmentError, "open", "unreadable engine build"),
        # an engine whose sidecar opens: loading it needs TensorRT and a GPU (where they are, TensorRT judges it)
        Case("tensorrt", "stale-sidecar", ".plan", *(TRT_MISSING or (EngineEnvironmentError, "load",
                                                                     "does not match its model.plan.json"))),
        Case("tensorrt", "undeserializable", ".engine", *(TRT_MISSING or (RuntimeError, "load",
                                                                          "could not deserialize the engine"))),
        Case("aoti", "truncated", ".pt2", ArtifactError, "open", "not an AOTInductor package"),
        Case("aoti", "exported-program", ".pt2", ArtifactError, "open", "has no sunet-deploy metadata"),
        Case("aoti", "no-compiled-model", ".pt2", ArtifactError, "load", "not an AOTInductor package"),
    ]


READERS = [  # a runtime that reads another format's files (OpenVINO: .onnx), chosen by its options / --runtime
    Case("openvino", "missing", ".onnx", ArtifactError, "open", "no such file"),
    Case("openvino", "folder", ".onnx", ArtifactError, "open", "is a folder, not a model file"),
    Case("openvino", "empty", ".onnx", ArtifactError, "open", "has no sunet-deploy metadata"),
    Case("openvino", "pickle", ".onnx", ArtifactError, "open", "not a readable ONNX model"),
    Case("openvino", "random", ".onnx", ArtifactError, "open", "not a readable ONNX model"),
    Case("openvino", "truncated", ".onnx", ArtifactError, "open", "not a readable ONNX model"),
    Case("openvino", "no-metadata", ".onnx", ArtifactError, "open", "has no sunet-deploy metadata"),
    Case("openvino", "checkpoint-file", ".safetensors", ArtifactError, "open",
         "is a pytorch artifact, not one the openvino runtime opens"),
]
"""Each reader's cells, run with its options (open_runtime) or `--runtime NAME` (predict)."""

SERVED = [
    Case("triton", "no-server", "triton", ArtifactError, "open", "cannot read the served model's configuration"),
    Case("triton", "no-server-grpc", "triton+grpc", ArtifactError, "open", "cannot read the served model's config"),
    Case("triton", "not-ready", "triton", ArtifactError, "open", "cannot read the served model's configuration"),
    Case("triton", "foreign-model", "triton", ArtifactError, "open", "served without sunet-deploy metadata"),
    Case("triton", "no-port", "triton", ArtifactError, "open", r"expected triton://HOST:PORT/MODEL"),
]
CASES = file_cases() + READERS + SERVED


def chosen_runtime(case: Case) -> str | None:
    """The runtime a reader's cell asks for; None: the file's own."""
    fmt = formats.get(case.format)
    if fmt.reads and fmt.runtime == "openvino":
        pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
    return fmt.runtime if fmt.reads else None


def test_every_format_of_the_table_has_its_cells():
    assert {case.format for case in CASES} == {f.name for f in formats.formats()}
    assert {case.suffix for case in CASES} >= set(formats.suffixes())
    assert {case.format for case in READERS} == {f.name for f in formats.formats() if f.reads}
    assert len({case.id for case in CASES}) == len(CASES)


# ---------------------------------------------------------------- the artifacts, made once


class FakeTriton(BaseHTTPRequestHandler):
    """Triton's HTTP answers to a model's config: `notready` is a model the server has not loaded (its
    answer for a model that failed to load), `plain` a model served without sunet-deploy metadata."""

    def do_GET(self) -> None:  # noqa: N802
        model = self.path.split("/")[3] if self.path.startswith("/v2/models/") else ""
        if model == "plain":
            status, body = 200, {"name": "plain", "max_batch_size": 8, "input": [], "output": []}
        else:
            status, body = 400, {"error": f"Request for unknown model: '{model}' has no available versions"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def fake_triton():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeTriton)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, bytes]:
    """The bytes the broken files are made of: small valid artifacts of each kind, and foreign files."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("sources")
    spec = ModelSpec("sunet_tiny", num_classes=5)
    torch.manual_seed(0)
    checkpoint = save_checkpoint(folder / "model.safetensors", build_model(spec), make_meta(spec))
    other = save_checkpoint(folder / "other.safetensors", build_model(ModelSpec("sunet_tiny", num_classes=3)),
                            make_meta(spec))  # 3-class weights under 5-class metadata
    program = torch.export.export(torch.nn.ReLU(), (torch.zeros(1, 3, 8, 8),))
    torch.export.save(program, folder / "program.pt2")
    save_file({"weight": torch.zeros(2, 2)}, folder / "plain.safetensors")
    torch.save({"weight": torch.zeros(2, 2)}, folder / "weights.pth")
    onnx_model = relu_model()
    set_onnx_info(onnx_model, ArtifactInfo(make_meta(spec), "onnx"))
    return {
        "checkpoint": checkpoint.read_bytes(),
        "onnx": onnx_model.SerializeToString(),
        "other-architecture": other.read_bytes(),
        "exported-program": (folder / "program.pt2").read_bytes(),
        "plain-safetensors": (folder / "plain.safetensors").read_bytes(),
        "torch-pickle": (folder / "weights.pth").read_bytes(),
        "pickle": pickle.dumps({"weight": [0.0] * 64}, protocol=4),
        "no-metadata": relu_model().SerializeToString(),
        "random": np.random.default_rng(0).bytes(4096),
        "info": ArtifactInfo(make_meta(spec), "aoti", input_shape=(1, 3, 64, 64)).to_json().encode(),
    }


def make_target(case: Case, folder: Path, sources: dict[str, bytes], fake_port: int) -> str:
    """The model argument of `case`: a file made in `folder`, or a served model's URI."""
    if case.format == "triton":
        port = {"no-server": closed_port(), "no-server-grpc": closed_port()}.get(case.kind, fake_port)
        model = {"foreign-model": "plain", "not-ready": "notready"}.get(case.kind, "sunet")
        address = "127.0.0.1" if case.kind == "no-port" else f"127.0.0.1:{port}"
        return f"{case.suffix}://{address}/{model}"
    path = folder / f"model{case.suffix}"
    kind = case.kind
    if kind == "missing":
        return str(path)
    if kind == "folder":
        path.mkdir()
    elif kind == "truncated":
        whole = sources[{"aoti": "exported-program", "openvino": "onnx"}.get(case.format, case.format)]
        path.write_bytes(whole[: len(whole) // 2])
    elif kind == "no-compiled-model":  # an AOTInductor package's layout and metadata, without the compiled model
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("model/archive_format", "pt2")
            metadata = {ARTIFACT_KEY: sources["info"].decode()}
            archive.writestr("model/data/aotinductor/model/model_metadata.json", json.dumps(metadata))
    elif kind in ("stale-sidecar", "undeserializable"):
        engine_with_sidecar(path, sources["random"], stale=kind == "stale-sidecar")
    elif kind == "bad-sidecar":
        path.write_bytes(sources["random"])
        path.with_name(path.name + ".json").write_text("{not json")
    else:
        data = {"empty": b"", "onnx-inside": sources["onnx"], "checkpoint-inside": sources["checkpoint"],
                "checkpoint-file": sources["checkpoint"]}
        path.write_bytes(data[kind] if kind in data else sources[kind])
    return str(path)


@pytest.fixture
def target(request, tmp_path, sources, fake_triton):
    return make_target(request.param, tmp_path, sources, fake_triton)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    cv2.imwrite(str(path), np.random.default_rng(1).integers(0, 255, (24, 32, 3), dtype=np.uint8))
    return path


def cell(case: Case):
    return pytest.param(case, case, id=case.id)


# ---------------------------------------------------------------- the cells


@pytest.mark.parametrize("case, target", [cell(c) for c in CASES], indirect=["target"])
def test_python_callers_get_one_line_naming_the_model(case, target):
    when, runtime_name = "open", chosen_runtime(case)
    options = formats.by_runtime(runtime_name).options_class()() if runtime_name else None
    with pytest.raises(Exception) as raised:
        runtime = open_runtime(target, options)
        when = "load"
        with runtime:
            pass
    error = raised.value
    assert (type(error), when) == (case.error, case.when), f"{type(error).__name__} at {when}: {error}"
    text = str(error)
    assert "\n" not in text and re.search(case.message, text), text
    assert text.startswith(target) or case.error is RuntimeUnavailable, text  # what to install, not which file


# `python -m runtimes.predict` per cell, without paying torch's import per cell: one interpreter imports
# what predict imports (not runtimes.predict itself), then each cell forks from it and runs the module as
# `python -m` does (runpy, run_name "__main__"), its stdout and stderr in files, its exit status returned.
CLI_SERVER = r"""
import json, os, runpy, sys, traceback
import cv2, numpy, onnxruntime, torch, torch._inductor.package, tqdm, zipfile
import runtimes, runtimes.aoti, runtimes.inputs, runtimes.options, runtimes.pytorch, sunet_deploy.protocol
import sunet_deploy.tiling
print("ready", flush=True)
for line in sys.stdin:
    argv, out, err = json.loads(line)
    pid = os.fork()
    if pid == 0:
        for fd, name in ((1, out), (2, err)):
            os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.argv = ["python -m runtimes.predict", *argv]
        try:
            runpy.run_module("runtimes.predict", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(code)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


@pytest.fixture(scope="module")
def predict_cli():
    """run(argv) -> (exit status, stdout, stderr) of `python -m runtimes.predict ARGV` (see CLI_SERVER)."""
    server = subprocess.Popen([sys.executable, "-c", CLI_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert server.stdout.readline().strip() == "ready"

    def run(argv: list[str], folder: Path) -> tuple[int, str, str]:
        out, err = folder / "cli.stdout", folder / "cli.stderr"
        server.stdin.write(json.dumps([argv, str(out), str(err)]) + "\n")
        server.stdin.flush()
        return int(server.stdout.readline()), out.read_text(), err.read_text()

    yield run
    server.stdin.close()  # its loop ends (as it does if this process dies)
    server.kill()  # without waiting for the interpreter's own shutdown
    server.wait()


@pytest.mark.parametrize("case, target", [cell(c) for c in CASES], indirect=["target"])
def test_predict_says_one_line_exits_2_and_writes_nothing(case, target, photo, tmp_path, predict_cli):
    out = tmp_path / "out"
    runtime_name = chosen_runtime(case)
    status, stdout, stderr = predict_cli([target, str(photo), "-o", str(out),
                                          *(["--runtime", runtime_name] if runtime_name else [])], tmp_path)
    lines = stderr.strip().splitlines()
    assert (status, len(lines)) == (2, 1), stderr
    assert lines[0].startswith(f"error: {target}") and re.search(case.message, lines[0]), lines[0]
    assert stdout == "" and not out.exists()


def test_the_regression_through_a_fresh_python_m(tmp_path, photo, sources):
    """The case issue 25 found, in a process of its own: a checkpoint of another architecture, chosen by
    its suffix and refused before anything is written (it was a traceback, exit 1, and a summary
    saying "written": 1)."""
    model, out = tmp_path / "other_arch.safetensors", tmp_path / "out"
    model.write_bytes(sources["other-architecture"])
    result = subprocess.run([sys.executable, "-m", "runtimes.predict", str(model), str(photo), "-o", str(out)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2 and result.stdout == "", result.stderr
    assert result.stderr.splitlines() == [f"error: {model}: weights are for another architecture: 2 wrong shape "
                                          "(e.g. head.0.bias)"]
    assert not out.exists()


# ---------------------------------------------------------------- the summary says what happened


def test_the_summary_counts_what_was_written_and_what_stopped_the_run(tmp_path, sources, photo, monkeypatch):
    from runtimes import predict

    model = tmp_path / "model.safetensors"
    model.write_bytes(sources["checkpoint"])
    for name in ("a", "b", "c"):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f"{name}.png").write_bytes(photo.read_bytes())
    (tmp_path / "in" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    assert predict.main([str(model), str(tmp_path / "in"), "-o", str(tmp_path / "out")]) == 1
    summary = json.loads((tmp_path / "out" / predict.SUMMARY).read_text())
    assert (summary["inputs"], summary["written"], len(summary["skipped"]), summary["stopped"]) == (3, 2, 1, None)
    assert sorted(p.name for p in (tmp_path / "out").glob("*_mask.png")) == ["a_mask.png", "c_mask.png"]

    calls = []
    run = predict.Predictor.run

    def interrupted(self, job):  # the second image: the user presses Ctrl-C
        calls.append(job)
        if len(calls) == 2:
            raise KeyboardInterrupt
        run(self, job)

    monkeypatch.setattr(predict.Predictor, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict.main([str(model), str(photo), str(tmp_path / "in" / "c.png"), "-o", str(tmp_path / "stopped")])
    summary = json.loads((tmp_path / "stopped" / predict.SUMMARY).read_text())
    assert (summary["inputs"], summary["written"], summary["skipped"], summary["stopped"]) == (2, 1, [],
                                                                                               "KeyboardInterrupt")


@pytest.mark.parametrize("model, flags, message", [
    ("triton://127.0.0.1:1/sunet", ["--threads", "2"], "the triton runtime cannot take threads=2: a served model"),
    ("triton+grpc://127.0.0.1:1/sunet", ["--device", "cuda"], "the triton runtime cannot take device='cuda'"),
    ("model.engine", ["--threads", "2"], "the tensorrt runtime cannot take threads=2: it computes on the GPU"),
    ("model.engine", ["--device", "cpu"], "the tensorrt runtime cannot take device='cpu': it runs on a CUDA device"),
    ("model.onnx", ["--device", "cpu", "--provider", "cuda"], "the onnxruntime runtime cannot take device='cpu' with"),
    ("model.onnx", ["--device", "gpu"], "the onnxruntime runtime: device must be cpu, cuda or cuda:N, got 'gpu'"),
    ("model.pt2", ["--device", "tpu"], "the aoti runtime: device must be cpu, cuda or cuda:N, got 'tpu'"),
    ("model.safetensors", ["--threads", "0"], "the pytorch runtime: threads must be a positive integer, got 0"),
])
def test_a_common_option_a_runtime_cannot_take_is_one_line(model, flags, message, tmp_path, photo, predict_cli):
    """--threads and --device apply to every runtime that can honour them; the others refuse in one line,
    before anything is opened or written."""
    status, stdout, stderr = predict_cli([model, str(photo), "-o", str(tmp_path / "out"), *flags], tmp_path)
    assert (status, stderr.count("\n"), stdout) == (2, 1, ""), stderr
    assert stderr.startswith(f"error: {model}: {message}"), stderr
    assert not (tmp_path / "out").exists()
