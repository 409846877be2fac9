"""Every `python -m benchmarks...` command: listed where the package introduces itself and in
docs/benchmarks.md, named by its own module path in --help, and no doc names a benchmarks module that
is not there. Tiny real runs here for the commands no other test runs (traffic, protocol, serve_transports'
refusals); latency, parity, output_stride and letterbox run in test_benchmarks.py, gpu_report in
test_gpu_report.py, serve and serve_transports against a real server in test_triton_server.py,
cpp_latency in test_cpp_onnxruntime.py."""

from __future__ import annotations

import importlib
import json
import re
import socket
from pathlib import Path

import pytest

import benchmarks
from sunet_deploy.checkpoint import save_checkpoint
from sunet_deploy.data import DatasetSpec
from sunet_deploy.metadata import ModelMetadata
from sunet_deploy.models import ModelSpec, build_model

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "Makefile", ROOT / "runtimes" / "cpp" / "README.md",
        *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"python3? -m (benchmarks(?:\.\w+)+)")
REFERENCE = re.compile(r"(?<![\w/.-])benchmarks(?:\.[A-Za-z_]\w*)+")


def commands() -> set[str]:
    """The modules under benchmarks/ that run as `python -m` (they have a __main__ block)."""
    return {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "benchmarks").rglob("*.py")
            if 'if __name__ == "__main__":' in p.read_text()}  # fmt: skip


def test_every_command_is_listed_in_the_package_docstring_and_in_docs_benchmarks():
    found = commands()
    assert {"benchmarks.latency", "benchmarks.serving.serve", "benchmarks.studies.protocol"} <= found
    assert set(COMMAND.findall(benchmarks.__doc__)) == found
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    assert set(COMMAND.findall(docs)) == found
    table = [line for line in docs.splitlines() if line.startswith("| `python -m benchmarks")]
    assert sorted(COMMAND.search(line).group(1) for line in table) == sorted(found)  # one row each


def resolves(reference: str) -> bool:
    """`benchmarks.a.b` names a module, or a module and one top-level name defined in it."""
    parts = reference.split(".")
    for cut in (len(parts), len(parts) - 1):
        base = ROOT.joinpath(*parts[:cut])
        source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if source.is_file():
            rest = parts[cut:]
            defined = rf"^(def|class) {rest[0]}\b|^{rest[0]}\s*[:=]" if rest else ""
            return not rest or re.search(defined, source.read_text(), re.M) is not None
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_name_only_benchmarks_modules_that_exist(doc):
    references = {r for r in REFERENCE.findall(doc.read_text()) if r != "benchmarks.md"}
    assert [r for r in sorted(references) if not resolves(r)] == []


def test_a_moved_module_is_caught():
    assert resolves("benchmarks.serving.serve") and resolves("benchmarks.harness.artifacts.cached_path")
    assert not resolves("benchmarks.serve") and not resolves("benchmarks.harness.artifacts.no_such_name")


@pytest.mark.parametrize("name", sorted(commands()))
def test_help_names_the_module_path(name, capsys):
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(name).main(["--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m {name} ")


def test_traffic_bytes_and_floor(tmp_path):
    from benchmarks.studies import traffic

    out = tmp_path / "traffic.json"
    args = ["--arch", "sunet_tiny", "--num-classes", "5", "--batch", "1", "2", "--size", "32x48"]
    assert traffic.main([*args, "--bandwidth", "100", "--output", str(out)]) == 0
    floors = json.loads(out.read_text())["floors"]
    one, two = floors["batch 1"], floors["batch 2"]
    assert 0 < one["bytes"] < two["bytes"] < 2 * one["bytes"]  # the weights are read once for the whole batch
    assert one["floor_ms"] == pytest.approx(1000 * one["bytes"] / 100e9)


def test_protocol_speed_part(tmp_path):
    """--parts speed on a 64x64 image: the whole image is one window, 32-pixel tiles at stride 24 are 3x3."""
    from benchmarks.studies import protocol

    spec = DatasetSpec("synthetic", split="val", num_samples=4, size=(32, 32), num_classes=5, seed=0)
    meta = ModelMetadata(model=ModelSpec("sunet_tiny", num_classes=5).to_dict(), classes=spec.build().classes,
                         palette=[[i, i, i] for i in range(5)], training={"dataset": {"val": spec.to_dict()}})  # fmt: skip
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors", build_model(ModelSpec("sunet_tiny", num_classes=5)), meta)
    out = tmp_path / "report"
    assert protocol.main([str(checkpoint), "--parts", "speed", "--speed-size", "64", "--speed-tile", "32",
                          "--repeats", "1", "--workdir", str(tmp_path / "work"), "--output", str(out)]) == 0  # fmt: skip
    rows = {r["setting"]: r for r in json.loads((out / "protocol.json").read_text())["speed"]["rows"]}
    assert rows["whole image"]["windows"] == 1 and rows["whole image"]["relative_to_whole"] == 1.0
    assert {rows[f"tiles, batch {b}"]["windows"] for b in (1, 4, 16)} == {9}
    assert rows["4 scales + flip, tiles, batch 4"]["views"] == 8
    assert "## Speed" in (out / "protocol.md").read_text()


def test_protocol_refuses_a_checkpoint_without_a_synthetic_validation_set(tmp_path, capsys):
    from benchmarks.studies import protocol

    meta = ModelMetadata(model=ModelSpec("sunet_tiny", num_classes=5).to_dict(), classes=[f"c{i}" for i in range(5)],
                         palette=[[i, i, i] for i in range(5)])  # fmt: skip
    checkpoint = save_checkpoint(tmp_path / "bare.safetensors", build_model(ModelSpec("sunet_tiny", num_classes=5)), meta)
    assert protocol.main([str(checkpoint), "--output", str(tmp_path / "report")]) == 2
    assert capsys.readouterr().err.startswith("error: the checkpoint records no synthetic validation set")
    assert not (tmp_path / "report").exists()


def test_serve_transports_refuses_bad_input(capsys):
    pytest.importorskip("tritonclient.http", reason="tritonclient is not installed: pip install 'sunet-deploy[serve]'")
    from benchmarks.serving import serve_transports

    with pytest.raises(SystemExit) as stop:
        serve_transports.main(["triton+grpc://127.0.0.1:8001/sunet"])
    assert stop.value.code == 2 and "expected a triton:// (HTTP) URI" in capsys.readouterr().err
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert serve_transports.main([f"triton://127.0.0.1:{port}/sunet", "--output", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
