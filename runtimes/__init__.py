"""Runtime adapters behind one contract (`runtimes.base.Runtime`).

`open_runtime(path)` picks the adapter from the format table (sunet_deploy.formats): by the
artifact's suffix, or by the scheme of a served model's URI (`triton://HOST:PORT/MODEL` over HTTP,
`triton+grpc://HOST:PORT/MODEL` over gRPC), resolved once (`format_for`) into the row whose
adapter and options classes open it; its options are that adapter's dataclass in `runtimes.options`
(or the same fields as keyword arguments, plus the common `threads` and `device` every runtime takes
or refuses in one line). Adapters are imported when used, so serving an ONNX model or an engine
never imports PyTorch.
"""

from __future__ import annotations

from pathlib import Path

from sunet_deploy import formats
from sunet_deploy.artifact import ArtifactError, ArtifactInfo

from .base import Runtime, RuntimeUnavailable, TensorInfo, Timing
from .options import RuntimeOptions


def uri_scheme(path: str | Path) -> str | None:
    """"triton" for "triton://...": the scheme of a served model's URI, None for a file path."""
    scheme, sep, _ = str(path).partition("://")
    return scheme if sep else None


def format_for(path: str | Path) -> formats.Format:
    """The row of the format table that `path` (a file or a served model's URI) belongs to."""
    scheme = uri_scheme(path)
    if scheme is not None:
        found = formats.by_scheme(scheme)
        if found is None:
            known = ", ".join(s for f in formats.formats() for s in f.schemes)
            raise ArtifactError(path, f"unknown URI scheme {scheme!r}; known: {known}")
        return found
    suffix = Path(path).suffix.lower()
    found = formats.by_suffix(suffix)
    if found is None:
        known = ", ".join(f"{s} ({f.runtime})" for f in formats.formats() for s in f.suffixes)
        raise ArtifactError(path, f"unknown model file type {suffix or '(no suffix)'!r}; known: {known}")
    return found


def runtime_for(path: str | Path) -> str:
    """The name of the adapter that opens `path`, by its file type or its URI scheme."""
    return format_for(path).runtime


def adapter_class(runtime: str) -> type[Runtime]:
    """The adapter named `runtime`, imported now (ImportError when its library is missing)."""
    return formats.by_runtime(runtime).adapter_class()


def _adapter(fmt: formats.Format) -> type[Runtime]:
    """The row's adapter; RuntimeUnavailable (saying what to install) when its library is missing."""
    try:
        return fmt.adapter_class()
    except ImportError as exc:
        raise RuntimeUnavailable(f"the {fmt.runtime} runtime needs {exc.name or 'a missing module'}: "
                                 f"{fmt.install}") from exc


def availability(options: RuntimeOptions) -> str | None:
    """None when the adapter of `options` can run them here, else the reason it cannot."""
    try:
        return _adapter(formats.by_runtime(options.runtime)).availability(options)
    except RuntimeUnavailable as exc:
        return str(exc)


def runtime_row(path: str | Path, fmt: formats.Format, runtime: str) -> formats.Format:
    """The row whose adapter opens `path` (a file of format `fmt`) as `runtime`: the file's own, or one that
    reads its format too (OpenVINO: .onnx); ArtifactError, one line naming the file, where none does."""
    row = formats.opener(fmt, runtime)
    if row is None:
        raise ArtifactError(path, f"is a {fmt.runtime} artifact, not one the {runtime} runtime opens")
    return row


def options_for(path: str | Path | formats.Format, **options) -> RuntimeOptions:
    """The options of the adapter that opens `path` (or of the Format given), from keyword arguments: its
    own, and the common ones every runtime is asked in the same words (threads, device), refused in one
    line naming the runtime where it cannot honour them (runtimes.options.RuntimeOptions.create)."""
    fmt = path if isinstance(path, formats.Format) else format_for(path)
    return fmt.options_class().create(**options)


def open_runtime(path: str | Path, options: RuntimeOptions | None = None, *, fmt: formats.Format | None = None,
                 **kwargs) -> Runtime:
    """Open a model artifact with the adapter for its type, configured by `options` or keyword options.

    `fmt` is the row of the format table `path` was already resolved to (`format_for`), so that a caller
    resolves a path once. The options choose the runtime: by default the format's own; another runtime
    that reads the format too (OpenVINO opens .onnx files) when its options are given. The adapter reads
    and checks the artifact now (ArtifactError, one line naming the file: missing, foreign, truncated, of
    another architecture); `activate()` (or `with`) loads it.
    """
    fmt = fmt or format_for(path)
    if options is not None and kwargs:
        raise TypeError("pass runtime options as an options object or as keyword arguments, not both")
    options = options if options is not None else options_for(fmt, **kwargs)
    return _adapter(runtime_row(path, fmt, options.runtime))(path, options)


__all__ = [
    "ArtifactError",
    "ArtifactInfo",
    "Runtime",
    "RuntimeOptions",
    "RuntimeUnavailable",
    "TensorInfo",
    "Timing",
    "adapter_class",
    "availability",
    "format_for",
    "open_runtime",
    "options_for",
    "runtime_row",
    "runtime_for",
]
