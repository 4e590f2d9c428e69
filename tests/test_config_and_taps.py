"""The d2l defaults, hyperparameter validation, the VGG19 table and named taps (no framework needed)."""

from __future__ import annotations

import math

import pytest

from common.config import D2L, LossWeights, StyleTransferConfig
from common.errors import UserError
from common.vgg import CONV_LAYERS, VGG16_LAYERS, VGG19_LAYERS, feature_plan, tap_names
from helpers import require


def test_d2l_defaults():
    assert D2L.image_shape == (300, 450) and D2L.lr == 0.3 and D2L.num_epochs == 500
    assert D2L.lr_decay_epoch == 50 and D2L.lr_decay == 0.8
    assert D2L.style_layers == (0, 5, 10, 19, 28) and D2L.content_layers == (25,)
    assert LossWeights() == LossWeights(content=1.0, style=1e4, tv=10.0)


def test_lr_schedule_is_steplr():
    # StepLR(step_size=50, gamma=0.8) stepped after every epoch: epochs 0..49 use lr.
    assert D2L.lr_at(0) == D2L.lr_at(49) == 0.3
    assert math.isclose(D2L.lr_at(50), 0.24) and math.isclose(D2L.lr_at(99), 0.24)
    assert math.isclose(D2L.lr_at(100), 0.3 * 0.64)


@pytest.mark.parametrize(
    "changes",
    [
        {"lr": 0}, {"lr": -0.1}, {"lr": math.nan}, {"lr": math.inf},
        {"num_epochs": 0}, {"num_epochs": -5}, {"num_epochs": 2.5},
        {"lr_decay_epoch": 0}, {"lr_decay": 0}, {"lr_decay": 1.5}, {"lr_decay": math.nan},
        {"adam_eps": 0}, {"image_shape": (8, 8)}, {"image_shape": (100000, 100)}, {"taps": "post-relu"},
        {"loss_weights": LossWeights(style=-1)}, {"loss_weights": LossWeights(content=math.nan)},
        {"style_layers": (99,)}, {"content_layers": ("conv9_9",)}, {"content_layers": (), "style_layers": ()},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_bad_hyperparameters_are_user_errors(changes):
    with pytest.raises(UserError):
        D2L.replace(**changes).validate()


def test_zero_loss_weight_disables_a_term():
    StyleTransferConfig(loss_weights=LossWeights(tv=0.0)).validate()


def test_vgg19_table_matches_torchvision_indices():
    assert len(VGG19_LAYERS) == 37 and len(CONV_LAYERS) == 16
    names = {layer.index: layer.name for layer in VGG19_LAYERS}
    assert names[0] == "conv1_1" and names[4] == "pool1" and names[25] == "conv4_4" and names[28] == "conv5_1"
    assert names[36] == "pool5"


@pytest.mark.parametrize("layers, torchvision_model", [(VGG19_LAYERS, "vgg19"), (VGG16_LAYERS, "vgg16")])
def test_vgg_tables_match_torchvisions_own_networks(layers, torchvision_model):
    """Each entry's kind and channels equal torchvision's ``features[i]`` (built without weights)."""
    require("torch")
    import torch.nn as nn
    import torchvision

    features = getattr(torchvision.models, torchvision_model)(weights=None).features
    assert len(features) == len(layers)
    kinds = {nn.Conv2d: "conv", nn.ReLU: "relu", nn.MaxPool2d: "pool"}
    for layer, module in zip(layers, features):
        assert layer.kind == kinds[type(module)], layer
        if layer.kind == "conv":
            assert (layer.in_channels, layer.out_channels) == (module.in_channels, module.out_channels), layer


def test_vgg16_names_the_tf1_tutorials_layers():
    """The TF1 tutorial's content layer is its 5th convolution (conv3_1); its style layers are all 13."""
    convs = [layer.name for layer in VGG16_LAYERS if layer.kind == "conv"]
    assert len(VGG16_LAYERS) == 31 and len(convs) == 13
    assert convs[4] == "conv3_1" and convs[-1] == "conv5_3"


def test_torch_inplace_reading_is_what_d2l_pytorch_computes():
    plan = feature_plan((25,), (0, 5, 10, 19, 28), "torch-inplace")
    assert plan.style == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "conv5_1")
    assert plan.content == ("relu4_4",)
    assert plan.layers[-1].name == "conv5_1"  # the truncated net ends at index 28


def test_pre_relu_reading_is_what_d2l_mxnet_computes():
    plan = feature_plan((25,), (0, 5, 10, 19, 28), "pre-relu")
    assert plan.style == ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    assert plan.content == ("conv4_4",)


def test_a_deeper_tap_turns_conv5_1_into_relu5_1():
    # The ReLU after conv5_1 only runs (and overwrites it) when the net goes past index 29.
    assert tap_names([28, 30], deepest=30) == ("relu5_1", "conv5_2")


def test_names_pass_through_and_bad_layers_fail():
    assert tap_names(["relu3_1"], deepest=11) == ("relu3_1",)
    with pytest.raises(ValueError):
        tap_names(["relu9_9"], deepest=0)
    with pytest.raises(ValueError):
        tap_names([37], deepest=37)
