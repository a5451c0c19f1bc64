"""Training benchmark. Student samples/s with precomputed frame features, batch 64.

* a MiniLM-size student (the real all-MiniLM-L6-v2) and a LaBSE-size random config (BERT-base, 501k vocab);
* the overhead of each distillation loss (C2KD, TeachText, TeachCLIP, MCKD) against the contrastive base,
  measured in the same run (teacher embeddings cached, as the trainer does);
* on a GPU (when there is one): the MSR-VTT-size recipe (LaBSE-size student, seqTransf, 12 x 512 CLIP
  features, 9 languages cut to 3 per step, batch 64) in bf16 for a few hundred steps, with peak memory,
  against the same in fp32 in the same run.

    python benchmarks/train.py                       # CPU: a few steps
    python benchmarks/train.py --labse-steps 300     # GPU
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _util import save

CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "msrvtt" / "MSRVTT_JSFUSION_test.csv"


def make_clipset(n: int, t: int, d: int):
    from mtvr.train.data import ClipSet

    if CSV.is_file():
        caps = [r["sentence"] for r in csv.DictReader(open(CSV, newline="", encoding="utf-8"))]
    else:  # a machine without ../shared (e.g. a lent GPU): captions of the same length range
        rng = np.random.default_rng(0)
        words = "a man woman person is cooking playing singing talking about the car dog food song stage".split()
        caps = [" ".join(rng.choice(words, int(rng.integers(6, 20)))) for _ in range(1000)]
    feats = torch.randn(n, t, d)
    langs = ["en", "de", "fr", "cs", "zh", "ru", "vi", "sw", "es"]  # same captions: cost, not quality
    return ClipSet(
        [str(i) for i in range(n)],
        feats,
        torch.ones(n, t, dtype=torch.bool),
        {l: [[caps[i % len(caps)]] for i in range(n)] for l in langs},
    )


def bench(
    encoder_dir: str, loss: str, clipset, steps: int, batch: int, precision: str, aggregator: str = "mean"
) -> tuple[float, float]:
    """(samples/s, peak GPU memory in GiB or 0) over ``steps`` optimizer steps after one warm-up step."""
    from accelerate.state import AcceleratorState
    from transformers import AutoTokenizer

    from mtvr.distill import build_loss
    from mtvr.modeling import VideoTextModel
    from mtvr.train.config import TrainingConfig
    from mtvr.train.trainer import TeacherCache, Trainer

    AcceleratorState._reset_state(True)  # accelerate's state is a singleton: each precision needs a fresh one
    torch.manual_seed(0)
    model = VideoTextModel.from_text_encoder(
        encoder_dir,
        video_feature_dim=clipset.features.shape[-1],
        embed_dim=256,
        aggregator=aggregator,
        max_frames=clipset.features.shape[1],
    )
    config = TrainingConfig(epochs=1, lr=1e-4, batch_size=batch, mixed_precision=precision)
    n, e = len(clipset), 256
    teachers = TeacherCache(
        [[torch.nn.functional.normalize(torch.randn(1, e), dim=-1) for _ in range(n)]],
        torch.nn.functional.normalize(torch.randn(1, n, e), dim=-1),
        torch.nn.functional.normalize(torch.randn(1, n, clipset.features.shape[1], e), dim=-1)
        if loss == "teachclip"
        else None,
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            model,
            AutoTokenizer.from_pretrained(encoder_dir),
            build_loss(loss),
            ["en"],
            Path(tmp),
            config,
            teachers=None if loss == "contrastive" else teachers,
            progress=False,
        )
        sent = np.zeros(n, dtype=int)
        order = np.random.default_rng(0).permutation(n)
        batches = [order[i : i + batch] for i in range(0, n - batch + 1, batch)]
        langs = list(clipset.captions)

        def step(idx):
            with trainer.accelerator.autocast():
                out, _ = trainer.loss_fn(trainer._step_inputs(clipset, idx, sent, langs[:3]))
            trainer.accelerator.backward(out)
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)

        step(batches[0])  # warm-up
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for i in range(steps):
            step(batches[(i + 1) % len(batches)])
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        rate = batch * steps / (time.perf_counter() - t0)
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
        del trainer, model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return rate, peak


def main() -> None:
    from transformers import BertConfig, BertModel

    from mtvr.packaged import packaged_minilm_path

    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--labse-steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--skip-minilm", action="store_true", help="only the LaBSE-size student (no packaged MiniLM)")
    args = p.parse_args()
    precision = "bf16" if torch.cuda.is_available() else "no"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device}, precision {precision}, torch threads {torch.get_num_threads()}")
    clipset = make_clipset(args.batch * 4, 12, 512)
    results: dict = {"batch": args.batch, "device": device, "precision": precision, "minilm": {}}
    base = None
    for loss, agg in (
        []
        if args.skip_minilm
        else (
            ("contrastive", "mean"),
            ("c2kd", "mean"),
            ("teachtext", "mean"),
            ("teachclip", "seqtransf+afa"),
            ("mckd", "mean"),
        )
    ):
        rate, _ = bench(str(packaged_minilm_path()), loss, clipset, args.steps, args.batch, precision, agg)
        base = base or rate
        results["minilm"][loss] = {
            "samples_per_s": round(rate, 1),
            "overhead_vs_contrastive": round(base / rate - 1, 4),
        }
        print(
            f"MiniLM-L6 student, {loss:11s} ({agg:13s}): {rate:6.1f} samples/s  "
            f"overhead vs contrastive {100 * (base / rate - 1):+.1f}%"
        )
    with tempfile.TemporaryDirectory() as tmp:
        cfg = BertConfig(
            vocab_size=501153,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=512,
        )
        torch.manual_seed(0)
        BertModel(cfg).save_pretrained(tmp, safe_serialization=True)
        from helpers import train_wordpiece_tokenizer  # tests/helpers.py: a WordPiece vocabulary, offline

        train_wordpiece_tokenizer([c[0] for c in clipset.captions["en"]], vocab_size=4000).save_pretrained(tmp)
        big = make_clipset(args.batch * (args.labse_steps + 1), 12, 512)
        for prec in [precision, "no"] if precision != "no" else ["no"]:
            rate, peak = bench(tmp, "c2kd", big, args.labse_steps, args.batch, prec, "seqtransf")
            results[f"labse_size_c2kd_{prec}"] = {
                "samples_per_s": round(rate, 1),
                "peak_memory_gib": round(peak, 2),
                "steps": args.labse_steps,
            }
            print(
                f"LaBSE-size random student (BERT-base, 501k vocab, seqTransf), c2kd, {prec}: {rate:.1f} samples/s"
                + (f", peak GPU memory {peak:.2f} GiB" if peak else "")
                + f" ({args.labse_steps} steps)"
            )
        if precision != "no":
            ratio = (
                results[f"labse_size_c2kd_{precision}"]["samples_per_s"]
                / results["labse_size_c2kd_no"]["samples_per_s"]
            )
            results["bf16_over_fp32"] = round(ratio, 2)
            print(f"{precision} / fp32 throughput: {ratio:.2f}x")
    save("train", results)


if __name__ == "__main__":
    main()
