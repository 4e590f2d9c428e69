"""Draw the default style image, assets/swirls.png: deterministic, NumPy and PIL only.

A smooth random flow field gives swirls; line integral convolution of noise
along it gives brush strokes; a bold palette gives colour. Run from the repo
root: ``python assets/make_style.py``. Same license as the project's code.
"""

from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH, SEED = 384, 512, 13
PAD = 48  # drawn larger and cropped, so strokes never run off the edge
PALETTE = np.array(  # night blues to gold, in the spirit of post-impressionist skies
    [[12, 24, 74], [28, 66, 150], [66, 128, 200], [150, 196, 230], [238, 214, 96], [232, 150, 40], [20, 40, 100]],
    dtype=np.float64,
) / 255.0


def smooth_field(rng, yy, xx, terms=6, scale=3.0):
    field = np.zeros_like(yy)
    for _ in range(terms):
        ky, kx = rng.normal(0, scale, 2)
        field += np.sin(ky * yy + kx * xx + rng.uniform(0, 2 * np.pi)) / terms
    return field


def line_integral_convolution(noise, vy, vx, steps=18):
    height, width = noise.shape
    total = np.zeros_like(noise)
    for sign in (1.0, -1.0):
        y, x = np.mgrid[0:height, 0:width].astype(np.float64)
        for _ in range(steps):
            iy, ix = np.clip(y.astype(int), 0, height - 1), np.clip(x.astype(int), 0, width - 1)
            total += noise[iy, ix]
            y, x = y + sign * vy[iy, ix], x + sign * vx[iy, ix]
    return total / (2 * steps)


def draw() -> Image.Image:
    rng = np.random.default_rng(SEED)
    height, width = HEIGHT + 2 * PAD, WIDTH + 2 * PAD
    yy, xx = (np.mgrid[0:height, 0:width] - PAD) / max(HEIGHT, WIDTH)
    # Swirls: the flow follows the level lines of a potential with a few vortices.
    potential = smooth_field(rng, yy, xx)
    for cy, cx, strength in ((0.3, 0.35, 1.2), (0.45, 0.8, -0.9), (0.15, 0.9, 0.7)):
        potential += strength * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
    gy, gx = np.gradient(potential)
    norm = np.hypot(gy, gx) + 1e-12
    vy, vx = gx / norm, -gy / norm  # perpendicular to the gradient: along level lines
    strokes = line_integral_convolution(rng.random((height, width)), vy, vx)
    strokes = (strokes - strokes.mean()) / strokes.std()
    tone = potential + 0.6 * smooth_field(rng, yy, xx, scale=8.0) + 0.12 * strokes
    tone = (tone - tone.min()) / (tone.max() - tone.min()) * (len(PALETTE) - 1)
    low = np.floor(tone).astype(int).clip(0, len(PALETTE) - 2)
    frac = (tone - low)[..., None]
    rgb = PALETTE[low] * (1 - frac) + PALETTE[low + 1] * frac
    rgb *= (1.0 + 0.18 * strokes)[..., None]  # light and dark along each stroke
    rgb = rgb[PAD:PAD + HEIGHT, PAD:PAD + WIDTH]
    return Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")


if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "swirls.png"
    draw().save(out, optimize=True)
    print(f"wrote {out}")
