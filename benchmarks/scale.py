"""Scale-out benchmark: the Ray engine against the local engine on this machine, in one run.

* feature extraction: clips/s of the local engine (decode worker processes + encoding in the main
  process) and of the Ray Data engine (decode tasks + an encoder actor pool) on the same clips and
  the same CLIP-style encoder, with the ratio (the Ray engine's point is more machines; on one
  machine it must not cost much: target >= 0.8x);
* index building: IVF-PQ built in one process vs as N shards (Ray tasks) merged, from the same trained
  quantizer, with the recall of both against exact search;
* the cost-model inputs of docs/scaling.md: decode clips/s per CPU core, bytes per clip in the store,
  index bytes per vector. `--gpu-encode` measures CLIP ViT-B/32 frames/s on a GPU.

    python benchmarks/scale.py [--clips 48] [--vectors 200000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _util import save


def render_clips(folder: Path, n: int, seconds: float = 6.0, fps: int = 25, size=(320, 240)) -> None:
    from mtvr.video.render import write_video

    rng = np.random.default_rng(0)
    w, h = size
    for i in range(n):
        frames = []
        x0, y0 = rng.integers(0, w - 60), rng.integers(0, h - 60)
        base = rng.integers(0, 255, 3)
        for t in range(int(seconds * fps)):
            f = np.empty((h, w, 3), np.uint8)
            f[:] = base
            x = (x0 + 3 * t) % (w - 60)
            f[y0 : y0 + 60, x : x + 60] = 255 - base
            frames.append(f)
        write_video(folder / f"clip{i:03d}.mp4", frames, fps=fps, codec="mpeg4", options={"g": "50"})


def gpu_encode(batch: int = 256, steps: int = 20) -> dict:
    """CLIP ViT-B/32-sized vision tower (random weights, fp16) frames/s on the GPU."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=224,
        patch_size=32,
        projection_dim=512,
    )
    model = CLIPVisionModelWithProjection(cfg).to("cuda", torch.float16).eval()
    x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=torch.float16)
    with torch.inference_mode():
        for _ in range(3):
            model(pixel_values=x)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            model(pixel_values=x)
        torch.cuda.synchronize()
    rate = batch * steps / (time.perf_counter() - t0)
    # the whole frame encoder of mtvr: uint8 frames -> CLIP preprocessing (PIL, on the CPU) -> fp16 model
    import tempfile

    from transformers import CLIPImageProcessorPil

    from mtvr.video.encoder import CLIPFrameEncoder

    with tempfile.TemporaryDirectory() as tmp:
        model.float().save_pretrained(tmp, safe_serialization=True)
        CLIPImageProcessorPil().save_pretrained(tmp)
        enc = CLIPFrameEncoder(tmp, device="cuda", precision="fp16", batch_size=batch)
        frames = np.random.default_rng(0).integers(0, 255, (batch, 224, 224, 3), dtype=np.uint8)
        enc.encode(frames)
        t0 = time.perf_counter()
        for _ in range(5):
            enc.encode(frames)
        torch.cuda.synchronize()
        full = batch * 5 / (time.perf_counter() - t0)
    return {
        "clip_b32_fp16_frames_per_s": round(rate, 1),
        "frame_encoder_frames_per_s": round(full, 1),
        "gpu": torch.cuda.get_device_name(),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=288)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--vectors", type=int, default=200_000)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--gpu-encode", action="store_true", help="only the GPU encoder throughput")
    args = p.parse_args()
    if args.gpu_encode:
        r = gpu_encode()
        print(
            f"CLIP ViT-B/32 (fp16) on {r['gpu']}: model alone {r['clip_b32_fp16_frames_per_s']} frames/s; "
            f"mtvr CLIPFrameEncoder (PIL preprocessing on 1 process + model) {r['frame_encoder_frames_per_s']} frames/s"
        )
        save("scale_gpu", r)
        return

    import ray

    from helpers import build_tiny_clip_vision
    from mtvr.video.decode import sample_frames
    from mtvr.video.encoder import CLIPFrameEncoder
    from mtvr.video.extract import clips_from_source, extract_features

    results: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="mtvr-scale-"))
    render_clips(tmp / "clips", args.clips)
    clips = clips_from_source(tmp / "clips")
    # decode alone, one core: the cost-model input
    t0 = time.perf_counter()
    for c in clips[:16]:
        sample_frames(c.path, args.frames, size=224)
    decode_rate = 16 / (time.perf_counter() - t0)
    results["decode_clips_per_s_per_core"] = round(decode_rate, 2)
    enc_dir = build_tiny_clip_vision(
        tmp / "enc", image_size=224, patch_size=32, hidden_size=256, projection_dim=512, num_layers=4
    )
    encoder = CLIPFrameEncoder(enc_dir, device="cpu", precision="fp32")

    # each engine extracts the first half of the clips, then all of them into a fresh store: the end-to-end
    # rate includes the engine's fixed start-up; the marginal rate (extra clips / extra time) is its steady state
    half = clips[: len(clips) // 2]

    def run(engine: str, subset: list, name: str) -> float:
        t0 = time.perf_counter()
        kwargs = {"engine": "ray", "clips_per_batch": 16} if engine == "ray" else {"workers": 2}
        s = extract_features(subset, tmp / name, encoder, num_frames=args.frames, progress=False, **kwargs)
        assert s.done == len(subset), s
        return time.perf_counter() - t0

    local_half, local_s = run("local", half, "local-half"), run("local", clips, "local")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ray_half, ray_s = run("ray", half, "ray-half"), run("ray", clips, "ray")
    extra = len(clips) - len(half)
    local_marginal, ray_marginal = extra / (local_s - local_half), extra / (ray_s - ray_half)
    results["extract"] = {
        "clips": args.clips,
        "frames": args.frames,
        "local_clips_per_s": round(args.clips / local_s, 2),
        "ray_clips_per_s": round(args.clips / ray_s, 2),
        "ray_over_local_end_to_end": round(local_s / ray_s, 2),
        "local_steady_clips_per_s": round(local_marginal, 2),
        "ray_steady_clips_per_s": round(ray_marginal, 2),
        "ray_over_local_steady": round(ray_marginal / local_marginal, 2),
        "ray_fixed_startup_s": round(ray_s - args.clips / ray_marginal, 1),
    }
    store_bytes = sum(f.stat().st_size for f in (tmp / "local" / "shards").iterdir())
    results["store_bytes_per_clip"] = round(store_bytes / args.clips)
    print(f"decode + sample {args.frames} frames at 224: {decode_rate:.1f} clips/s on one core")
    e = results["extract"]
    print(
        f"extract {args.clips} clips end to end: local {e['local_clips_per_s']} clips/s, ray {e['ray_clips_per_s']} "
        f"clips/s (ray / local = {e['ray_over_local_end_to_end']}x; 2 cores, same encoder)"
    )
    print(
        f"steady state (marginal rate from {len(half)} to {args.clips} clips): local {e['local_steady_clips_per_s']}, "
        f"ray {e['ray_steady_clips_per_s']} clips/s (ray / local = {e['ray_over_local_steady']}x); "
        f"ray's fixed start-up ~{e['ray_fixed_startup_s']} s"
    )
    print(f"store: {store_bytes / args.clips:.0f} bytes per clip (fp16, T={args.frames}, D=512 + header share)")

    import faiss

    from mtvr.index import _blas_topk
    from mtvr.scale.sharded_index import add_shard, build_sharded_index, train_quantizer

    rng = np.random.default_rng(0)
    d, lat = 512, 64
    w = rng.standard_normal((lat, d)).astype(np.float32)
    x = rng.standard_normal((args.vectors, lat)).astype(np.float32) @ w
    x += 0.1 * rng.standard_normal(x.shape).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    factory = f"IVF{int(4 * np.sqrt(args.vectors))},PQ64"
    t0 = time.perf_counter()
    trained = train_quantizer(x[rng.choice(len(x), min(50_000, len(x)), replace=False)], factory)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = faiss.deserialize_index(np.frombuffer(add_shard(trained, np.arange(len(x)), x), dtype=np.uint8))
    single_s = time.perf_counter() - t0
    ids = [str(i) for i in range(len(x))]
    t0 = time.perf_counter()
    merged = build_sharded_index(
        ids, x, tmp / "index", factory=factory, num_shards=args.shards, engine="ray", trained=trained, nprobe=64
    )
    sharded_s = time.perf_counter() - t0
    q = x[rng.choice(len(x), 200, replace=False)] + 0.02 * rng.standard_normal((200, d)).astype(np.float32)
    _, truth = _blas_topk(x, np.arange(len(x)), q, 10)
    params = faiss.SearchParametersIVF(nprobe=64)
    _, got = single.search(q, 10, params=params)
    _, got_m = merged.faiss_index.search(q, 10, params=params)
    rec = lambda g: float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth.tolist(), g.tolist())]))  # noqa: E731
    index_bytes = (tmp / "index" / "index.faiss").stat().st_size
    results["index"] = {
        "vectors": args.vectors,
        "factory": factory,
        "train_s": round(train_s, 1),
        "single_add_s": round(single_s, 1),
        "sharded_add_merge_s": round(sharded_s, 1),
        "shards": args.shards,
        "recall10_single": round(rec(got), 3),
        "recall10_sharded": round(rec(got_m), 3),
        "bytes_per_vector": round(index_bytes / args.vectors, 1),
    }
    print(
        f"IVF-PQ {factory} on {args.vectors} x {d}: train {train_s:.1f} s once; add single process {single_s:.1f} s, "
        f"{args.shards} Ray shards + merge {sharded_s:.1f} s; recall@10 (nprobe 64) single {rec(got):.3f} / "
        f"sharded {rec(got_m):.3f}; {index_bytes / args.vectors:.1f} bytes per vector on disk"
    )
    ray.shutdown()
    save("scale", results)


if __name__ == "__main__":
    main()
