"""`python -m export.opcheck model.onnx [--tensorrt 10.8]`: can TensorRT's ONNX parser take this graph?

A static check, so a graph TensorRT cannot parse is caught on a machine without TensorRT. Every
node is compared with the operator table of onnx-tensorrt (docs/operators.md) and the rules read
from its importers, kept as data in export/data/tensorrt_onnx_ops.json together with their sources:
the operator must be supported by the target TensorRT version (operators added later carry the
version that added them), its data type listed (the type of its first input, or of its output for
nodes without inputs; DOUBLE is cast down to FLOAT by the parser), the attribute values allowed,
inputs read at import time constant (or resolvable to a constant where the target allows it), and
the opset in the target's range. The default target is the oldest supported TensorRT (10.0).
Passing this check does not promise a build; failing it means the parser would refuse the graph.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from sunet_deploy.cli import EXIT_STATUS_HELP

RULES_PATH = Path(__file__).parent / "data" / "tensorrt_onnx_ops.json"
TYPE_NAMES = {
    onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.FLOAT16: "FP16", onnx.TensorProto.BFLOAT16: "BF16",
    onnx.TensorProto.DOUBLE: "DOUBLE", onnx.TensorProto.INT8: "INT8", onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.INT32: "INT32", onnx.TensorProto.INT64: "INT64", onnx.TensorProto.BOOL: "BOOL",
}


@dataclass(frozen=True)
class Issue:
    node: str
    op_type: str
    problem: str

    def __str__(self) -> str:
        return f"{self.op_type} node {self.node!r}: {self.problem}"


@cache
def load_rules(path: Path = RULES_PATH) -> dict:
    """The operator table; see its "source" entry for where it was transcribed from."""
    return json.loads(path.read_text())


VERSION = re.compile(r"(\d+(?:\.\d+){0,3})(?:\.?(?:post|rc|a|b|dev)\d*)*(?:\+[\w.]+)?")
"""A release of up to four numbers, then what pre-release and post-release wheels append (PEP 440)."""


def parse_version(text: str) -> tuple[int, int, int, int]:
    """'10.8' / '10.8.0.43' / '11' -> (10, 8, 0, 0) / (10, 8, 0, 43) / (11, 0, 0, 0); a wheel's suffix is
    dropped ('10.13.0.post1', '11.0.0rc1', '10.9.0+cuda12' -> their release); ValueError otherwise."""
    match = VERSION.fullmatch(str(text).strip())
    if match is None:
        raise ValueError(f"not a TensorRT version: {text!r} (expected e.g. 10.8)")
    parts = match.group(1).split(".")
    return tuple(int(p) for p in parts) + (0,) * (4 - len(parts))


def check_graph(model: onnx.ModelProto, rules: dict | None = None, target: str | None = None) -> list[Issue]:
    """Every reason TensorRT `target`'s ONNX parser would refuse `model` (empty when none is known).

    `target` is a TensorRT version such as "10.8"; None means the table's default (the oldest supported).
    """
    rules = rules or load_rules()
    version = parse_version(target or rules["default_target"])
    issues = _check_opset(model, rules, version)
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    context = _GraphFacts(graph, rules, version)
    for index, node in enumerate(graph.node):
        name = node.name or f"#{index}"
        for problem in _node_problems(node, context):
            issues.append(Issue(name, node.op_type, problem))
    return issues


def _check_opset(model: onnx.ModelProto, rules: dict, version: tuple) -> list[Issue]:
    low = rules["opset_range"][0]
    known = sorted((parse_version(v), high) for v, high in rules["opset_max"].items() if not v.startswith("_"))
    high = max((h for v, h in known if v <= version), default=known[0][1])
    issues = []
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and not low <= entry.version <= high:
            issues.append(Issue("(model)", "opset", f"opset {entry.version} is outside the {low}..{high} of "
                                                    f"TensorRT {_fmt_version(version)}"))
    return issues


def _fmt_version(version: tuple) -> str:
    parts = list(version)
    while len(parts) > 2 and parts[-1] == 0:
        parts.pop()
    return ".".join(map(str, parts))


class _GraphFacts:
    """What the node checks need to know about the whole graph."""

    def __init__(self, graph: onnx.GraphProto, rules: dict, version: tuple) -> None:
        self.rules, self.version = rules, version
        self.types = _tensor_types(graph)
        self.ranks = _tensor_ranks(graph)
        self.io_names = {v.name for v in [*graph.input, *graph.output]}
        self.values = {init.name: init for init in graph.initializer}
        self.values |= {node.output[0]: attr.t for node in graph.node if node.op_type == "Constant"
                        for attr in node.attribute if attr.name == "value"}  # fmt: skip
        self.weights = set(self.values) | {out for node in graph.node if node.op_type == "Constant" for out in node.output}
        self.resolvable = _resolvable_tensors(graph, self.weights)

    def allows(self, since: str | None) -> bool:
        return since is None or parse_version(since) <= self.version


def _tensor_types(graph: onnx.GraphProto) -> dict[str, int]:
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
    types.update({init.name: init.data_type for init in graph.initializer})
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
    return types


def _tensor_ranks(graph: onnx.GraphProto) -> dict[str, int]:
    values = [*graph.input, *graph.output, *graph.value_info]
    return {v.name: len(v.type.tensor_type.shape.dim) for v in values if v.type.tensor_type.HasField("shape")}


def _node_problems(node, facts: _GraphFacts) -> list[str]:
    rules = facts.rules
    if node.domain not in ("", "ai.onnx"):
        return [f"custom domain {node.domain!r} needs a TensorRT plugin; only standard ONNX operators are checked"]
    entry = rules["operators"].get(node.op_type)
    if entry is None or not entry["supported"]:
        return ["operator not supported by TensorRT's ONNX parser"]
    if not facts.allows(entry.get("since")):
        return [f"operator supported from TensorRT {entry['since']} on, the target is TensorRT "
                f"{_fmt_version(facts.version)} (name a newer one with --tensorrt)"]
    problems = _type_problems(node, entry["types"], facts) if entry["types"] is not None else []
    problems += _attribute_problems(node, rules["attribute_rules"].get(node.op_type, {}))
    max_outputs = rules["max_outputs"].get(node.op_type)
    if max_outputs is not None and len([o for o in node.output if o]) > max_outputs:
        problems.append(f"only {max_outputs} output(s) supported, the node has {len(node.output)}")
    problems += _constant_input_problems(node, rules["constant_inputs"].get(node.op_type), facts)
    if node.op_type in rules["quantization"]["operators"]:
        problems += _quantization_problems(node, rules["quantization"], facts)
    allowed_ranks = rules["spatial_rank"].get(node.op_type)
    rank = facts.ranks.get(node.input[0]) if node.input else None
    if allowed_ranks and rank is not None and rank not in allowed_ranks:
        problems.append(f"input rank {rank} not supported (allowed: {allowed_ranks})")
    return problems


def _constant_input_problems(node, rule: dict | None, facts: _GraphFacts) -> list[str]:
    if rule is None:
        return []
    resolvable = rule["must_be"] == "resolvable" or facts.allows(rule.get("resolvable_since", "999"))
    known = facts.resolvable if resolvable else facts.weights
    wanted = "resolvable to a constant at build time" if resolvable else "an initializer or a Constant"
    return [f"input {position} ({node.input[position]!r}) must be {wanted}"
            for position in rule["inputs"]
            if position < len(node.input) and node.input[position] and node.input[position] not in known]


def _quantization_problems(node, rule: dict, facts: _GraphFacts) -> list[str]:
    """TensorRT quantizes symmetrically to signed types: positive scales, zero points that are zero."""
    problems = []
    scale = _input_value(node, rule["scale_input"], facts)
    if scale is not None and not (scale > 0).all():
        problems.append("scale coefficients must all be positive")
    position = rule["zero_point_input"]
    if position < len(node.input) and node.input[position]:
        type_name = TYPE_NAMES.get(facts.types.get(node.input[position], onnx.TensorProto.UNDEFINED), "?")
        zero_point = _input_value(node, position, facts)
        if type_name in rule["forbidden_zero_point_types"]:
            problems.append(f"{type_name} zero point: TensorRT quantizes to signed INT8 with zero point 0 "
                            "(export with --int8-activations int8)")
        elif zero_point is not None and zero_point.any():
            problems.append("the zero point must be all zeros (TensorRT quantizes symmetrically)")
    return problems


def _input_value(node, position: int, facts: _GraphFacts) -> np.ndarray | None:
    """The value of a constant input (an initializer or a Constant), else None."""
    if position >= len(node.input) or node.input[position] not in facts.values:
        return None
    return onnx.numpy_helper.to_array(facts.values[node.input[position]])


def _type_problems(node, allowed: list[str], facts: _GraphFacts) -> list[str]:
    checked = [node.input[0]] if node.input and node.input[0] else list(node.output[:1])
    if node.op_type in ("Cast", "CastLike"):
        checked += list(node.output[:1])
    io_only, cast_down = facts.rules["io_only_types"], facts.rules["types_cast_down"]
    problems = []
    for tensor in checked:
        code = facts.types.get(tensor, onnx.TensorProto.UNDEFINED)
        if code == onnx.TensorProto.UNDEFINED:
            continue  # type unknown after inference: nothing to say
        name = TYPE_NAMES.get(code, onnx.TensorProto.DataType.Name(code))
        name = cast_down.get(name, name)  # the parser imports DOUBLE as FLOAT
        if name in io_only and tensor not in facts.io_names:
            problems.append(f"{name} tensor {tensor!r} is allowed only as a network input or output")
        elif name not in allowed and name not in io_only:
            problems.append(f"type {name} of {tensor!r} not supported (supported: {', '.join(allowed)})")
    return problems


def _attribute_problems(node, attribute_rules: dict) -> list[str]:
    values = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    problems = []
    for attr, rule in attribute_rules.items():
        value = values.get(attr)
        if isinstance(value, bytes):
            value = value.decode()
        if rule == "forbidden":
            if attr in values:
                problems.append(f"attribute {attr} is not supported")
        elif rule == "all_ones":
            if value is not None and any(v != 1 for v in value):
                problems.append(f"attribute {attr}={list(value)} must be all ones")
        elif (rule["default"] if value is None else value) not in rule["allowed"]:
            problems.append(f"attribute {attr}={value!r} not supported (allowed: {rule['allowed']})")
    return problems


FOLDABLE = {"Identity", "Cast", "Gather", "Slice", "Concat", "Unsqueeze", "Squeeze", "Reshape", "Add", "Sub", "Mul",
            "Div", "Neg", "Abs", "Range", "ConstantOfShape", "Expand", "Equal", "Where", "Max", "Min"}


def _resolvable_tensors(graph: onnx.GraphProto, weights: set[str]) -> set[str]:
    """Tensors whose values are known at build time: weights, the shapes (or parts of shapes) of tensors
    with static dimensions, and anything computed from those by FOLDABLE nodes. Shape values are tracked
    dimension by dimension, so Gather(Shape(x), 1) is resolvable when dimension 1 of x is static even if
    the batch dimension is not."""
    dims = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
            for v in [*graph.input, *graph.output, *graph.value_info] if v.type.tensor_type.HasField("shape")}
    known: dict[str, object] = {name: True for name in weights}  # True: known, list: a shape's known dims
    for node in graph.node:
        if node.op_type == "Shape" and node.input[0] in dims:
            shape = dims[node.input[0]]
            attrs = {a.name: a.i for a in node.attribute}
            known[node.output[0]] = shape[slice(attrs.get("start", 0), attrs.get("end", len(shape)))]
        elif node.op_type == "Gather" and isinstance(known.get(node.input[0]), list) and node.input[1] in known:
            known[node.output[0]] = _gather_known(known[node.input[0]], node.input[1], graph)
        elif node.op_type in FOLDABLE and node.input and all(
                not name or _fully_known(known.get(name)) for name in node.input):
            known.update({out: True for out in node.output})
    return {name for name, value in known.items() if _fully_known(value)}


def _fully_known(value) -> bool:
    return value is True or (isinstance(value, list) and None not in value)


def _gather_known(shape: list, indices_name: str, graph: onnx.GraphProto):
    """Gather of shape dimensions: known when the indices are an initializer picking static dimensions."""
    init = next((t for t in graph.initializer if t.name == indices_name), None)
    if init is None:
        return None
    indices = np.atleast_1d(onnx.numpy_helper.to_array(init)).tolist()
    try:
        return [shape[i] for i in indices]
    except IndexError:
        return None


def format_report(issues: list[Issue], node_count: int) -> str:
    if not issues:
        return f"TensorRT operator check: all {node_count} nodes supported"
    lines = [f"TensorRT operator check: {len(issues)} problem(s) in {node_count} nodes"]
    return "\n".join(lines + [f"  {issue}" for issue in issues])


def _version_arg(text: str) -> str:
    try:
        parse_version(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.opcheck", description=__doc__, epilog=EXIT_STATUS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="ONNX model to check")
    parser.add_argument("--tensorrt", metavar="VERSION", type=_version_arg,
                        help=f"TensorRT version to check for, e.g. 10.8 (default {load_rules()['default_target']}, "
                             "the oldest supported: what passes parses on every supported version)")
    args = parser.parse_args(argv)
    try:
        model = onnx.load(str(args.model))
    except (OSError, DecodeError) as exc:
        print(f"error: {args.model}: not a readable ONNX model ({exc})", file=sys.stderr)
        return 2
    issues = check_graph(model, target=args.tensorrt)
    print(format_report(issues, len(model.graph.node)))
    return 1 if issues else 0


if __name__ == "__main__":
    sys.exit(main())
