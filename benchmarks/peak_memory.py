"""Peak host memory of one backend's training step at one size: the figures tools/estimate.py is fitted to.

    python benchmarks/peak_memory.py torch 600x900      # one backend per process, so ru_maxrss is its own

Prints the process's peak RSS after building the backend (random weights) and after one step of stylize.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import backends  # noqa: E402
from tools import estimate  # noqa: E402
from common.config import CPU  # noqa: E402
from common.stylize import stylize  # noqa: E402
from compare import image_size  # noqa: E402


def peak_mib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main(argv: list[str]) -> int:
    name, (height, width) = argv[0], image_size(argv[1])
    backend = backends.get_backend(name, weights="random", device="cpu")
    built = peak_mib()
    rng = np.random.default_rng(0)
    content, style = (rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(2))
    config = CPU.replace(image_shape=(height, width), num_epochs=1)
    stylize(backend, content, style, config)
    activations = estimate.activation_bytes(config.image_shape, config) / 2**20
    print(f"{name} {height}x{width}: peak {peak_mib()} MiB (after building the backend {built} MiB); "
          f"activations {activations:.0f} MiB; estimate {estimate.estimate(config, 'float32', False).peak_bytes / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
