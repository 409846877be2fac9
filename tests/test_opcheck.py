"""The TensorRT operator check: the table is sane, and each kind of unsupported node is caught."""

import onnx
import pytest
from onnx import TensorProto, helper

from export.opcheck import check_graph, load_rules, main

FLOAT = TensorProto.FLOAT


def graph_model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def value(name, dtype=FLOAT, shape=(1, 3, 8, 8)):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def relu_model(dtype=FLOAT, opset=17):
    return graph_model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [value("x", dtype)],
                       [value("y", dtype)], opset=opset)


def test_rules_name_their_source_and_cover_what_sunet_uses():
    rules = load_rules()
    assert "onnx-tensorrt" in rules["source"]["repository"]
    assert rules["opset_range"][0] <= 17 <= rules["opset_range"][1]
    for op in ("Conv", "ConvTranspose", "BatchNormalization", "Relu", "Resize", "ArgMax", "Slice", "Concat"):
        assert rules["operators"][op]["supported"] and "FP16" in rules["operators"][op]["types"], op
    for name, entry in rules["operators"].items():
        assert not entry["supported"] or entry["types"], f"{name} is supported but lists no types"


def test_a_supported_graph_passes():
    assert check_graph(relu_model()) == []


def test_unsupported_operator_is_caught():
    model = graph_model([helper.make_node("Unique", ["x"], ["y"], name="uniq")],
                        [value("x", shape=(6,))], [value("y", shape=("n",))])
    issues = check_graph(model)
    assert [(i.node, i.op_type) for i in issues] == [("uniq", "Unique")]
    assert "not supported by TensorRT" in str(issues[0])


def test_custom_domain_needs_a_plugin():
    node = helper.make_node("FancyOp", ["x"], ["y"], name="fancy", domain="com.example")
    model = graph_model([node], [value("x")], [value("y")])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    assert "needs a TensorRT plugin" in str(check_graph(model)[0])


def test_unsupported_type_is_caught():
    issues = check_graph(relu_model(TensorProto.DOUBLE))
    assert len(issues) == 1 and "type DOUBLE" in issues[0].problem


def test_uint8_only_at_the_network_boundary():
    nodes = [helper.make_node("Cast", ["x"], ["u"], to=TensorProto.UINT8, name="to_u8"),
             helper.make_node("Cast", ["u"], ["y"], to=FLOAT, name="to_f32")]
    issues = check_graph(graph_model(nodes, [value("x")], [value("y")]))
    assert {i.node for i in issues} == {"to_u8", "to_f32"}
    assert all("only as a network input or output" in i.problem for i in issues)


@pytest.mark.parametrize("attributes, message", [
    ({"mode": "cubic"}, "mode='cubic' not supported"),
    ({"mode": "linear", "antialias": 1}, "antialias=1 not supported"),
    ({"mode": "linear"}, None),
])
def test_resize_attributes(attributes, message):
    sizes = helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 3, 16, 16])
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="resize", **attributes)
    issues = check_graph(graph_model([node], [value("x")], [value("y", shape=(1, 3, 16, 16))], [sizes]))
    problems = [i.problem for i in issues]
    assert any(message in p for p in problems) if message else problems == []


def test_pool_dilations_must_be_ones():
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2], name="pool")
    issues = check_graph(graph_model([node], [value("x")], [value("y", shape=(1, 3, 6, 6))], opset=19))
    assert any("dilations=[2, 2] must be all ones" in i.problem for i in issues)


def test_axes_must_be_build_time_constants():
    node = helper.make_node("Unsqueeze", ["x", "axes"], ["y"], name="unsq")
    inputs = [value("x"), value("axes", TensorProto.INT64, (1,))]
    model = graph_model([node], inputs, [value("y", shape=(1, 1, 3, 8, 8))])
    assert "must be a build-time constant" in str(check_graph(model)[0])


def test_opset_outside_tensorrt_range():
    low, high = load_rules()["opset_range"]
    assert "outside TensorRT's" in str(check_graph(relu_model(opset=high + 1))[0])
    assert check_graph(relu_model(opset=max(low, 13))) == []


def test_cli_exit_codes(tmp_path, capsys):
    good, bad, junk = tmp_path / "good.onnx", tmp_path / "bad.onnx", tmp_path / "junk.onnx"
    onnx.save(relu_model(), good)
    onnx.save(relu_model(TensorProto.DOUBLE), bad)
    junk.write_text("not a model")
    assert main([str(good)]) == 0
    assert "all 1 nodes supported" in capsys.readouterr().out
    assert main([str(bad)]) == 1
    assert "1 problem(s)" in capsys.readouterr().out
    assert main([str(junk)]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err
