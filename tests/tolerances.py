"""Cross-backend tolerances, in one place, each with the measurement behind it.

All are relative: max |a - b| / max(|a|, |b|) over every element (see
tools/agreement.py), float32 on the CPU, TF32 off. "Measured" is the worst
pair in ``python benchmarks/agreement_table.py`` (docs/agreement.json) on a 2-core x86 CPU with
torch 2.15, TensorFlow 2.21, JAX 0.10.2; each tolerance leaves roughly a 3-10x
margin over it and stays well below what a real bug produces (a dropped 0.5
in TV is a 1e0 error, a wrong Gram layout ~1e0, a pre-ReLU tap ~1e-1).
"""

# Gram, TV and the losses on small random tensors (against NumPy float64 too).
# Measured <= 7.9e-7 for gram, tv and content loss. The style loss of a
# 1-channel map subtracts two nearly equal Grams and measured 6.2e-6.
GRAM = 1e-5
TV = 1e-5
CONTENT_LOSS = 1e-5
STYLE_LOSS = 3e-5
COMPUTE_LOSS = 3e-5  # its parts are the above, times weights; measured <= 6e-6

# VGG19 features at all 29 layer outputs conv1_1..conv5_1, 64x96 input:
# measured <= 2.9e-6 (random weights), 2.0e-6 (bundled). Different conv
# algorithms (oneDNN, Eigen, XLA) sum in different orders.
FEATURES = 2e-5

# Loss parts and d(total loss)/d(image) at the content image: measured <= 1.3e-7
# (losses) and 8.1e-7 (gradient), on every pixel that no near-tied max-pool
# window reaches. At tied values in a 2x2 max-pool window each framework routes
# the gradient to a different (equally valid) element: agreement.images() has
# no exact ties, but values closer than float32 resolves are ties by rounding,
# and the CPU's ISA and thread count decide which way they round (on an AVX2
# CPU TensorFlow's gradient differed from torch's by 1.9e-3 at one pool1
# window whose two largest inputs differ by 1.5e-8 in float64). So the
# gradient, and one Adam step, are checked outside the receptive field of the
# windows float32 may order either way (agreement.near_ties).
LOSS = 1e-5
GRADIENT = 1e-5
# Those near-ties may reach this fraction of the image's pixels at most: measured
# 11.8% (2 windows in pool1, 3 in pool2) for every pair on the bundled weights,
# 3.6% (1 in pool2) on the random ones (AVX2 CPU, 2 threads).
# A backend with wrong features has many more.
NEAR_TIE_PIXELS = 0.25

TRAIN_EPOCHS = 20

# Adam: PyTorch and optax add eps to sqrt(v_hat); Keras adds it to sqrt(v)
# before the bias correction, so the same eps=1e-8 acts like 1e-8/sqrt(1-0.999^t)
# (3.2e-7 at step 1). Pixels whose gradient is ~1e-6 then move differently.
# So pairs with TensorFlow get their own, measured, tolerances for training.
SAME_ADAM = ("torch", "jax")


def for_pair(pair, same: float, keras: float) -> float:
    """The tolerance for ``pair``: ``same`` where both use the PyTorch/optax Adam, else ``keras``."""
    return same if tuple(sorted(pair)) == tuple(sorted(SAME_ADAM)) else keras


# The image after one Adam step from the same state, outside the near-ties'
# receptive field like the gradient: measured 1.5e-6 for torch-jax, 1.6e-3 for
# pairs with TensorFlow. Inside it a gradient's sign can flip, and the pixel
# moves by 2 lr the other way (0.39 relative, on the AVX2 CPU above).
ONE_STEP = {"same": 2e-5, "keras": 5e-3}

# Loss parts at each of the 20 epochs: measured 4.2e-3 torch-jax, 9.7e-3 with
# TensorFlow. Adam's step is ~lr*sign(g) wherever |g| >> eps, so rounding-level
# differences in g near zero flip whole lr-sized pixel moves; they compound.
HISTORY = {"same": 1e-2, "keras": 3e-2}

# The final image after 20 epochs: individual pixels can differ by a full
# Adam step (measured max relative 4.7e-2 torch-jax, 0.27 with TensorFlow), so
# the image is judged as a whole: PSNR of the 8-bit images, measured 43.2 dB
# torch-jax and 34.2 dB with TensorFlow (a minimum, unlike the others).
FINAL_PSNR_DB = {"same": 40.0, "keras": 30.0}

# --- float64 (precision="float64") ------------------------------------------------------------

# Small image, few epochs: enough steps for every part of Adam and the schedule to act, fast in CI.
FLOAT64_IMAGE_SHAPE = (32, 48)
FLOAT64_EPOCHS = 20
FLOAT64_LR_DECAY_EPOCH = 8  # two lr decays inside the 20 epochs

# With the reference Adam in float64, the three backends' loss histories and images after
# 20 epochs at 32x48 (random weights, lr decays at epochs 8 and 16): measured <= 2.5e-16
# (losses) and 5.2e-15 (image), torch-tensorflow and torch-jax (tensorflow-jax measured 2.8e-15 without lr decays). The tolerance leaves ~200x over that and sits
# far below the smallest formula difference found: a float32-computed lr (optax's StepLR:
# 3.6e-8 apart after 20 epochs; Keras' ExponentialDecay, even given a float64 lr: 1.6e-9 at
# the first decayed epoch, 1.2e-8 by epoch 20); Keras' epsilon hat and any change of a loss
# are larger still.
FLOAT64_TRAJECTORY = 1e-12

# Each backend's first three reference-Adam steps against common.reference.adam_step fed the
# backend's own gradient: passed at 1e-13 on all three (a few roundings per step, ~1e-16 each).
FLOAT64_ADAM_STEP = 1e-13
