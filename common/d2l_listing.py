"""d2l 13.12's PyTorch listing as the book writes it: torchvision's VGG19 with its in-place ReLUs.

Used twice: ``tests/test_torch_backend.py`` proves that the named taps reproduce
what it computes, and ``benchmarks/step_benchmark.py`` times it as the naive
baseline. torch is imported only when these functions are called.
"""

from __future__ import annotations


def vgg_net(params, content_layers, style_layers):
    """``pretrained_net.features`` truncated after the deepest layer used, as in the book."""
    import torch
    import torchvision

    pretrained_net = torchvision.models.vgg19(weights=None)
    pretrained_net.features.load_state_dict({k.removeprefix("features."): torch.from_numpy(v) for k, v in params.items()})
    return torch.nn.Sequential(*[pretrained_net.features[i] for i in range(max(content_layers + style_layers) + 1)])


def extract_features(net, X, content_layers, style_layers):
    contents = []
    styles = []
    for i in range(len(net)):
        X = net[i](X)
        if i in style_layers:
            styles.append(X)
        if i in content_layers:
            contents.append(X)
    return contents, styles


def gram(X):
    import torch

    num_channels, n = X.shape[1], X.numel() // X.shape[1]
    X = X.reshape((num_channels, n))
    return torch.matmul(X, X.T) / (num_channels * n)
