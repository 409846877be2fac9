"""`python -m runtimes.serve REPOSITORY`: NVIDIA's tritonserver serving a model repository, in the foreground.

    python -m runtimes.serve model_repository          # until Ctrl-C or SIGTERM
    python -m runtimes.serve model_repository -- python -m runtimes.predict triton://127.0.0.1:8000/sunet a.png -o out

The server is the tritonserver binary that the nvidia-pytriton wheel ships, with its python backend
(the wheel has no onnxruntime or tensorrt backend); it runs on CPU. The wheel pins numpy<2, so it
lives in an environment of its own: `create_serve_venv` (make serve-venv) makes .venv-serve with
the wheel, numpy<2 and this project's core install (ONNX Runtime, OpenCV, Pillow; no torch), and
this command runs with that environment's interpreter. The python backend's stub embeds the same
interpreter: it links this Python's libpython (whose folder goes on LD_LIBRARY_PATH) and takes its
prefix from the first `python3` on PATH (this environment's bin folder goes first), so the models
import from this environment.

With a COMMAND after `--`, the server runs while the command does and then stops; the exit status
is the command's. tritonserver's whole log goes to a file (appended to; --log-file, by default
tritonserver.log beside the repository), named in one line; the console shows its warnings and
errors only, unless --verbose. SIGINT and SIGTERM stop the server cleanly (in-flight requests get --exit-timeout
seconds). The server never outlives this process: it runs in its own session and gets SIGTERM when
this process dies, even by SIGKILL (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import importlib.metadata
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sunet_deploy.cli import EXIT_FAILED, EXIT_OK, EXIT_STATUS_HELP, EXIT_USAGE
from sunet_deploy.flags import add_flag
from sunet_deploy.lifetime import die_with_parent

from .base import RuntimeUnavailable

SERVE_PACKAGES = ("nvidia-pytriton==0.7.0", "numpy<2")
"""Installed with this project's core (torch-free) dependencies, in one resolution, so all agree on numpy<2."""
# NVIDIA's perf_analyzer: the last tritonclient wheel that ships the binary (later ones are pure Python; the
# perf-analyzer name on the index is a placeholder), with the CUDA runtime it links. Installed with --target
# beside the environment, since nvidia-pytriton wants tritonclient ~= 2.50 for its own use.
PERF_ANALYZER_PACKAGES = ("tritonclient==2.41.0", "nvidia-cuda-runtime-cu12==12.9.79")
PROJECT = Path(__file__).resolve().parents[1]


def create_serve_venv(path: str | os.PathLike) -> Path:
    """Make the serving environment at `path` unless it holds SERVE_PACKAGES already; returns its interpreter.

    Parallel callers (pytest workers) wait on a lock file instead of installing twice.
    Raises subprocess.CalledProcessError when pip cannot install the wheel here.
    """
    path = Path(path).absolute()
    marker, wanted = path / ".sunet-serve-installed", "\n".join(SERVE_PACKAGES + PERF_ANALYZER_PACKAGES) + "\n"
    with open(path.with_name(f"{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.is_file() or marker.read_text() != wanted:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True)
            pip = [str(path / "bin" / "python"), "-m", "pip", "install", "-q"]
            subprocess.run([*pip, *SERVE_PACKAGES, "-e", str(PROJECT)], check=True)
            install_perf_analyzer(path, pip)
            marker.write_text(wanted)
    return path / "bin" / "python"


def install_perf_analyzer(venv: Path, pip: list[str]) -> None:
    """perf_analyzer under VENV/perf_analyzer, its libb64 linked from the copy the nvidia-pytriton wheel bundles
    (under a hashed name) into a folder that perf_analyzer() puts on LD_LIBRARY_PATH."""
    target = venv / "perf_analyzer"
    subprocess.run([*pip, "--no-deps", "--target", str(target), *PERF_ANALYZER_PACKAGES], check=True)
    (target / "lib").mkdir(exist_ok=True)
    b64 = next(venv.glob("lib/python3*/site-packages/nvidia_pytriton.libs/libb64-*.so.0d"))
    (target / "lib" / "libb64.so.0d").symlink_to(b64)


def perf_analyzer(venv: str | os.PathLike = PROJECT / ".venv-serve") -> tuple[Path, dict[str, str]]:
    """The perf_analyzer binary installed in the serving environment and the environment it runs with.

    Raises RuntimeUnavailable, saying how to install it, when it is not there."""
    target = Path(venv).absolute() / "perf_analyzer"
    binary = target / "bin" / "perf_analyzer"
    if not binary.is_file():
        raise RuntimeUnavailable(f"perf_analyzer is not installed in {venv} (make serve-venv installs it)")
    libs = [str(target / "lib"), str(target / "nvidia" / "cuda_runtime" / "lib"), os.environ.get("LD_LIBRARY_PATH")]
    return binary, {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(filter(None, libs))}


@dataclass(frozen=True)
class TritonDist:
    """The server binary, its libraries and the python backend of the nvidia-pytriton wheel."""

    binary: Path
    libs: Path
    python_backend: Path
    stub: Path  # the python backend stub built for this interpreter's Python version


def triton_dist() -> TritonDist:
    spec = importlib.util.find_spec("pytriton")
    if spec is None:
        raise RuntimeUnavailable("nvidia-pytriton is not installed for this Python: run with the serving environment's "
                                 "interpreter (make serve-venv; .venv-serve/bin/python -m runtimes.serve)")
    root = Path(spec.origin).parent / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise RuntimeUnavailable(f"nvidia-pytriton ships no python backend stub for Python {version}")
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise RuntimeUnavailable("this Python has no shared libpython, which the python backend's stub links")
    return TritonDist(root / "bin" / "tritonserver", root.parent.parent / "nvidia_pytriton.libs",
                      root / "backends" / "python", stub)


def backend_directory(dist: TritonDist) -> Path:
    """A backends folder whose python backend has this Python's stub beside it, where Triton looks for it;
    made once per environment and wheel version (a rename makes it appear whole)."""
    name = f"sunet-triton-backends-{importlib.metadata.version('nvidia-pytriton')}-py{sys.version_info.major}." \
           f"{sys.version_info.minor}"
    backends = Path(sys.prefix) / "share" / name
    if not backends.is_dir():
        backends.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=backends.parent))
        shutil.copytree(dist.python_backend, staging / "python", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(dist.stub, staging / "python" / "triton_python_backend_stub")
        try:
            staging.rename(backends)
        except OSError:  # another server made it first
            shutil.rmtree(staging)
    return backends


def server_env(dist: TritonDist) -> dict[str, str]:
    """The wheel's libraries and this Python's libpython to link; this environment's python3 first on PATH."""
    env = dict(os.environ)
    libs = [str(dist.libs), sysconfig.get_config_var("LIBDIR"), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, libs))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def server_command(dist: TritonDist, backends: Path, args: argparse.Namespace) -> list[str]:
    command = [str(dist.binary), f"--model-repository={args.repository.resolve()}", f"--backend-directory={backends}",
               f"--http-address={args.address}", f"--http-port={args.http_port}",
               f"--grpc-address={args.address}", f"--grpc-port={args.grpc_port}",
               f"--exit-timeout-secs={args.exit_timeout}", "--strict-readiness=true"]
    if args.metrics_port:
        return command + [f"--metrics-address={args.address}", f"--metrics-port={args.metrics_port}"]
    return command + ["--allow-metrics=false"]


def start_child(command: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(command, preexec_fn=functools.partial(die_with_parent, os.getpid()), **kwargs)


LOG_ENTRY = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d\d")
"""The start of one of tritonserver's log entries (glog): its level, Info, Warning, Error or Fatal. The lines
that follow without one (its tables of models and options) belong to the same entry."""


def relay_log(server: subprocess.Popen, log, verbose: bool) -> threading.Thread:
    """Copy the server's output into `log` (an open file), and onto stderr what is a warning or worse (all with
    `verbose`), in a thread that ends with that output; join it once the server has exited."""
    def relay() -> None:
        level = "W"  # anything before the first entry is shown
        try:
            for line in server.stdout:
                log.write(line)
                log.flush()
                entry = LOG_ENTRY.match(line)
                level = entry.group(1) if entry else level
                if verbose or level != "I":
                    sys.stderr.write(line)
                    sys.stderr.flush()
        except (OSError, ValueError):  # the log closed under a model's stub that still held the pipe
            pass

    thread = threading.Thread(target=relay, name="tritonserver log", daemon=True)
    thread.start()
    return thread


def wait_ready(server: subprocess.Popen, url: str, timeout: float, stop: threading.Event) -> bool:
    """Poll Triton's readiness endpoint until it says ready, the server exits, a signal comes or time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None and not stop.is_set():
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except OSError:  # not listening yet, or 400 while models load
            pass
        stop.wait(0.2)
    return False


def stop_child(child: subprocess.Popen, grace: float) -> int:
    """SIGTERM, then SIGKILL after `grace` seconds; the exit status."""
    if child.poll() is None:
        child.terminate()
        try:
            return child.wait(grace)
        except subprocess.TimeoutExpired:
            child.kill()
    return child.wait()


def run_command(command: list[str], stop: threading.Event) -> int:
    """Run COMMAND to its end, or until a signal asks to stop; its exit status (128 + N for signal N)."""
    child = start_child(command)
    while child.poll() is None and not stop.wait(0.2):
        pass
    status = stop_child(child, 10)
    return status if status >= 0 else 128 - status


def serve(server: subprocess.Popen, args: argparse.Namespace, stop: threading.Event) -> int:
    started = time.monotonic()
    host = "127.0.0.1" if args.address in ("0.0.0.0", "") else args.address
    if not wait_ready(server, f"http://{host}:{args.http_port}", args.ready_timeout, stop):
        if stop.is_set():
            return EXIT_OK
        why = f"exited with status {server.returncode}" if server.poll() is not None else "did not become ready"
        print(f"error: tritonserver {why} (its log, {args.log_file}, says why)", file=sys.stderr)
        return EXIT_USAGE
    models = sorted(p.name for p in args.repository.iterdir() if (p / "config.pbtxt").is_file())
    print(f"ready in {time.monotonic() - started:.1f} s: {', '.join(models)} on HTTP {host}:{args.http_port} "
          f"and gRPC {host}:{args.grpc_port}", flush=True)
    if args.command:
        return run_command(args.command, stop)
    while not stop.wait(0.5):
        if server.poll() is not None:
            print(f"error: tritonserver exited with status {server.returncode} (its log: {args.log_file})",
                  file=sys.stderr)
            return EXIT_FAILED
    print("stopping", flush=True)
    return EXIT_OK


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else argv
    command: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1:]
    parser = argparse.ArgumentParser(prog="python -m runtimes.serve", description=__doc__, epilog=EXIT_STATUS_HELP,
                                     usage="%(prog)s REPOSITORY [options] [-- COMMAND ...]",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repository", type=Path, help="model repository written by python -m export.triton")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; "
                                                                "0.0.0.0 for every interface)")
    parser.add_argument("--http-port", type=int, default=8000)
    add_flag(parser, "--grpc-port", default=8001, help="gRPC port to listen on (default 8001)")
    parser.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics (0: none)")
    parser.add_argument("--exit-timeout", type=int, default=5,
                        help="seconds in-flight requests get when stopping (default: 5; Triton's own is 30)")
    parser.add_argument("--ready-timeout", type=float, default=120, help="seconds to wait for the models to load")
    parser.add_argument("--log-file", type=Path, help="tritonserver's whole log, appended to (default: "
                        "tritonserver.log beside REPOSITORY)")
    parser.add_argument("--verbose", action="store_true", help="show tritonserver's whole log here too (else its "
                        "warnings and errors)")
    args = parser.parse_args(argv)
    args.command = command
    if not args.repository.is_dir():
        parser.error(f"{args.repository}: no such folder")
    if args.log_file is None:
        args.log_file = args.repository.absolute().parent / "tritonserver.log"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        dist = triton_dist()
    except RuntimeUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    command = server_command(dist, backend_directory(dist), args)
    try:
        log = open(args.log_file, "a", encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write tritonserver's log ({exc}); choose another --log-file", file=sys.stderr)
        return EXIT_USAGE
    with log:
        log.write(f"---- python -m runtimes.serve, {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(command)}\n")
        print(f"tritonserver's log: {args.log_file}" + ("" if args.verbose else " (here: its warnings and errors)"),
              flush=True)
        server = start_child(command, env=server_env(dist), start_new_session=True, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, errors="replace")
        relay = relay_log(server, log, args.verbose)
        try:
            return serve(server, args, stop)
        finally:
            stop_child(server, args.exit_timeout + 15)
            relay.join(5)


if __name__ == "__main__":
    sys.exit(main())
