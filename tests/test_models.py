import pytest
import torch
from torch import nn

from sunet_deploy.models import MODEL_REGISTRY, ModelSpec, build_model, count_parameters
from sunet_deploy.models.sunet import DecoderLevel, EncoderLevel

# The original implementation's counts (docs/model-and-facts.md section 1): 1000-way FC / 21-class 1x1 head.
PARAMS = {
    "sunet64": (6_910_248, 5_906_773),
    "sunet128": (24_704_360, 22_698_389),
    "sunet7_128": (39_113_832, 36_857_237),
}


@pytest.mark.parametrize("arch", PARAMS)
def test_parameter_counts_match_original(arch):
    classifier = build_model(ModelSpec(arch, task="classification", num_classes=1000))
    segmenter = build_model(ModelSpec(arch, num_classes=21, output_stride=16))
    assert (count_parameters(classifier), count_parameters(segmenter)) == PARAMS[arch]


def module_convs(module: nn.Module) -> list[tuple[int, int]]:
    """(dilation, stride) of each 3x3 conv of a u-net module, in execution order."""
    levels = list(module.encoders) + list(reversed(module.decoders))
    convs = [m for level in levels for m in level.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    return [(c.dilation[0], c.stride[0]) for c in convs if c.kernel_size == (3, 3)]


STRIDED_L2 = [(1, 2), (1, 1), (1, 2), (1, 1), (1, 2), (1, 1), (1, 2), (1, 1)]
STRIDED_L1 = [(1, 2), (1, 1), (1, 2), (1, 1)]
# docs/model-and-facts.md section 1: "Block 3 at OS8 runs 2,4 | 4,8 | 8,4 | 4,2. Block 4 runs 2,4 | 4,2 at OS16
# and 4,8 | 8,4 at OS8"; every dilated conv has stride 1.
EXPECTED = {
    32: (STRIDED_L2, STRIDED_L1),
    16: (STRIDED_L2, [(2, 1), (4, 1), (4, 1), (2, 1)]),
    8: ([(d, 1) for d in (2, 4, 4, 8, 8, 4, 4, 2)], [(4, 1), (8, 1), (8, 1), (4, 1)]),
}


@pytest.mark.parametrize("os_", [8, 16, 32])
def test_dilations_and_strides_of_blocks_3_and_4(os_):
    model = build_model(ModelSpec("sunet64", output_stride=os_))
    block3, block4 = model.backbone.blocks[2], model.backbone.blocks[3]
    assert all(module_convs(m) == EXPECTED[os_][0] for m in block3)
    assert all(module_convs(m) == EXPECTED[os_][1] for m in block4)
    for m in model.modules():  # padding = dilation for every 3x3 conv (transposed: 2r for rate r)
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
            assert m.padding[0] == m.dilation[0]


@pytest.mark.parametrize("os_", [8, 16, 32])
def test_feature_map_reaching_head_has_output_stride(os_):
    model = build_model(ModelSpec("sunet_tiny", output_stride=os_)).eval()
    with torch.no_grad():
        features = model.backbone(torch.randn(1, 3, 256, 320))
    assert features.shape[-2:] == (256 // os_, 320 // os_)


SIZES = [(224, 224), (500, 375), (513, 513), (97, 131)]


@pytest.mark.parametrize("os_", [8, 16, 32])
@pytest.mark.parametrize("size", SIZES)
def test_logits_have_input_size(os_, size):
    model = build_model(ModelSpec("sunet_tiny", num_classes=7, output_stride=os_)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 7, *size)


@pytest.mark.parametrize("os_", [8, 32])
def test_full_sunet64_odd_input(os_):
    model = build_model(ModelSpec("sunet64", num_classes=21, output_stride=os_, head="degrid")).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 97, 131))
    assert out.shape == (1, 21, 97, 131)
    assert torch.isfinite(out).all()


def test_degridding_head_layout():
    model = build_model(ModelSpec("sunet_tiny", num_classes=4, head="degrid"))
    convs = [m for m in model.head if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size[0], c.dilation[0], c.out_channels) for c in convs] == [(3, 2, 512), (3, 1, 512), (1, 1, 4)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.head) == 2


def test_classifier_output():
    model = build_model(ModelSpec("sunet_tiny", task="classification", num_classes=10)).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 3, 224, 224)).shape == (3, 10)


def test_parameter_names_equal_at_every_output_stride():
    names = {os_: set(build_model(ModelSpec("sunet_tiny", output_stride=os_)).state_dict()) for os_ in (8, 16, 32)}
    classifier = build_model(ModelSpec("sunet_tiny", task="classification"))
    backbone = {k for k in classifier.state_dict() if k.startswith("backbone.")}
    assert names[8] == names[16] == names[32]
    assert backbone == {k for k in names[16] if k.startswith("backbone.")}


def test_custom_config_overrides():
    spec = ModelSpec("sunet64", overrides={"width": 16, "modules_per_block": (1, 1, 1, 1)})
    model = build_model(spec)
    assert model.backbone.blocks[1][0].bottleneck_in.out_channels == 16
    assert [len(b) for b in model.backbone.blocks] == [1, 1, 1, 1]


@pytest.mark.parametrize(
    "spec, message",
    [
        (ModelSpec("resnet9000"), "unknown architecture"),
        (ModelSpec("sunet64", output_stride=4), "output_stride"),
        (ModelSpec("sunet64", head="fancy"), "head"),
        (ModelSpec("sunet64", task="detection"), "task"),
        (ModelSpec("sunet64", num_classes=0), "num_classes"),
    ],
)
def test_invalid_specs_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        build_model(spec)


def test_registry_lists_paper_variants():
    assert {"sunet64", "sunet128", "sunet7_128"} <= set(MODEL_REGISTRY)


def test_strided_decoder_crops_to_skip():
    level = DecoderLevel(4, 4, rate=0)
    skip = torch.zeros(1, 4, 7, 9)
    assert level(torch.randn(1, 4, 4, 5), like=skip).shape == (1, 4, 7, 9)
    assert len(EncoderLevel(4, rate=2)) == 2
