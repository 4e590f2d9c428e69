"""The spaces a synthesized image lives in: d2l's normalized RGB, [0, 1], 0..255.

Data only, importing nothing heavy (the config and the recipes name these at import time, and the
chapter's build must not import NumPy); the methods import NumPy when called.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


def float32(value: float) -> float:
    """``value`` rounded to float32, as a Python float: what a NumPy float32 constant of it holds."""
    return struct.unpack("f", struct.pack("f", value))[0]


@dataclass(frozen=True)
class ImageSpace:
    """The values the synthesized image takes: ``(pixels / 255 * top - mean) / std`` per RGB channel.

    d2l optimizes normalized RGB, the PyTorch tutorial RGB in [0, 1], the TF1 tutorial RGB in
    0..255; a recipe names its space (common/recipes.py) and each weight set's input convention
    maps it to the network's input inside feature extraction (BackendBase.input_transform).
    """

    name: str
    top: float  # the value of a white pixel before mean and std
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def from_pixels(self, rgb):
        """HxWx3 pixels in 0..255 (float32) into this space."""
        import numpy as np

        return (rgb / np.float32(255.0 / self.top) - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)

    def to_unit(self, X):
        """HxWx3 values of this space as RGB in [0, 1] (unclipped), in X's dtype."""
        import numpy as np

        return (X * np.asarray(self.std, np.float32) + np.asarray(self.mean, np.float32)) / np.float32(self.top)


# d2l: normalized by torchvision's ImageNet statistics (common/weights.py's RGB_MEAN, RGB_STD: float32).
D2L_NORMALIZED = ImageSpace("d2l-normalized", 1.0, tuple(map(float32, (0.485, 0.456, 0.406))),
                            tuple(map(float32, (0.229, 0.224, 0.225))))
UNIT_RGB = ImageSpace("unit-rgb", 1.0)  # the PyTorch tutorial's [0, 1]
BYTE_RGB = ImageSpace("byte-rgb", 255.0)  # the TF1 tutorial's 0..255
IMAGE_SPACES = {space.name: space for space in (D2L_NORMALIZED, UNIT_RGB, BYTE_RGB)}
