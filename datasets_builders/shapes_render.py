"""Rendering of Multi-Shapes clips (the ``multi_shapes`` builder): a coloured shape moving or changing size over a
plain background."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from .shapes_grammar import BG_RGB, RGB, Clip


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    pts = []  # five-pointed star
    for k in range(10):
        a = -math.pi / 2 + k * math.pi / 5
        rr = r if k % 2 == 0 else 0.45 * r
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def render_clip(clip: Clip, rng: np.random.Generator, size: int = 64, frames: int = 16) -> list[np.ndarray]:
    """``frames`` RGB frames of ``clip`` with random start, speed, size and a little colour noise."""
    bg = np.array(BG_RGB[clip.background]) + rng.integers(-10, 11, 3)
    fg = np.clip(np.array(RGB[clip.colour]) + rng.integers(-20, 21, 3), 0, 255)
    r0 = size * rng.uniform(0.12, 0.18)
    cx, cy = size * rng.uniform(0.35, 0.65), size * rng.uniform(0.35, 0.65)
    speed = size * rng.uniform(0.025, 0.04)
    dx = {"left": -speed, "right": speed}.get(clip.motion, 0.0)
    dy = {"up": -speed, "down": speed}.get(clip.motion, 0.0)
    if dx:
        cx = size * (0.78 if dx < 0 else 0.22)
    if dy:
        cy = size * (0.78 if dy < 0 else 0.22)
    growth = {"grow": 1.05, "shrink": 0.955}.get(clip.motion, 1.0)
    if clip.motion == "shrink":
        r0 *= 1.9
    out = []
    for t in range(frames):
        img = Image.new("RGB", (size, size), tuple(int(v) for v in np.clip(bg, 0, 255)))
        draw = ImageDraw.Draw(img)
        x, y, r = cx + dx * t, cy + dy * t, r0 * growth**t
        if clip.shape == "circle":
            draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in fg))
        else:
            draw.polygon(_polygon(clip.shape, x, y, r), fill=tuple(int(v) for v in fg))
        arr = np.asarray(img, dtype=np.int16) + rng.integers(-6, 7, (size, size, 3))
        out.append(np.clip(arr, 0, 255).astype(np.uint8))
    return out
