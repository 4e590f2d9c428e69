"""VGG19's ``features`` as data, and how d2l's layer indices become named taps.

The configuration list is torchvision's (``models/vgg.py``, config "E"); every
backend builds its network from ``vgg19_layers()`` so that the index ``i`` of
a layer means the same thing in all of them: ``features[i]`` in torchvision.

Why taps need names: d2l's PyTorch listing keeps a reference to the output of
``features[i]`` for i in (0, 5, 10, 19, 25, 28). Those are convolutions, but
torchvision's VGG applies ``ReLU(inplace=True)`` right after each, and the
in-place ReLU overwrites the tensor the listing kept. So what the listing
really reads is relu1_1, relu2_1, relu3_1, relu4_1, relu4_4 (content) and,
because the truncated network ends at index 28 so no ReLU follows it, a
pre-ReLU conv5_1. d2l's MXNet listing has separate activation layers and reads
the pre-ReLU convolution outputs everywhere. Both readings are offered:

- ``"torch-inplace"`` (default): what the PyTorch listing computes;
- ``"pre-relu"``: the literal reading, what the MXNet listing computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

# torchvision's cfgs["E"]: channels of each 3x3 convolution, "M" a 2x2 max pool.
VGG19_CONFIG: tuple[int | str, ...] = (
    64, 64, "M",
    128, 128, "M",
    256, 256, 256, 256, "M",
    512, 512, 512, 512, "M",
    512, 512, 512, 512, "M",
)  # fmt: skip

# torchvision's cfgs["D"]: VGG16, the TF1 tutorial's network (issue 15), the same shape with three
# convolutions in blocks 3 to 5.
VGG16_CONFIG: tuple[int | str, ...] = (
    64, 64, "M",
    128, 128, "M",
    256, 256, 256, "M",
    512, 512, 512, "M",
    512, 512, 512, "M",
)  # fmt: skip

TAP_READINGS: tuple[str, ...] = ("torch-inplace", "pre-relu")


@dataclass(frozen=True)
class Layer:
    """One entry of a VGG's ``features``: its torchvision index, kind and name."""

    index: int
    kind: str  # "conv", "relu" or "pool"
    name: str  # conv3_2, relu3_2, pool3, ...
    in_channels: int = 0  # convolutions only
    out_channels: int = 0  # convolutions only

    @property
    def weight_key(self) -> str:
        return f"features.{self.index}.weight"

    @property
    def bias_key(self) -> str:
        return f"features.{self.index}.bias"


def vgg_layers(config: Sequence[int | str]) -> tuple[Layer, ...]:
    """Every layer of a VGG ``features`` described by ``config``, indexed as in torchvision."""
    layers: list[Layer] = []
    block, conv_in_block, in_channels = 1, 0, 3
    for entry in config:
        if entry == "M":
            layers.append(Layer(len(layers), "pool", f"pool{block}"))
            block, conv_in_block = block + 1, 0
            continue
        conv_in_block += 1
        suffix = f"{block}_{conv_in_block}"
        layers.append(Layer(len(layers), "conv", f"conv{suffix}", in_channels, entry))
        layers.append(Layer(len(layers), "relu", f"relu{suffix}"))
        in_channels = entry
    return tuple(layers)


def vgg19_layers() -> tuple[Layer, ...]:
    """All 37 layers of VGG19's ``features``."""
    return vgg_layers(VGG19_CONFIG)


VGG19_LAYERS = vgg19_layers()
VGG16_LAYERS = vgg_layers(VGG16_CONFIG)  # 31 layers
# The architecture is the model's (a weight set's, common/weights.py): every backend builds it from this table.
ARCHITECTURES: dict[str, tuple[Layer, ...]] = {"vgg19": VGG19_LAYERS, "vgg16": VGG16_LAYERS}
LAYER_BY_NAME = {layer.name: layer for layer in VGG19_LAYERS}
CONV_LAYERS = tuple(layer for layer in VGG19_LAYERS if layer.kind == "conv")


def layers_of(architecture: str) -> tuple[Layer, ...]:
    """Every layer of ``architecture``'s ``features`` ("vgg19" or "vgg16")."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture]


def conv_layers(architecture: str = "vgg19") -> tuple[Layer, ...]:
    """The convolutions of ``architecture``, the layers that carry weights."""
    return tuple(layer for layer in layers_of(architecture) if layer.kind == "conv")


def layer_by_name(architecture: str = "vgg19") -> dict[str, Layer]:
    return {layer.name: layer for layer in layers_of(architecture)}


def keras_name(conv_name: str) -> str:
    """conv3_2 -> block3_conv2, the name Keras and the Caffe weights use."""
    block, conv = conv_name.removeprefix("conv").split("_")
    return f"block{block}_conv{conv}"


def tap_names(layers: Iterable[int | str], deepest: int, reading: str = "torch-inplace",
              architecture: str = "vgg19") -> tuple[str, ...]:
    """Turn d2l's layer indices into the names of the tensors they really read.

    ``deepest`` is the last index of the truncated network (d2l keeps
    ``features[:max(content_layers + style_layers) + 1]``); an in-place ReLU
    beyond it never runs. Names pass through unchanged.
    """
    if reading not in TAP_READINGS:
        raise ValueError(f"unknown tap reading {reading!r}; expected one of {TAP_READINGS}")
    all_layers, label = layers_of(architecture), architecture.upper()
    by_name = layer_by_name(architecture)
    names = []
    for layer in layers:
        if isinstance(layer, str):
            if layer not in by_name:
                raise ValueError(f"unknown {label} layer name {layer!r}")
            names.append(layer)
            continue
        if not 0 <= layer < len(all_layers):
            raise ValueError(f"{label} features index {layer} out of range 0..{len(all_layers) - 1}")
        following = layer + 1
        if (
            reading == "torch-inplace"
            and following <= deepest
            and all_layers[following].kind == "relu"
        ):
            names.append(all_layers[following].name)
        else:
            names.append(all_layers[layer].name)
    return tuple(names)


@dataclass(frozen=True)
class FeaturePlan:
    """The layers a backend runs and the named outputs it keeps."""

    layers: tuple[Layer, ...]  # features[0 .. deepest tap]
    content: tuple[str, ...]
    style: tuple[str, ...]
    space: str = "d2l-normalized"  # the space of the image fed in (common/images.py): it sets the input transform


def feature_plan(
    content_layers: Sequence[int | str],
    style_layers: Sequence[int | str],
    reading: str = "torch-inplace",
    space: str = "d2l-normalized",
    architecture: str = "vgg19",
) -> FeaturePlan:
    """Resolve d2l's indices (or names) into a plan every backend follows, in ``architecture``'s layers."""
    all_layers, by_name = layers_of(architecture), layer_by_name(architecture)
    indices = [
        layer if isinstance(layer, int) else by_name[layer].index
        for layer in (*content_layers, *style_layers)
        if isinstance(layer, int) or layer in by_name
    ]
    deepest = max(indices, default=0)  # no known name: tap_names says which is unknown
    content = tap_names(content_layers, deepest, reading, architecture)
    style = tap_names(style_layers, deepest, reading, architecture)
    last = max(by_name[name].index for name in (*content, *style))
    return FeaturePlan(all_layers[: last + 1], content, style, space)
