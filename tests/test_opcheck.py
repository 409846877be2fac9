"""The TensorRT operator check: the table is sane, and each kind of unsupported node is caught."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from export.opcheck import check_graph, load_rules, main
from factory import graph_model, relu_model, value

FLOAT = TensorProto.FLOAT


def test_rules_name_their_source_and_cover_what_sunet_uses():
    rules = load_rules()
    assert "onnx-tensorrt" in rules["source"]["repository"]
    assert rules["opset_range"][0] <= 17 <= rules["opset_range"][1]
    for op in ("Conv", "ConvTranspose", "BatchNormalization", "Relu", "Resize", "ArgMax", "Slice", "Concat"):
        assert rules["operators"][op]["supported"] and "FP16" in rules["operators"][op]["types"], op
        assert "since" not in rules["operators"][op], op
    for name, entry in rules["operators"].items():
        assert not entry["supported"] or entry["types"] or entry.get("since", "").startswith("11"), name


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
    issues = check_graph(relu_model(TensorProto.INT8))
    assert len(issues) == 1 and "type INT8" in issues[0].problem


def test_double_is_cast_down_not_refused():
    """onnx-tensorrt's convertDtype imports DOUBLE as FLOAT (clamping to +-FLT_MAX)."""
    assert check_graph(relu_model(TensorProto.DOUBLE)) == []


def test_uint8_only_at_the_network_boundary():
    nodes = [helper.make_node("Cast", ["x"], ["u"], to=TensorProto.UINT8, name="to_u8"),
             helper.make_node("Cast", ["u"], ["y"], to=FLOAT, name="to_f32")]
    issues = check_graph(graph_model(nodes, [value("x")], [value("y")]))
    assert {i.node for i in issues} == {"to_u8", "to_f32"}
    assert all("only as a network input or output" in i.problem for i in issues)


@pytest.mark.parametrize("attributes, message", [
    ({"mode": "cubic"}, None),  # the importer maps it to InterpolationMode::kCUBIC
    ({"mode": "linear", "antialias": 1}, "antialias=1 not supported"),
    ({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}, "tf_crop_and_resize"),
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


def unsqueeze_with_axes(axes_nodes, initializers=(), op="Unsqueeze", input_shape=(1, 3, 8, 8)):
    node = helper.make_node(op, ["x", "axes"], ["y"], name="node")
    out_shape = (1, 1, 3, 8, 8) if op == "Unsqueeze" else (3, 8, 8)
    return graph_model([*axes_nodes, node], [value("x", shape=input_shape)], [value("y", shape=out_shape)],
                       initializers)


def int64(name, values):
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def test_axes_from_a_graph_input_are_refused():
    node = helper.make_node("Unsqueeze", ["x", "axes"], ["y"], name="unsq")
    inputs = [value("x"), value("axes", TensorProto.INT64, (1,))]
    model = graph_model([node], inputs, [value("y", shape=(1, 1, 3, 8, 8))])
    for target in ("10.0", "10.15"):
        assert "must be" in str(check_graph(model, target=target)[0])


def test_axes_from_initializers_and_constants_pass_everywhere():
    assert check_graph(unsqueeze_with_axes([], [int64("axes", [1])])) == []
    constant = helper.make_node("Constant", [], ["axes"], value=int64("v", [1]))
    assert check_graph(unsqueeze_with_axes([constant])) == []


def test_axes_computed_from_static_dimensions_are_resolvable_from_tensorrt_10_15():
    """Gather(Shape(x), [0]) - 1 on a static batch of 1 folds to a constant: 10.15's rule is 'resolvable to a
    constant'; the importers of older versions want weights."""
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "first"], ["batch"], axis=0),
             helper.make_node("Sub", ["batch", "one"], ["axes"])]
    model = unsqueeze_with_axes(nodes, [int64("first", [0]), int64("one", [1])], op="Squeeze")
    assert check_graph(model, target="10.15") == [] and check_graph(model, target="11.0") == []
    issues = check_graph(model)
    assert len(issues) == 1 and "must be an initializer or a Constant" in issues[0].problem
    dynamic = unsqueeze_with_axes(nodes, [int64("first", [0]), int64("one", [1])], op="Squeeze",
                                  input_shape=("n", 3, 8, 8))
    assert "resolvable to a constant" in check_graph(dynamic, target="10.15")[0].problem


def test_reduce_axes_must_stay_weights_whatever_the_target():
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "last"], ["axes"], axis=0)]
    node = helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="sum")
    model = graph_model([*nodes, node], [value("x")], [value("y", shape=(1, 3, 8, 1))], [int64("last", [3])])
    assert "initializer or a Constant" in check_graph(model, target="11.0")[0].problem


@pytest.mark.parametrize("op, since", [("RMSNormalization", "10.15"), ("Attention", "10.14"), ("DeformConv", "10.1")])
def test_operators_added_in_a_later_tensorrt_need_that_target(op, since):
    rules = load_rules()
    assert rules["operators"][op]["since"] == since
    node = helper.make_node(op, ["x", "scale"], ["y"], name="new")
    scale = helper.make_tensor("scale", FLOAT, [8], [1.0] * 8)
    model = graph_model([node], [value("x")], [value("y")], [scale], opset=23)
    assert any(f"from TensorRT {since} on" in i.problem for i in check_graph(model, target="10.0"))
    assert not any("from TensorRT" in i.problem for i in check_graph(model, target=since))


def test_opset_range_follows_the_target():
    low, high = load_rules()["opset_range"]
    assert "outside the 9..20 of TensorRT 10.0" in str(check_graph(relu_model(opset=21))[0])
    assert check_graph(relu_model(opset=21), target="10.15") == []
    assert "outside" in str(check_graph(relu_model(opset=high + 1), target="10.15")[0])
    assert check_graph(relu_model(opset=max(low, 13))) == []


def test_rules_keep_their_sources():
    rules = load_rules()
    assert any("onnxOpImporters.cpp" in s for s in rules["source"]["rules_read_from"])
    assert rules["default_target"] == "10.0" and rules["types_cast_down"]["DOUBLE"] == "FP32"
    for op, entry in rules["operators"].items():
        assert "since" not in entry or entry["since"].count(".") == 1, op


def test_cli_exit_codes(tmp_path, capsys):
    good, bad, junk = tmp_path / "good.onnx", tmp_path / "bad.onnx", tmp_path / "junk.onnx"
    onnx.save(relu_model(), good)
    onnx.save(relu_model(TensorProto.INT8), bad)
    junk.write_text("not a model")
    assert main([str(good)]) == 0
    assert "all 1 nodes supported" in capsys.readouterr().out
    assert main([str(bad)]) == 1
    assert "1 problem(s)" in capsys.readouterr().out
    assert main([str(junk)]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err
    newer = tmp_path / "opset21.onnx"
    onnx.save(relu_model(opset=21), newer)
    assert main([str(newer)]) == 1 and main([str(newer), "--tensorrt", "10.15"]) == 0
    with pytest.raises(SystemExit) as exc:
        main([str(good), "--tensorrt", "ten"])
    assert exc.value.code == 2


def qdq_model(zero_point: np.ndarray, scale: float = 0.1) -> onnx.ModelProto:
    """x -> QuantizeLinear -> DequantizeLinear -> y with constant scale and zero point."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 4, 4])
    weights = [onnx.numpy_helper.from_array(np.array(scale, np.float32), "s"),
               onnx.numpy_helper.from_array(zero_point, "z")]  # fmt: skip
    nodes = [onnx.helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             onnx.helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]  # fmt: skip
    graph = onnx.helper.make_graph(nodes, "qdq", [x], [y], weights)
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


@pytest.mark.parametrize("zero_point, scale, problem", [
    (np.array(0, np.int8), 0.1, None),
    (np.array(128, np.uint8), 0.1, "UINT8 zero point: TensorRT quantizes to signed INT8"),
    (np.array(3, np.int8), 0.1, "the zero point must be all zeros"),
    (np.array(0, np.int8), -1.0, "scale coefficients must all be positive"),
])  # fmt: skip
def test_quantize_dequantize_follow_tensorrts_rules(zero_point, scale, problem):
    issues = [str(i) for i in check_graph(qdq_model(zero_point, scale))]
    assert issues == [] if problem is None else any(problem in i for i in issues)
