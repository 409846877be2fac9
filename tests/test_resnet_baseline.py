"""The dilated ResNet-101 baseline: torchvision's exact layout, OS16 dilation, registry entry."""

import pytest
import torch

from sunet_deploy.models import ModelSpec, build_model, count_parameters

# torchvision.models.ResNet101_Weights.IMAGENET1K_V1.meta["num_params"]: resnet101 with its 1000-way fc.
TORCHVISION_RESNET101_PARAMS = 44_549_160
FC_PARAMS = 2048 * 1000 + 1000


def test_classifier_matches_torchvision_parameter_count():
    model = build_model(ModelSpec("resnet101", task="classification", num_classes=1000))
    assert count_parameters(model) == TORCHVISION_RESNET101_PARAMS
    assert count_parameters(model.backbone) == TORCHVISION_RESNET101_PARAMS - FC_PARAMS == 42_500_160


def test_segmentation_model_is_backbone_plus_1x1_head():
    model = build_model(ModelSpec("resnet101", num_classes=21, output_stride=16))
    assert count_parameters(model) == 42_500_160 + 2048 * 21 + 21


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_output_stride_and_full_resolution_logits(output_stride):
    spec = ModelSpec("resnet101", num_classes=3, output_stride=output_stride, overrides={"layers": (1, 1, 2, 2), "width": 8})
    model = build_model(spec).eval()
    with torch.no_grad():
        features = model.backbone(torch.zeros(1, 3, 64, 64))
        logits = model(torch.zeros(1, 3, 61, 70))
    assert features.shape[-2:] == (64 // output_stride, 64 // output_stride)
    assert logits.shape == (1, 3, 61, 70)


def test_os16_dilates_layer4_like_torchvision():
    model = build_model(ModelSpec("resnet101", output_stride=16))
    layer4 = model.backbone.layer4
    assert layer4[0].conv2.stride == (1, 1) and layer4[0].conv2.dilation == (1, 1)
    assert all(block.conv2.dilation == (2, 2) for block in layer4[1:])
    assert model.backbone.layer3[0].conv2.stride == (2, 2)


def test_only_the_plain_head():
    with pytest.raises(ValueError, match="plain 1x1 head"):
        build_model(ModelSpec("resnet101", head="degrid"))
