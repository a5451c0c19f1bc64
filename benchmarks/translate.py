"""Translation benchmark (issue: dataset builders), on the 1,000 real MSR-VTT 1k-A captions.

* apertium en->es sentences/s (real rule-based MT);
* transformers vs ctranslate2 (int8) on the same random-weight Marian model (Marian-base size, tokenizer
  trained on the captions), greedy, generation length fixed at 16 tokens;
* a cold dataset build (empty translation cache) against a rebuild with a warm cache.

    python benchmarks/translate.py
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import time
from pathlib import Path

from _util import save

CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "msrvtt" / "MSRVTT_JSFUSION_test.csv"


def main() -> None:
    from helpers import build_tiny_marian
    from mtvr.dataset_publishing import build_dataset
    from mtvr.translate import build_translator

    p = argparse.ArgumentParser()
    p.add_argument("--csv", default=str(CSV))
    p.add_argument("--neural-sentences", type=int, default=200)
    args = p.parse_args()
    captions = [r["sentence"] for r in csv.DictReader(open(args.csv, newline="", encoding="utf-8"))]
    results: dict = {"captions": len(captions)}
    tmp = Path(tempfile.mkdtemp())
    try:
        ap = build_translator("apertium")
        t0 = time.perf_counter()
        out = ap.translate(captions, "en", "es")
        dt = time.perf_counter() - t0
        results["apertium_sentences_per_s"] = round(len(out) / dt, 1)
        print(f"apertium en->es: {len(out)} sentences in {dt:.2f} s = {len(out) / dt:.0f} sentences/s")

        marian = build_tiny_marian(tmp / "marian", captions, d_model=512, layers=6, vocab_size=8000)
        opts = {
            "models": {"en-de": str(marian)},
            "num_beams": 1,
            "max_new_tokens": 16,
            "min_new_tokens": 16,
            "batch_size": 32,
        }
        sents = captions[: args.neural_sentences]
        rates = {}
        for name, extra in (
            ("transformers", {}),
            ("ctranslate2", {"converted_dir": str(tmp / "ct2"), "compute_type": "int8"}),
        ):
            tr = build_translator(name, **opts, **extra)
            tr.translate(sents[:8], "en", "de")  # load / convert once
            t0 = time.perf_counter()
            tr.translate(sents, "en", "de")
            rates[name] = len(sents) / (time.perf_counter() - t0)
        results["marian_base_random"] = {k: round(v, 1) for k, v in rates.items()}
        results["ctranslate2_speedup"] = round(rates["ctranslate2"] / rates["transformers"], 2)
        print(
            f"Marian-base (random weights, 16 tokens, greedy): transformers {rates['transformers']:.1f} sent/s, "
            f"ctranslate2 int8 {rates['ctranslate2']:.1f} sent/s -> {results['ctranslate2_speedup']:.2f}x"
        )

        times = {}
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            meta = build_dataset(
                "multi_msrvtt",
                tmp / f"out_{label}",
                config_name="1k-A",
                data_dir=str(Path(args.csv).parent),
                splits=["test"],
                languages=["es"],
                backend="apertium",
                translation_cache=str(tmp / "cache.sqlite"),
            )
            times[label] = time.perf_counter() - t0
            print(
                f"{label} build (en->es + back-translation, 1,000 captions): {times[label]:.2f} s, "
                f"{meta['translated']} sentences sent to the backend"
            )
        results["build_seconds"] = {k: round(v, 2) for k, v in times.items()}
        results["warm_cache_speedup"] = round(times["cold"] / times["warm"], 2)
        print(f"rebuild with a warm cache: {results['warm_cache_speedup']:.2f}x faster than cold")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    save("translate", results)


if __name__ == "__main__":
    main()
