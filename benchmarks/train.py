"""Training benchmark (issue: distillation). Student samples/s with precomputed frame features, batch 64, CPU.

* a MiniLM-size student (the real all-MiniLM-L6-v2) and a LaBSE-size random config (BERT-base, 501k vocab);
* the overhead of each distillation loss (C2KD, TeachText, TeachCLIP, MCKD) against the contrastive base,
  measured in the same run (teacher embeddings cached, as the trainer does);
* on a GPU (when there is one): the same in bf16 with peak memory.

    python benchmarks/train.py
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

    caps = [r["sentence"] for r in csv.DictReader(open(CSV, newline="", encoding="utf-8"))]
    feats = torch.randn(n, t, d)
    return ClipSet([str(i) for i in range(n)], feats, torch.ones(n, t, dtype=torch.bool),
                   {"en": [[caps[i % len(caps)]] for i in range(n)]})


def bench(encoder_dir: str, loss: str, clipset, steps: int, batch: int, precision: str, aggregator: str = "mean") -> float:
    from transformers import AutoTokenizer

    from mtvr.distill import build_loss
    from mtvr.modeling import VideoTextModel
    from mtvr.train.recipe import Recipe
    from mtvr.train.trainer import TeacherCache, Trainer

    torch.manual_seed(0)
    model = VideoTextModel.from_text_encoder(encoder_dir, video_feature_dim=clipset.features.shape[-1], embed_dim=256,
                                             aggregator=aggregator, max_frames=clipset.features.shape[1])
    recipe = Recipe(mixed_precision=precision)
    recipe.optim.batch_size = batch
    n, e = len(clipset), 256
    teachers = TeacherCache([[torch.nn.functional.normalize(torch.randn(1, e), dim=-1) for _ in range(n)]],
                            torch.nn.functional.normalize(torch.randn(1, n, e), dim=-1),
                            torch.nn.functional.normalize(torch.randn(1, n, clipset.features.shape[1], e), dim=-1)
                            if loss == "teachclip" else None)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(recipe, model, AutoTokenizer.from_pretrained(encoder_dir), build_loss(loss), ["en"], Path(tmp),
                          1, 1e-4, teachers=None if loss == "contrastive" else teachers, progress=False)
        sent = np.zeros(n, dtype=int)
        batches = trainer._batches(n, 0)

        def step(idx):
            with trainer.accelerator.autocast():
                out, _ = trainer.loss_fn(trainer._step_inputs(clipset, idx, sent))
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
        return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mtvr.tiny import packaged_minilm_path

    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--labse-steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    precision = "bf16" if torch.cuda.is_available() else "no"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device}, precision {precision}, torch threads {torch.get_num_threads()}")
    clipset = make_clipset(args.batch * 4, 12, 512)
    minilm = str(packaged_minilm_path())
    results: dict = {"batch": args.batch, "device": device, "precision": precision, "minilm": {}}
    base = None
    for loss, agg in (("contrastive", "mean"), ("c2kd", "mean"), ("teachtext", "mean"), ("teachclip", "afa"), ("mckd", "mean")):
        rate = bench(minilm, loss, clipset, args.steps, args.batch, precision, agg)
        base = base or rate
        results["minilm"][loss] = {"samples_per_s": round(rate, 1), "overhead_vs_contrastive": round(base / rate - 1, 4)}
        print(f"MiniLM-L6 student, {loss:11s} ({agg:4s}): {rate:6.1f} samples/s  "
              f"overhead vs contrastive {100 * (base / rate - 1):+.1f}%")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = BertConfig(vocab_size=501153, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, max_position_embeddings=512)
        torch.manual_seed(0)
        BertModel(cfg).save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(minilm).save_pretrained(tmp)
        rate = bench(tmp, "c2kd", clipset, args.labse_steps, args.batch, precision)
        results["labse_size_c2kd_samples_per_s"] = round(rate, 1)
        print(f"LaBSE-size random student (BERT-base, 501k vocab), c2kd: {rate:.1f} samples/s")
    if torch.cuda.is_available():
        results["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        print(f"peak GPU memory {results['peak_memory_gb']} GiB")
    save("train", results)


if __name__ == "__main__":
    main()
