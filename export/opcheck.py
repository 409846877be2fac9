"""`python -m export.opcheck model.onnx`: can TensorRT's ONNX parser take this graph?

A static check, so a graph TensorRT cannot parse is caught on a machine without TensorRT. Every
node is compared with the operator table of onnx-tensorrt (docs/operators.md), kept as data in
export/data/tensorrt_onnx_ops.json together with its source: the operator must be supported, its
data type listed (the type of its first input, or of its output for nodes without inputs), the
attribute values allowed, build-time-constant inputs constant, and the opset in range.
Passing this check does not promise a build; failing it means the parser would refuse the graph.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

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


def check_graph(model: onnx.ModelProto, rules: dict | None = None) -> list[Issue]:
    """Every reason TensorRT's ONNX parser would refuse `model` (empty when none is known)."""
    rules = rules or load_rules()
    issues = _check_opset(model, rules)
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = _tensor_types(graph)
    ranks = _tensor_ranks(graph)
    constants = {init.name for init in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    io_names = {v.name for v in [*graph.input, *graph.output]}
    for index, node in enumerate(graph.node):
        name = node.name or f"#{index}"
        for problem in _node_problems(node, rules, types, ranks, constants, io_names):
            issues.append(Issue(name, node.op_type, problem))
    return issues


def _check_opset(model: onnx.ModelProto, rules: dict) -> list[Issue]:
    low, high = rules["opset_range"]
    issues = []
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and not low <= entry.version <= high:
            issues.append(Issue("(model)", "opset", f"opset {entry.version} is outside TensorRT's {low}..{high}"))
    return issues


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


def _node_problems(node, rules, types, ranks, constants, io_names) -> list[str]:
    if node.domain not in ("", "ai.onnx"):
        return [f"custom domain {node.domain!r} needs a TensorRT plugin; only standard ONNX operators are checked"]
    entry = rules["operators"].get(node.op_type)
    if entry is None or not entry["supported"]:
        return ["operator not supported by TensorRT's ONNX parser"]
    problems = _type_problems(node, entry["types"], rules["io_only_types"], types, io_names)
    problems += _attribute_problems(node, rules["attribute_rules"].get(node.op_type, {}))
    max_outputs = rules["max_outputs"].get(node.op_type)
    if max_outputs is not None and len([o for o in node.output if o]) > max_outputs:
        problems.append(f"only {max_outputs} output(s) supported, the node has {len(node.output)}")
    for position in rules["constant_inputs"].get(node.op_type, []):
        if position < len(node.input) and node.input[position] and node.input[position] not in constants:
            problems.append(f"input {position} ({node.input[position]!r}) must be a build-time constant")
    allowed_ranks = rules["spatial_rank"].get(node.op_type)
    rank = ranks.get(node.input[0]) if node.input else None
    if allowed_ranks and rank is not None and rank not in allowed_ranks:
        problems.append(f"input rank {rank} not supported (allowed: {allowed_ranks})")
    return problems


def _type_problems(node, allowed: list[str], io_only: list[str], types, io_names) -> list[str]:
    checked = [node.input[0]] if node.input and node.input[0] else list(node.output[:1])
    if node.op_type in ("Cast", "CastLike"):
        checked += list(node.output[:1])
    problems = []
    for tensor in checked:
        code = types.get(tensor, onnx.TensorProto.UNDEFINED)
        if code == onnx.TensorProto.UNDEFINED:
            continue  # type unknown after inference: nothing to say
        name = TYPE_NAMES.get(code, onnx.TensorProto.DataType.Name(code))
        if name in io_only and tensor not in io_names:
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


def format_report(issues: list[Issue], node_count: int) -> str:
    if not issues:
        return f"TensorRT operator check: all {node_count} nodes supported"
    lines = [f"TensorRT operator check: {len(issues)} problem(s) in {node_count} nodes"]
    return "\n".join(lines + [f"  {issue}" for issue in issues])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.opcheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="ONNX model to check")
    args = parser.parse_args(argv)
    try:
        model = onnx.load(str(args.model))
    except (OSError, DecodeError) as exc:
        print(f"error: {args.model}: not a readable ONNX model ({exc})", file=sys.stderr)
        return 2
    issues = check_graph(model)
    print(format_report(issues, len(model.graph.node)))
    return 1 if issues else 0


if __name__ == "__main__":
    sys.exit(main())
