"""Big Buck Bunny (596 s, 1280x720, CC-BY 3.0): shots detected, windows indexed, real-time factors (issue 22).

The full film ships inside the moviepy 2.2.1 source archive (``moviepy_10_minutes.zip`` →
``resources/bbb.mp4``) with ``trailer.py``, whose ``subclipped(a, b)`` calls label scenes by time ("An
unlucky bird" 16–20 s, ...). This script fetches the archive with pip when it is not given, then:

1. one decode pass with PySceneDetect's ContentDetector (``segments="shots"``): shots found, wall time,
   and whether each labelled trailer scene's start lies on a detected cut (within 0.5 s);
2. one decode pass for 4 s / 2 s windows (no encoding): wall time;
3. ``Retriever.add_videos(segments="window")`` end to end with the weight-free shape-stats frame encoder:
   windows indexed, wall time, and the real-time factor (video seconds per wall second) of each step.

No quality claim is possible offline: no CLIP weights exist here, so nothing says the indexed windows
would be *found* by a query. The figures are segmentation and speed, measured on 2 shared CPU cores.

    python benchmarks/moments_bbb.py [--bbb path/to/bbb.mp4]

Results: ``benchmarks/results_committed/moments_bbb.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results_committed" / "moments_bbb.json"
CACHE = Path(tempfile.gettempdir()) / "mtvr-bbb"


def fetch_bbb() -> tuple[Path, str]:
    """``(bbb.mp4, trailer.py text)`` from the moviepy 2.2.1 sdist (downloaded with pip once)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    mp4, trailer = CACHE / "bbb.mp4", CACHE / "trailer.py"
    if not (mp4.is_file() and trailer.is_file()):
        sdist = CACHE / "moviepy-2.2.1.tar.gz"
        if not sdist.is_file():
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    "moviepy==2.2.1",
                    "-d",
                    str(CACHE),
                ],
                check=True,
            )
        with tarfile.open(sdist) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("moviepy_10_minutes.zip"))
            data = tar.extractfile(member).read()
        (CACHE / "m10.zip").write_bytes(data)
        with zipfile.ZipFile(CACHE / "m10.zip") as z:
            mp4.write_bytes(z.read("moviepy_10_minutes/resources/bbb.mp4"))
            trailer.write_text(z.read("moviepy_10_minutes/trailer.py").decode("utf-8"))
    return mp4, trailer.read_text(encoding="utf-8")


def _seconds(value: str) -> float:
    value = value.strip().strip("\"'")
    parts = [float(p) for p in value.split(":")]
    out = 0.0
    for p in parts:
        out = out * 60 + p
    return out


def labelled_scenes(trailer: str) -> list[dict]:
    """``[{"name", "label", "start", "end"}]`` from trailer.py's ``x_clip = video.subclipped(a, b)`` and texts."""
    scenes = []
    for name, a, b in re.findall(
        r"(\w+)_clip = video\.(?:with_subclip|subclipped)\(\s*([^,]+?),\s*([^)]+?)\s*\)", trailer, re.S
    ):
        label = re.search(rf'{name}_text = TextClip\([^)]*?text="([^"]+)"', trailer, re.S)
        scenes.append(
            {"name": name, "label": label.group(1) if label else name, "start": _seconds(a), "end": _seconds(b)}
        )
    return scenes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bbb", type=Path, default=None, help="bbb.mp4 (default: fetched from the moviepy sdist)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    from mtvr.video.decode import probe
    from mtvr.video.segment_decode import decode_segments

    mp4, trailer = fetch_bbb() if args.bbb is None else (args.bbb, "")
    info = probe(mp4)
    duration = info["duration"]
    print(f"{mp4}: {info['width']}x{info['height']}, {duration:.1f} s at {info['fps']:.2f} fps")
    result: dict = {"file": {**info, "name": "Big Buck Bunny (CC-BY 3.0, Blender Foundation)"}}

    t0 = time.perf_counter()
    dec = decode_segments(mp4, "shots", window=4, stride=2, num_frames=8, size=224)
    shots = list(dec)
    t_shots = time.perf_counter() - t0
    cuts = dec.stats.cuts
    result["shots"] = {
        "cuts": len(cuts),
        "segments": len(shots),
        "wall_s": round(t_shots, 1),
        "real_time_factor": round(duration / t_shots, 2),
        "cut_times": [round(c, 2) for c in cuts],
    }
    print(
        f"shots: {len(cuts)} cuts, {len(shots)} segments (long shots split into 4 s windows) in {t_shots:.1f} s "
        f"= {duration / t_shots:.1f}x real time"
    )
    scenes = labelled_scenes(trailer)
    for s in scenes:
        s["start_on_a_cut"] = any(abs(c - s["start"]) <= 0.5 for c in cuts)
        s["cuts_inside"] = sum(s["start"] < c < s["end"] for c in cuts)
        print(
            f"  trailer scene {s['label']!r} {s['start']:.1f}-{s['end']:.1f} s: starts on a detected cut: "
            f"{s['start_on_a_cut']}, {s['cuts_inside']} cuts inside"
        )
    result["trailer_scenes"] = scenes

    t0 = time.perf_counter()
    windows = list(decode_segments(mp4, "window", window=4, stride=2, num_frames=12, size=224))
    t_win = time.perf_counter() - t0
    result["windows_decode_only"] = {
        "windows": len(windows),
        "wall_s": round(t_win, 1),
        "real_time_factor": round(duration / t_win, 2),
    }
    print(f"windows: {len(windows)} windows decoded in one pass in {t_win:.1f} s = {duration / t_win:.1f}x real time")

    with tempfile.TemporaryDirectory() as tmp:
        import _util  # noqa: F401  (tests/ on the path)
        from helpers import CORPUS, build_tiny_text_encoder
        from mtvr import Retriever
        from mtvr.config import FrameEncoderConfig

        text = build_tiny_text_encoder(Path(tmp) / "text", CORPUS, hidden_size=32, vocab_size=400)
        r = Retriever.from_text_encoder(
            str(text),
            device="cpu",
            video_feature_dim=43,
            embed_dim=64,
            aggregator="mean",
            max_frames=12,
            frame_encoder=FrameEncoderConfig(name_or_path="mtvr/shape-stats", num_frames=12, image_size=64),
        )
        t0 = time.perf_counter()
        res = r.add_videos([mp4], segments="window", window=4, stride=2)
        t_add = time.perf_counter() - t0
    result["add_videos_window_shape_stats"] = {
        "windows_indexed": len(res.video_ids),
        "errors": res.errors,
        "wall_s": round(t_add, 1),
        "real_time_factor": round(duration / t_add, 2),
    }
    print(
        f"add_videos(window, shape-stats encoder): {len(res.video_ids)} windows indexed in {t_add:.1f} s "
        f"= {duration / t_add:.1f}x real time"
    )
    print("no retrieval-quality claim: no CLIP weights offline")
    result["note"] = "2 shared CPU cores; no quality claim without CLIP weights"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
