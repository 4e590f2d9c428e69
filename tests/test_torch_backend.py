"""PyTorch specifics: d2l's listing reproduced literally, native weights, StepLR, precision."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import backends
from common import d2l_listing, weights as weight_sets
from common.config import D2L
from common.errors import UserError, WeightsUnavailable
from helpers import rel_err

if backends.why_unavailable("torch"):
    pytest.skip(backends.why_unavailable("torch"), allow_module_level=True)

import torch  # noqa: E402

from backends import torch_backend  # noqa: E402


@pytest.fixture(scope="module")
def random_torch():
    return backends.get_backend("torch", weights="random", device="cpu")


def d2l_listing_features(params, X, content_layers, style_layers):
    """d2l 13.12's PyTorch extract_features, verbatim, on torchvision's VGG19 (in-place ReLUs)."""
    net = d2l_listing.vgg_net(params, content_layers, style_layers)
    return d2l_listing.extract_features(net, X, content_layers, style_layers)


@pytest.mark.parametrize(("taps", "should_match"), [("torch-inplace", True), ("pre-relu", False)])
def test_torch_inplace_taps_reproduce_the_d2l_listing(taps, should_match):
    params = weight_sets.random_weights(0).params
    b = backends.get_backend("torch", weights=params, device="cpu")
    X = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        expected = d2l_listing_features(params, X.clone(), [25], [0, 5, 10, 19, 28])
        actual = b.extract_features(X, [25], [0, 5, 10, 19, 28], taps)
    # Channels-last and NCHW convolutions sum in different orders: measured up to 2.2e-6 of the
    # largest value; a pre-ReLU tap read as a ReLU one is off by order 1.
    matches = [rel_err(a.numpy(), e.numpy()) < 1e-5 for a, e in zip(actual[0] + actual[1], expected[0] + expected[1])]
    if should_match:
        assert all(matches)
    else:
        # Only conv5_1, the one tap with no ReLU after it in the truncated net, agrees.
        assert matches == [False, False, False, False, False, True]


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden:UserWarning")
def test_train_step_uses_config_lr_at_each_epoch(random_torch):
    """The lr each optimizer step really uses, recorded inside train_step (catches a scheduler stepped first)."""
    b = random_torch
    config = D2L.replace(num_epochs=120, image_shape=(32, 32))
    X = b.from_numpy(np.zeros((1, 3, 32, 32), np.float32))
    contents_Y, styles_Y = b.extract_features(X, config.content_layers, config.style_layers)
    state = b.init_state(X, contents_Y, styles_Y, config)
    used = []
    step = state.trainer.step

    def recording_step(*args, **kwargs):
        used.append(state.trainer.param_groups[0]["lr"])
        return step(*args, **kwargs)

    state.trainer.step = recording_step
    for _ in range(config.num_epochs):
        state, _ = b.train_step(state)
    assert used == pytest.approx([config.lr_at(epoch) for epoch in range(config.num_epochs)])


def test_adam_epsilon_is_explicit(random_torch):
    config = D2L.replace(adam_eps=1e-6, image_shape=(32, 32))
    X = random_torch.from_numpy(np.zeros((1, 3, 32, 32), np.float32))
    state = random_torch.init_state(X, *random_torch.extract_features(X, [25], [0, 5, 10, 19, 28]), config)
    assert state.trainer.param_groups[0]["eps"] == 1e-6


def test_vgg_weights_are_frozen_and_only_the_image_trains(random_torch):
    assert not any(p.requires_grad for p in random_torch.net.parameters())
    assert not any(isinstance(m, torch.nn.ReLU) and m.inplace for m in random_torch.net)


@pytest.mark.parametrize(("precision", "tf32"), [("float32", False), ("tf32", True)])
def test_precision_sets_tf32(precision, tf32):
    backends.get_backend("torch", weights="random", device="cpu", precision=precision)
    assert torch.backends.cudnn.allow_tf32 is tf32 and torch.backends.cuda.matmul.allow_tf32 is tf32
    backends.get_backend("torch", weights="random", device="cpu")  # leave strict float32 for later tests


def test_bf16_runs_and_keeps_float32_outputs():
    b = backends.get_backend("torch", weights="random", device="cpu", precision="bf16")
    X = b.from_numpy(np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32))
    contents, styles = b.extract_features(X, [25], [0, 5, 10, 19, 28])
    assert all(t.dtype == torch.float32 for t in contents + styles)
    backends.get_backend("torch", weights="random", device="cpu")


# --- native weights: torchvision's own file, from a cache the test seeds ----------------------


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


def seed_native_cache(params) -> tuple[str, str]:
    path = torch_backend.native_cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # torchvision's file is a plain state dict of the whole model; ours holds its features.
    torch.save({k: torch.from_numpy(v) for k, v in params.items()}, path)
    return str(path), hashlib.sha256(path.read_bytes()).hexdigest()


def test_native_weights_load_from_a_seeded_cache(torch_home, monkeypatch):
    params = weight_sets.random_weights(3).params
    _, digest = seed_native_cache(params)
    monkeypatch.setattr(torch_backend, "NATIVE_SHA256_PREFIX", digest[:8])
    b = backends.get_backend("torch", weights="native", device="cpu")
    assert b.weights.name == "native" and b.weights.convention is weight_sets.IMAGENET_RGB
    assert b.weights.loss_weights == weight_sets.D2L_LOSS_WEIGHTS
    reference = backends.get_backend("torch", weights=params, device="cpu")
    X = b.from_numpy(np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32))
    for got, want in zip(b.extract_features(X, [25], [0, 28])[1], reference.extract_features(X, [25], [0, 28])[1]):
        assert torch.equal(got, want)


def test_native_weights_with_a_wrong_hash_are_refused(torch_home):
    seed_native_cache(weight_sets.random_weights(3).params)  # not torchvision's real file
    with pytest.raises(UserError, match="refusing to load"):
        backends.get_backend("torch", weights="native", device="cpu")


def test_native_weights_offline_and_uncached_fail_clearly(torch_home, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsUnavailable) as exc:
        backends.get_backend("torch", weights="native", device="cpu")
    message = str(exc.value)
    assert "vgg19-dcbb9e9d.pth" in message and str(torch_home) in message and "--weights bundled" in message
    assert "\n" not in message


@pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning")  # the tutorial's own line
def test_the_pytorch_tutorials_listing_gives_the_backends_images():
    """The tutorial's own code (tests/pytorch_tutorial_listing.py) on the same weights and images
    evaluates the same images as the torch backend's ``pytorch-tutorial`` recipe, closure call by
    closure call, and its `while run[0] <= num_steps` loop makes the same number of calls."""
    import pytorch_tutorial_listing as tutorial
    from common import images
    from common.stylize import stylize_array

    params = weight_sets.random_weights(0).params  # ImageNet convention: the tutorial's Normalization
    b = backends.get_backend("torch", weights=params, device="cpu", precision="float64")
    evaluated = []
    backend_loss = b._loss
    b._loss = lambda state, X: (evaluated.append(X.detach().clone()), backend_loss(state, X))[1]
    rng = np.random.default_rng(0)
    content, style = (rng.integers(0, 256, (32, 48, 3), np.uint8) for _ in range(2))
    steps = 2
    reported = []
    stylize_array(b, content, style, D2L.replace(recipe="pytorch-tutorial", image_shape=(32, 48), num_epochs=steps),
                  callback=lambda report: reported.append(report.evaluations))

    cnn = d2l_listing.vgg_net(params, [0], [36]).eval().double()  # all of features: the tutorial truncates it
    content_img, style_img = (torch.from_numpy(images.preprocess_array(x, (32, 48), images.UNIT_RGB)).double()
                              for x in (content, style))
    _, tutorials, calls = tutorial.run_style_transfer(
        cnn, tutorial.cnn_normalization_mean.double(), tutorial.cnn_normalization_std.double(), content_img,
        style_img, content_img.clone(), num_steps=20 * steps - 1)  # `<= 39`: two steps of 20 calls

    assert calls == len(evaluated) == 20 * steps and reported == [20, 40]
    # float64: the first step's 20 evaluations measured <= 3.1e-13 apart (the tutorial normalizes
    # with (x - mean) / std, the backend with one folded affine map). L-BFGS at lr 1 without a line
    # search grows that ~10x every few calls (2.8e-3 by the 40th, 3e-3 by the 20th in float32), so
    # only the first step is compared.
    for ours, theirs in list(zip(evaluated, tutorials))[:20]:
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=0, atol=1e-11)


def test_the_tutorials_loop_count_is_reproduced():
    """300 closure calls in the tutorial's loop are 16 steps of 20: the recipe's default."""
    from common import lbfgs, recipes

    assert recipes.PYTORCH_TUTORIAL.num_epochs == lbfgs.tutorial_steps(300, recipes.PYTORCH_TUTORIAL.lbfgs.max_iter)
