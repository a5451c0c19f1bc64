"""The demo's stage 5: per-language test R@1 of the teacher and both students, with bootstrap intervals, the
paired C2KD − baseline difference, the summary over seeds, and ``results.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DemoError
from .data import LANGUAGES, TRANSLATION_NOISE
from .stage import Stage
from .training import training_summary


def table(results: dict[str, dict[str, dict]], diffs: dict[str, dict], chance: float) -> str:
    """The per-language results as a Markdown table."""
    lines = [
        "| language | teacher R@1 | baseline R@1 [95% CI] | C2KD R@1 [95% CI] | C2KD − baseline [95% CI] | significant |",
        "|---|---|---|---|---|---|",
    ]
    for lang in LANGUAGES:
        b, c, d = results["baseline"][lang], results["c2kd"][lang], diffs[lang]
        t = results["teacher"].get(lang)
        lines.append(f"| {lang} | {t['R@1']:.1f} | " if t else f"| {lang} | – | ")
        lines[-1] += (
            f"{b['R@1']:.1f} [{b['ci_low']:.1f}, {b['ci_high']:.1f}] | {c['R@1']:.1f} [{c['ci_low']:.1f}, "
            f"{c['ci_high']:.1f}] | {d['diff']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}] | "
            f"{'yes' if d['significant'] else 'no'} |"
        )
    lines.append(f"\nchance R@1 = {chance:.2f}% (several test clips can match a caption; see mtvr/demo/stats.py)")
    return "\n".join(lines)


def frozen_as_trained(retriever: Any, spec: Any) -> Any:
    """A retriever whose text tower was trained frozen (``trainable_layers: 0``) still computes the pretrained
    tower's outputs: share the training's per-text cache (the two students read the same test captions once)."""
    if spec.trainable_layers == 0:
        c = retriever.config
        retriever.model.freeze_text_layers(0, shared_cache_key=f"{spec.text_encoder}|{c.text_tower}|{c.text_prompt}")
    return retriever


def evaluate(retriever: Any, test: Any, languages: list[str], seed: int) -> dict[str, dict]:
    """Per language: R@1 / R@5 / MdR over the test captions (best clip of the caption's scene), with a
    bootstrap CI of R@1, and the per-query hits that paired comparisons need."""
    from ..metrics import text_to_video_ranks
    from .stats import bootstrap_ci

    videos = retriever.encode_video_features(list(test.features), num_frames=test.mask.sum(1).tolist())
    out = {}
    for lang in languages:
        texts = [caps[0] for caps in test.captions[lang]]
        ranks = text_to_video_ranks(retriever.encode_text(texts) @ videos.T, video_groups=test.video_groups)
        hits = 100.0 * (ranks == 1)
        lo, hi = bootstrap_ci(hits, seed=seed)
        out[lang] = {
            "R@1": float(hits.mean()),
            "ci_low": lo,
            "ci_high": hi,
            "R@5": float(100.0 * (ranks <= 5).mean()),
            "MdR": float(np.median(ranks)),
            "hits": hits,
        }
    return out


def without_hits(results: dict) -> dict:
    """Results without the per-query hit vectors (for results.json)."""
    return {m: {l: {k: v for k, v in d.items() if k != "hits"} for l, d in r.items()} for m, r in results.items()}


def seed_summary(per_seed: dict[int, dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """Mean and standard deviation over seeds of R@1 per model and of the C2KD − baseline difference."""
    out: dict[str, dict[str, tuple[float, float]]] = {"baseline": {}, "c2kd": {}, "diff": {}}
    for lang in LANGUAGES:
        b = np.array([r["baseline"][lang]["R@1"] for r in per_seed.values()])
        c = np.array([r["c2kd"][lang]["R@1"] for r in per_seed.values()])
        for name, v in (("baseline", b), ("c2kd", c), ("diff", c - b)):
            out[name][lang] = (float(v.mean()), float(v.std(ddof=1)))
    return out


def test_results(out: Path, runs: dict[int, dict[str, Any]], seed: int, stage: Stage) -> dict[str, Any]:
    """Stage 5 (inside its ``with stage(...)``): evaluate every seed's teacher and students on the test split,
    print the comparison, write ``results.json``; returns ``main`` (the first seed's results), ``diffs``,
    ``chance`` and ``seed_summary`` for the report."""
    from ..clipset import load_clipset
    from ..retriever import Retriever
    from .stats import chance_r1, paired_difference

    recipes = runs[seed]["recipes"]
    test = load_clipset(str(out / "dataset"), "all", "test", out / "features", LANGUAGES)
    if test.video_groups is None:
        raise DemoError(f"{out / 'dataset'} has no scene column: rebuild it with this mtvr version")
    chance = chance_r1(test.video_groups, test.video_groups)
    per_seed = {}
    t_spec = recipes["c2kd"].teachers[0]
    for s, run in runs.items():
        teacher = Retriever.from_pretrained(run["c2kd"].teachers[t_spec.name].folder)
        per_seed[s] = {
            "teacher": evaluate(frozen_as_trained(teacher, t_spec), test, ["en"], s),
            **{
                m: evaluate(
                    frozen_as_trained(Retriever.from_pretrained(run[m].export_dir), recipes[m].student),
                    test,
                    LANGUAGES,
                    s,
                )
                for m in ("baseline", "c2kd")
            },
        }
    main = per_seed[seed]
    diffs = {l: paired_difference(main["baseline"][l]["hits"], main["c2kd"][l]["hits"], seed=seed) for l in LANGUAGES}
    print(table(main, diffs, chance))
    others = [l for l in LANGUAGES if l != "en"]
    t_en = main["teacher"]["en"]
    print()
    stage.say(
        f"premise: the English teacher reaches test R@1 {t_en['R@1']:.1f} "
        f"[{t_en['ci_low']:.1f}, {t_en['ci_high']:.1f}] on English; the students on the 8 other languages: "
        f"baseline {np.mean([main['baseline'][l]['R@1'] for l in others]):.1f}, "
        f"C2KD {np.mean([main['c2kd'][l]['R@1'] for l in others]):.1f} (mean R@1)"
    )
    better = [l for l in LANGUAGES if diffs[l]["significant"] and diffs[l]["diff"] > 0]
    worse = [l for l in LANGUAGES if diffs[l]["significant"] and diffs[l]["diff"] < 0]
    stage.say(
        f"C2KD beats the baseline (test R@1) significantly in {len(better)}/{len(LANGUAGES)} languages: "
        f"{', '.join(better) or 'none'}; significantly worse in {len(worse)}: {', '.join(worse) or 'none'}; "
        f"no significant difference in the others. Mean R@1 baseline "
        f"{np.mean([main['baseline'][l]['R@1'] for l in LANGUAGES]):.1f} vs C2KD "
        f"{np.mean([main['c2kd'][l]['R@1'] for l in LANGUAGES]):.1f}"
    )
    ratios = {l: main["baseline"][l]["R@1"] / max(main["baseline"]["en"]["R@1"], 1e-9) for l in LANGUAGES}
    short = [l for l in LANGUAGES if ratios[l] < 0.8]
    stage.say(
        "the multilingual student reads every language: baseline test R@1 relative to its English R@1 "
        + ", ".join(f"{l} {ratios[l]:.2f}" for l in others)
        + (f"; UNDER 0.8 in {', '.join(short)}" if short else " (all >= 0.8)")
    )
    summary = seed_summary(per_seed) if len(per_seed) > 1 else None
    if summary:
        stage.say(f"over {len(per_seed)} seeds (mean ± std of test R@1):")
        for l in LANGUAGES:
            b, c, d = summary["baseline"][l], summary["c2kd"][l], summary["diff"][l]
            stage.say(
                f"  {l}: baseline {b[0]:.1f} ± {b[1]:.1f}, C2KD {c[0]:.1f} ± {c[1]:.1f}, "
                f"difference {d[0]:+.1f} ± {d[1]:.1f}"
            )
    low = [l for l in LANGUAGES if main["c2kd"][l]["R@1"] < 2 * chance]
    if low:
        raise DemoError(f"C2KD test R@1 is under 2x chance in {low}: the demo failed")
    (out / "results.json").write_text(
        json.dumps(
            {
                **without_hits(main),
                "difference_c2kd_minus_baseline": diffs,
                "chance_R@1": chance,
                "test_clips": len(test),
                "queries_per_language": len(test),
                "seeds": list(runs),
                "per_seed": {str(s): without_hits(r) for s, r in per_seed.items()},
                "seed_summary": summary,
                "translation_noise": TRANSLATION_NOISE,
                "training": {m: training_summary(runs[seed][m]) for m in ("baseline", "c2kd")},
                "teacher_validation_R@1_per_seed": {str(k): r["teacher_val"] for k, r in runs.items()},
                "baseline_R@1_relative_to_english": ratios,
                "towers": {
                    "student": recipes["c2kd"].student.text_encoder,
                    "teachers": [t.text_encoder for t in recipes["c2kd"].teachers],
                },
                "stage_seconds": dict(stage.times),
            },
            indent=2,
        )
    )
    return {"main": main, "diffs": diffs, "chance": chance, "seed_summary": summary}
