"""Moment benchmark (issue 22): segmenting long videos, moment accuracy, single-pass throughput, filter cost.

1. **Moment accuracy.** Long videos are assembled from Multi-Shapes scenes (2–8 s each, known boundaries)
   and every scene is queried by its caption in four languages. R1@IoU0.5 / 0.7 and mIoU (Moment-DETR
   conventions, :func:`mtvr.metrics.moment_metrics`) for ``window`` (4 s / 2 s; and with ``merge``),
   ``shots`` (PySceneDetect) and the whole file (one embedding per file, the moment = the file). No CLIP weights exist offline, so the
   two towers are stand-ins that isolate *segmentation*: the video side is the real decode + shape-stats
   frame features of each segment (mtvr's single pass), mapped to the scene's attributes by a ridge probe
   fitted on separately rendered clips; the text side is the caption grammar's exact parse (an oracle for
   every language). The figures say how well each segmentation can localise a moment, not how well a
   model understands language.
2. **Throughput** in video seconds indexed per wall second: ``Retriever.add_videos(segments="window")``
   (single decode pass + encode + index) against the same files decoded once without encoding (the
   floor), and against decoding each window separately (``sample_frames`` per window, the naive way).
3. **Filtered search cost** on HNSW: a filter selecting a fraction of 50 000 vectors, graph search with
   the filter inside (``IDSelector``) vs exact search over the selected ids; hits returned and recall.
   This is what sets ``mtvr.filtered_search.DEFAULT_EXACT_BELOW``.

    python benchmarks/moments.py [--videos 6] [--scenes 10]

Results: ``benchmarks/results_committed/moments.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent / "results_committed" / "moments.json"
FPS = 8
SIZE = 96
QUERY_LANGUAGES = ("en", "de", "zh", "ja")
MERGE_MARGIN = 0.05  # window+merge: adjacent windows within this cosine of the best join the moment


def scene_frames(clip, rng, seconds: float) -> list[np.ndarray]:
    """``seconds`` of a Multi-Shapes scene at FPS: its 16 rendered frames held for equal times."""
    from datasets_builders.shapes_render import render_clip

    frames = render_clip(clip, rng, size=SIZE, frames=16)
    n = int(round(seconds * FPS))
    return [frames[min(15, int(i * 16 / n))] for i in range(n)]


def assemble(folder: Path, n_videos: int, n_scenes: int, seed: int) -> list[dict]:
    """Long videos of distinct consecutive scenes; returns their scenes with start/end times."""
    from datasets_builders.shapes_grammar import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, Clip
    from mtvr.video.render import write_video

    rng = np.random.default_rng(seed)
    videos = []
    for v in range(n_videos):
        frames, scenes, t = [], [], 0.0
        for _ in range(n_scenes):
            while True:
                clip = Clip(*(str(rng.choice(x)) for x in (SHAPES, COLOURS, MOTIONS, BACKGROUNDS)))
                if not scenes or scenes[-1]["clip"] != clip:
                    break
            seconds = float(rng.integers(2, 9))
            frames += scene_frames(clip, rng, seconds)
            scenes.append({"clip": clip, "start": t, "end": t + seconds})
            t += seconds
        path = write_video(folder / f"long{v:02d}.mp4", frames, fps=FPS)
        videos.append({"path": path, "file": path.name, "scenes": scenes, "duration": t})
    return videos


def attributes(clip) -> np.ndarray:
    from datasets_builders.shapes_grammar import BACKGROUNDS, COLOURS, MOTIONS, SHAPES

    out = []
    for values, v in (
        (SHAPES, clip.shape),
        (COLOURS, clip.colour),
        (MOTIONS, clip.motion),
        (BACKGROUNDS, clip.background),
    ):
        out += [float(v == x) for x in values]
    return np.asarray(out, np.float32)


def oracle_text_tower() -> dict[str, np.ndarray]:
    """Every caption of every scene in every language → the scene's attribute vector (the oracle parse)."""
    import itertools

    from datasets_builders.shapes_grammar import BACKGROUNDS, COLOURS, LANGUAGES, MOTIONS, SHAPES, Clip, caption

    table = {}
    for combo in itertools.product(SHAPES, COLOURS, MOTIONS, BACKGROUNDS):
        clip = Clip(*combo)
        for lang in LANGUAGES:
            for tpl in (0, 1):
                table[caption(clip, lang, tpl)] = attributes(clip)
    return table


def fit_probe(encoder, seed: int, n: int = 600) -> np.ndarray:
    """Ridge regression from mean shape-stats features of rendered clips to their attributes."""
    from datasets_builders.shapes_grammar import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, Clip
    from datasets_builders.shapes_render import render_clip
    from mtvr.video.decode import center_crop

    rng = np.random.default_rng(seed + 1000)
    x, y = [], []
    for _ in range(n):
        clip = Clip(*(str(rng.choice(a)) for a in (SHAPES, COLOURS, MOTIONS, BACKGROUNDS)))
        frames = np.stack(render_clip(clip, rng, size=SIZE, frames=16))[::2]
        small = np.stack([np.asarray(Image.fromarray(f).resize((64, 64))) for f in frames])
        x.append(features_to_vector(encoder.encode_clips(center_crop(small, 64)[None])[0]))
        y.append(attributes(clip))
    x, y = np.stack(x), np.stack(y)
    x1 = np.concatenate([x, np.ones((len(x), 1), np.float32)], 1)
    return np.linalg.solve(x1.T @ x1 + 1e-2 * np.eye(x1.shape[1]), x1.T @ y)


def features_to_vector(feats: np.ndarray) -> np.ndarray:
    """Mean and spread of a segment's frame features (the motion terms need the spread)."""
    return np.concatenate([feats.mean(0), feats.std(0)]).astype(np.float32)


def embed(w: np.ndarray, vec: np.ndarray) -> np.ndarray:
    z = np.concatenate([vec, [1.0]]) @ w
    return (z / (np.linalg.norm(z) + 1e-9)).astype(np.float32)


def moment_accuracy(videos: list[dict], encoder, w: np.ndarray, seed: int) -> dict:
    from datasets_builders.shapes_grammar import caption
    from mtvr.index import VideoIndex
    from mtvr.metrics import moment_metrics
    from mtvr.moments import to_moments
    from mtvr.video.extract import ClipSpec
    from mtvr.video.segment_extract import SegmentOptions, encode_segments, segment_metadata

    table = oracle_text_tower()
    queries, truths = [], []
    for v in videos:
        for s in v["scenes"]:
            same = [(u["file"], t["start"], t["end"]) for u in videos for t in u["scenes"] if t["clip"] == s["clip"]]
            for lang in QUERY_LANGUAGES:
                queries.append(caption(s["clip"], lang, 1))
                truths.append(same)
    q = np.stack([table[c] / np.linalg.norm(table[c]) for c in queries])
    specs = [ClipSpec(Path(v["file"]).stem, str(v["path"])) for v in videos]
    out = {"queries": len(queries), "languages": list(QUERY_LANGUAGES)}
    for mode in ("window", "shots", "clip"):
        opts = SegmentOptions(mode, 4.0, 2.0)
        index = VideoIndex(w.shape[1])
        t0 = time.perf_counter()
        ids, embs, metas = [], [], []
        for batch in encode_segments(specs, encoder, opts, num_frames=8):
            for sid, spec, seg, f in zip(batch.ids, batch.specs, batch.segments, batch.features):
                ids.append(sid)
                embs.append(embed(w, features_to_vector(f)))
                metas.append(segment_metadata(spec, seg, mode))
        index.add(ids, np.stack(embs), metas)
        seconds = time.perf_counter() - t0
        rows = index.search(q, k=min(len(index), 50))
        for name, merge in ((mode, False), (f"{mode}+merge", True)) if mode == "window" else ((mode, False),):
            preds = []
            for hits in rows:
                hits = to_moments(hits, merge=merge, merge_margin=MERGE_MARGIN)
                preds.append([(h.metadata["file"], h.metadata["start"], h.metadata["end"]) for h in hits[:5]])
            m = moment_metrics(preds, truths, ks=(1, 5))
            out[name] = {
                "segments": len(ids),
                "index_seconds": round(seconds, 2),
                **{k: round(v, 1) for k, v in m.items()},
            }
            print(f"{name:13s} {len(ids):4d} segments  " + "  ".join(f"{k} {v:5.1f}" for k, v in m.items()))
    # shot detection itself: how many true scene boundaries are found within one frame
    from mtvr.video.segment_decode import decode_segments

    found = total = detected = 0
    for v in videos:
        dec = decode_segments(v["path"], "shots", window=1e6, stride=1e6, num_frames=1, size=32)
        for _ in dec:
            pass
        cuts = dec.stats.cuts
        truth = [s["start"] for s in v["scenes"][1:]]
        total += len(truth)
        detected += len(cuts)
        found += sum(any(abs(c - t) <= 1.0 / FPS + 1e-6 for c in cuts) for t in truth)
    out["shot_boundaries"] = {"true": total, "detected": detected, "found_within_1_frame": found}
    print(f"shot boundaries: {found}/{total} found within one frame ({detected} cuts detected)")
    return out


def throughput(videos: list[dict], tmp: Path) -> dict:
    import _util  # noqa: F401  (puts tests/ on the path: the tiny text tower builder)
    from helpers import CORPUS, build_tiny_text_encoder
    from mtvr import Retriever
    from mtvr.config import FrameEncoderConfig
    from mtvr.video.decode import sample_frames
    from mtvr.video.segment_decode import decode_segments
    from mtvr.video.segments import plan_windows

    # the text tower is irrelevant to indexing speed: a tiny random one; the video side is the real pipeline
    text = build_tiny_text_encoder(tmp / "tiny_text", CORPUS, hidden_size=32, vocab_size=400)
    r = Retriever.from_text_encoder(
        str(text),
        device="cpu",
        video_feature_dim=43,
        embed_dim=64,
        aggregator="mean",
        max_frames=12,
        frame_encoder=FrameEncoderConfig(name_or_path="mtvr/shape-stats", num_frames=12, image_size=64),
    )
    total = sum(v["duration"] for v in videos)
    paths = [v["path"] for v in videos]
    t0 = time.perf_counter()
    for p in paths:
        for _ in decode_segments(p, "window", window=4, stride=2, num_frames=12, size=64):
            pass
    decode_once = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = r.add_videos(paths, segments="window", window=4, stride=2)
    indexed = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = 0
    for v in videos:
        for seg in plan_windows(v["duration"], 4, 2):
            sample_frames(v["path"], 12, seg.start, seg.end, size=64, backend="pyav")
            n += 1
    per_window = time.perf_counter() - t0
    out = {
        "video_seconds": round(total, 1),
        "windows": len(res.video_ids),
        "decode_once_video_s_per_s": round(total / decode_once, 1),
        "add_videos_window_video_s_per_s": round(total / indexed, 1),
        "decode_per_window_video_s_per_s": round(total / per_window, 1),
        "add_videos_vs_decode_once": round(decode_once / indexed, 3),
        "decode_per_window_vs_decode_once": round(decode_once / per_window, 3),
    }
    print(
        f"throughput (video s / wall s): decode once {out['decode_once_video_s_per_s']}, add_videos(window) "
        f"{out['add_videos_window_video_s_per_s']} ({out['add_videos_vs_decode_once']}x of decoding once), "
        f"decode per window {out['decode_per_window_video_s_per_s']} ({out['decode_per_window_vs_decode_once']}x)"
    )
    return out


def filter_cost(n: int = 50_000, d: int = 128, nq: int = 50, k: int = 10, seed: int = 0) -> dict:
    import faiss

    from mtvr.filtered_search import exact_over, filtered_search

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((64, d)).astype(np.float32)
    xb = rng.standard_normal((n, 64)).astype(np.float32) @ w
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    q = xb[rng.choice(n, nq, replace=False)] + 0.05 * rng.standard_normal((nq, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    base = faiss.index_factory(d, "HNSW32", faiss.METRIC_INNER_PRODUCT)
    base.hnsw.efConstruction = 80
    index = faiss.IndexIDMap2(base)
    ids = np.arange(n, dtype=np.int64)
    index.add_with_ids(xb, ids)
    rows = []
    for fraction in (0.5, 0.1, 0.03, 0.01, 0.003, 0.001, 0.0003):
        sel = np.sort(rng.choice(n, max(1, int(n * fraction)), replace=False)).astype(np.int64)
        truth_s, truth_i = exact_over(xb[sel], sel, q, k)
        params = faiss.SearchParametersHNSW(sel=faiss.IDSelectorBatch(sel), efSearch=128)
        index.search(q[:2], k, params=params)
        got = np.empty((nq, k), np.int64)
        t0 = time.perf_counter()
        for j in range(nq):  # one query at a time, as a server answers them
            got[j] = index.search(q[j : j + 1], k, params=params)[1][0]
        t_hnsw = (time.perf_counter() - t0) / nq
        t0 = time.perf_counter()
        for j in range(nq):  # what the exact fallback does per query: read back the selected vectors, one product
            exact_over(base.reconstruct_batch(sel), sel, q[j : j + 1], k)
        t_exact = (time.perf_counter() - t0) / nq
        t0 = time.perf_counter()
        ours = [filtered_search(index, q[j : j + 1], k, sel, ef_search=128) for j in range(nq)]
        t_ours = (time.perf_counter() - t0) / nq
        ours_i = np.concatenate([o.ints for o in ours])
        want = min(k, len(sel))
        ours_recall = float(np.mean([len(set(a[a >= 0]) & set(b)) / want for a, b in zip(ours_i, truth_i)]))
        returned = float(np.mean((got >= 0).sum(1)))
        recall = float(np.mean([len(set(a[a >= 0]) & set(b)) / want for a, b in zip(got, truth_i)]))
        rows.append(
            {
                "fraction": fraction,
                "selected": int(len(sel)),
                "hnsw_ms_per_query": round(1e3 * t_hnsw, 3),
                "exact_ms_per_query": round(1e3 * t_exact, 3),
                "hnsw_hits_returned": round(returned, 2),
                "hnsw_recall": round(recall, 3),
                "exact_over_hnsw_time": round(t_exact / t_hnsw, 2),
                "mtvr_strategy": ours[0].strategy,
                "mtvr_ms_per_query": round(1e3 * t_ours, 3),
                "mtvr_recall": round(ours_recall, 3),
            }
        )
        print(
            f"filter {fraction:7.2%} ({len(sel):6d} ids): HNSW {1e3 * t_hnsw:7.3f} ms, {returned:4.1f} hits, "
            f"recall {recall:.3f} | exact over selected {1e3 * t_exact:7.3f} ms ({t_exact / t_hnsw:.2f}x) | "
            f"mtvr ({ours[0].strategy}) {1e3 * t_ours:7.3f} ms, recall {ours_recall:.3f}"
        )
    return {"n": n, "dim": d, "k": k, "queries": nq, "ef_search": 128, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--scenes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    from mtvr.video.shape_encoder import ShapeStatsEncoder

    encoder = ShapeStatsEncoder(image_size=64)
    with tempfile.TemporaryDirectory() as tmp:
        videos = assemble(Path(tmp), args.videos, args.scenes, args.seed)
        print(f"{len(videos)} long videos, {sum(v['duration'] for v in videos):.0f} s, {args.scenes} scenes each")
        w = fit_probe(encoder, args.seed)
        result = {
            "machine": {
                "cpu_count": __import__("os").cpu_count(),
                "python": platform.python_version(),
                "note": "2 shared cores",
            },
            "setup": {"videos": args.videos, "scenes_per_video": args.scenes, "fps": FPS, "seed": args.seed},
            "moments": moment_accuracy(videos, encoder, w, args.seed),
            "throughput": throughput(videos, Path(tmp)),
        }
    result["filter_cost_hnsw"] = filter_cost()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
