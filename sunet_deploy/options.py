"""Options declared once as dataclass fields, from which command-line flags come (torch-free).

The one dataclass-to-flags engine: runtime options (`runtimes.options`), export recipes
(`sunet_deploy.formats`) and train's configuration (`train.config`) declare their fields with
`option(...)`; `add_option_flags` turns the fields into argparse flags and `values_from_args`
reads them back, so a field is typed once with its default and its help. The rules, one for all:
a field `name` is the flag `--name` (or `flag`), its help ends "(default: x)"; a switch that is off
by default is `store_true` (with `negatable`, as for values a config file may have set: `--x/--no-x`),
one that is on by default or unset (None) is `--x/--no-x`; a dict is a repeatable KEY=VALUE flag
unless it has its own `parse`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from dataclasses import field
from pathlib import Path


def option(default, help: str, *, choices: tuple | None = None, parse=None, flag: str | None = None,
           metavar: str | None = None, nargs: int | str | None = None, shown: str | None = None):
    """A dataclass field that is also a command-line flag (`--field-name`, or `flag`).

    `parse` is the flag's argparse type (else one follows from the field's type); a bool field that
    defaults to True gets a flag that turns it off: `flag` names it (e.g. --skip-x), else `--x/--no-x`.
    `shown`: the default as --help says it, where the value is not the whole story."""
    mutable = isinstance(default, (dict, list))
    factory = {"default_factory": lambda: type(default)(default)} if mutable else {"default": default}
    return field(**factory, metadata={"help": help, "choices": choices, "parse": parse, "flag": flag,
                                      "metavar": metavar, "nargs": nargs, "shown": shown})


def key_value(text: str) -> tuple[str, str]:
    """'KEY=VALUE' -> (KEY, VALUE), an argparse type for repeatable dict options."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or f"--{f.name.replace('_', '-')}"


def option_fields(cls) -> list[dataclasses.Field]:
    """The fields of `cls` declared with `option()` (others, such as a nested recipe, are not flags)."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def check_choices(instance) -> None:
    """ValueError for a field whose value is not among its option's choices: the Python API refuses
    what the flag refuses."""
    for f in option_fields(type(instance)):
        choices, value = f.metadata["choices"], getattr(instance, f.name)
        if choices is not None and value is not None and value not in choices:
            raise ValueError(f"{flag_name(f)} must be one of {', '.join(map(str, choices))}, got {value!r}")


def add_option_flags(group, classes, seen: set[str] | None = None, *, absent_default: bool = True,
                     negatable: bool = False) -> None:  # fmt: skip
    """One flag per option field of `classes` (a field named in `seen` or shared by two classes is one flag).

    With `absent_default` a flag not given leaves no attribute (so `given_options` sees what was
    typed); otherwise it defaults to the field's default. With `negatable` every switch is
    `--x/--no-x` (the values may come from a file that the flags override)."""
    seen = set() if seen is None else seen
    for cls in classes:
        for f in option_fields(cls):
            if f.name in seen:
                continue
            seen.add(f.name)
            default = argparse.SUPPRESS if absent_default else _default(f)
            group.add_argument(flag_name(f), dest=f.name, default=default, **_flag_kwargs(f, negatable))


def _default(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


_TYPES = {"int": int, "float": float, "Path": Path}


def _flag_kwargs(f: dataclasses.Field, negatable: bool = False) -> dict:
    meta, default = f.metadata, _default(f)
    silent = "default" in meta["help"] or default is None or isinstance(default, (bool, dict))
    shown = f" (default: {meta['shown']})" if meta.get("shown") else "" if silent else f" (default: {_shown(default)})"
    kwargs = {"help": meta["help"] + shown}
    for key in ("choices", "metavar", "nargs"):
        if meta.get(key):
            kwargs[key] = meta[key]
    annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if isinstance(default, dict):
        return {**kwargs, "action": "append", "type": meta["parse"], "metavar": "KEY=VALUE"}
    if annotation in ("bool", "bool | None"):
        store_false = default is True and meta["flag"]
        off = default is False and not negatable
        return {**kwargs, "action": "store_false" if store_false else "store_true" if off else argparse.BooleanOptionalAction}
    kind = meta["parse"] or _TYPES.get(annotation.removesuffix(" | None"))
    return {**kwargs, "type": kind} if kind else kwargs


def _shown(default) -> str:
    if isinstance(default, list):
        return " ".join(map(str, default))
    return "x".join(map(str, default)) if isinstance(default, tuple) else str(default)


def values_from_args(cls, args: argparse.Namespace) -> dict:
    """The option fields of `cls` that `args` holds (a repeated KEY=VALUE flag as a dict)."""
    values = {}
    for f in option_fields(cls):
        if hasattr(args, f.name):
            value = getattr(args, f.name)
            values[f.name] = dict(value) if isinstance(value, list) and isinstance(_default(f), dict) else value
    return values


def from_args(cls, args: argparse.Namespace, **extra):
    """An instance of `cls` from parsed flags (flags of other classes are ignored)."""
    return cls(**values_from_args(cls, args), **extra)


def given_options(classes, args: argparse.Namespace) -> set[str]:
    """The option fields of `classes` given on the command line (flags added with absent_default)."""
    return {f.name for cls in classes for f in option_fields(cls) if hasattr(args, f.name)}


def changed(instance) -> dict:
    """The fields that differ from the defaults (for report rows and messages)."""
    defaults = type(instance)()
    return {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)
            if getattr(instance, f.name) != getattr(defaults, f.name)}


def digest(*parts) -> str:
    """A short stable hash of dataclasses and strings (a cache key of what made an artifact)."""
    def plain(part):
        if dataclasses.is_dataclass(part):
            fields = {f.name: plain(getattr(part, f.name)) for f in dataclasses.fields(part)}
            return {"type": type(part).__name__, **fields}
        return part

    text = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
