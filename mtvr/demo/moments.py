"""The demo's long-video stage: find a moment inside one long video and print its timestamps.

Test clips of Multi-Shapes are joined into one long MP4 (their boundaries are known), the demo's
retriever indexes it as overlapping windows (``add_videos(segments="window")``: one decode pass), and one
scene is searched by its caption in another language. The top moments are printed with their time
ranges next to the scene's true range; nothing is claimed beyond what is printed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SCENES = 8  # clips joined into the long video
WINDOW, STRIDE = 2.0, 1.0  # a Multi-Shapes clip lasts 2 s (16 frames at 8 fps)


def _frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def assemble_long_video(clip_paths: list[Path], out: Path, fps: int = 8) -> list[dict[str, Any]]:
    """Join clips into ``out``; returns each clip's ``{"clip", "start", "end"}`` in the long video."""
    from ..video.render import write_video

    frames: list[np.ndarray] = []
    parts = []
    for p in clip_paths:
        f = _frames(p)
        parts.append({"clip": p.stem, "start": len(frames) / fps, "end": (len(frames) + len(f)) / fps})
        frames += f
    write_video(out, frames, fps=fps)
    return parts


def moment_stage(
    retriever: Any, out: Path, clip_ids: list[str], query_for: Callable[[str], tuple[str, str]], seed: int
) -> dict:
    """Index one long video assembled from test clips and search one of its scenes; print the moments.

    ``query_for(clip_id)`` gives ``(language, caption)`` of a clip.
    """
    rng = np.random.default_rng(seed + 22)
    chosen = [str(c) for c in rng.choice(sorted(clip_ids), min(SCENES, len(clip_ids)), replace=False)]
    long_path = out / "long_video" / "long_multi_shapes.mp4"
    parts = assemble_long_video([out / "videos" / f"{c}.mp4" for c in chosen], long_path)
    added = retriever.add_videos([long_path], segments="window", window=WINDOW, stride=STRIDE)
    duration = parts[-1]["end"]
    print(f"      one long video of {len(parts)} clips ({duration:.0f} s): {len(added.video_ids)} windows indexed")
    target = parts[int(rng.integers(len(parts)))]
    lang, text = query_for(target["clip"])
    hits = retriever.search(text, k=3, filter={"file": long_path.name})
    print(f"      [{lang}] {text}")
    print(f"         true moment: {target['start']:.1f}-{target['end']:.1f} s ({target['clip']})")
    for h in hits:
        m = h.metadata
        print(f"         {h.rank}. {m['file']} {m['start']:.1f}-{m['end']:.1f} s  score {h.score:.3f}")
    return {
        "query": text,
        "language": lang,
        "truth": target,
        "moments": [{"start": h.metadata["start"], "end": h.metadata["end"], "score": h.score} for h in hits],
        "windows": len(added.video_ids),
    }
