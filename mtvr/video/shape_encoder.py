"""`ShapeStatsEncoder`: a small, deterministic, weight-free frame encoder for the offline demo.

No CLIP weights can be had offline, so the demo encodes its synthetic clips with hand-written image
statistics that see colour, shape and motion (real use takes a CLIP checkpoint). Per frame, with the
background colour estimated from the border and the foreground = pixels far from it:

* background colour (3), foreground mean colour (3), a 3×3×3 colour histogram of the foreground (27);
* foreground area (1), centroid (2), shape descriptors (4): bounding-box fill ratio, aspect ratio,
  normalised second moment, spread of the boundary's distance to the centroid;
* motion (3): centroid displacement and change of size since the previous sampled frame
  (``encode_clips`` only; ``encode`` on lone frames leaves them zero).

``feature_dim`` = 43.
"""

from __future__ import annotations

import numpy as np

FEATURE_DIM = 43


class ShapeStatsEncoder:
    name = "mtvr/shape-stats"
    feature_dim = FEATURE_DIM

    def __init__(self, image_size: int = 64, threshold: float = 60.0, **_: object) -> None:
        self.image_size = image_size
        self.threshold = threshold

    def _frame(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = img.astype(np.float32)
        h, w = x.shape[:2]
        border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
        bg = np.median(border, axis=0)
        fg = np.abs(x - bg).sum(-1) > self.threshold
        feats = np.zeros(FEATURE_DIM - 3, np.float32)
        feats[:3] = bg / 255.0
        n = int(fg.sum())
        geo = np.zeros(3, np.float32)  # cx, cy, sqrt(area) for the motion terms
        if n >= 3:
            pix = x[fg]
            feats[3:6] = pix.mean(0) / 255.0
            bins = np.minimum((pix / 86).astype(int), 2)
            hist = np.bincount(bins[:, 0] * 9 + bins[:, 1] * 3 + bins[:, 2], minlength=27).astype(np.float32)
            feats[6:33] = hist / n
            ys, xs = np.nonzero(fg)
            area = n / (h * w)
            cx, cy = xs.mean() / w * 2 - 1, ys.mean() / h * 2 - 1
            bw, bh = np.ptp(xs) + 1, np.ptp(ys) + 1
            fill = n / (bw * bh)
            aspect = min(bw, bh) / max(bw, bh)
            moment = (((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2).mean()) / n
            inner = fg[1:-1, 1:-1] & fg[:-2, 1:-1] & fg[2:, 1:-1] & fg[1:-1, :-2] & fg[1:-1, 2:]
            edge = fg.copy()
            edge[1:-1, 1:-1] &= ~inner
            ey, ex = np.nonzero(edge)
            dist = np.hypot(ex - xs.mean(), ey - ys.mean())
            spread = dist.std() / max(dist.mean(), 1e-6)
            feats[33:40] = [4 * np.sqrt(area), cx, cy, fill, aspect, 4 * moment, 2 * spread]
            geo[:] = [cx, cy, np.sqrt(area)]
        return feats, geo

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """``uint8 [N, S, S, 3]`` → ``float32 [N, 43]`` (motion terms zero)."""
        out = np.zeros((len(frames), FEATURE_DIM), np.float32)
        for i, f in enumerate(frames):
            out[i, :-3] = self._frame(f)[0]
        return out

    def encode_clips(self, clips: np.ndarray) -> np.ndarray:
        """``uint8 [B, T, S, S, 3]`` → ``float32 [B, T, 43]`` with the motion terms."""
        b, t = clips.shape[:2]
        out = np.zeros((b, t, FEATURE_DIM), np.float32)
        for i in range(b):
            geo = np.zeros((t, 3), np.float32)
            for j in range(t):
                out[i, j, :-3], geo[j] = self._frame(clips[i, j])
            delta = np.diff(geo, axis=0, prepend=geo[:1]) if t > 1 else np.zeros_like(geo)
            if t > 1:
                delta[0] = delta[1]
            out[i, :, -3:] = 10 * delta
        return out
