"""`mtvr demo` / `make demo`: the whole product end to end, offline, on 2 CPU cores.

1. build Multi-Shapes (rendered MP4 clips; captions in 9 languages, Spanish through apertium);
2. extract frame features with the video pipeline (decord, worker processes, feature store);
3. train an English teacher (the real all-MiniLM-L6-v2 text encoder) and a multilingual student twice
   with the same budget and seed: translate-train baseline and C2KD from the teacher;
4. per-language test table for the teacher (English), the baseline and C2KD;
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
from typing import Any

import numpy as np

from .grammar import LANGUAGES as GRAMMAR_LANGUAGES

LANGUAGES = [*GRAMMAR_LANGUAGES, "es"]  # the grammar languages, and Spanish through apertium


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

    path = resources.files("mtvr.recipes") / filename
    if not path.is_file():
        raise FileNotFoundError(f"recipe {filename} is not shipped with this mtvr installation")
    return Path(str(path))


def _recipe(name: str, out: Path, small: bool, seed: int) -> Any:
    from ..packaged import packaged_minilm_path
    from ..train import load_recipe

    minilm = str(packaged_minilm_path())
    over = {
        "data.dataset": str(out / "dataset"),
        "data.features": str(out / "features"),
        "output_dir": str(out / "runs" / name),
        "seed": seed,
        "student.text_encoder": minilm,
    }
    recipe = load_recipe(recipe_path(f"demo-shapes-{name}.yaml"), overrides=over)
    for t in recipe.teachers:
        t.text_encoder = minilm
        if small:
            t.epochs = 8
    if small:
        recipe.optim.epochs = 6
    return recipe


def _table(rows: dict[str, dict[str, dict]], chance: float) -> str:
    from ..metrics import METRIC_KEYS

    lines = ["| language | model | " + " | ".join(METRIC_KEYS) + " |", "|---|---|" + "---|" * len(METRIC_KEYS)]
    for lang in LANGUAGES:
        for model, res in rows.items():
            if lang in res:
                m = res[lang]["t2v"]
                lines.append(f"| {lang} | {model} | " + " | ".join(f"{m[k]:.1f}" for k in METRIC_KEYS) + " |")
    lines.append(f"\nchance R@1 = {chance:.1f}")
    return "\n".join(lines)


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
    out: Path, baseline: dict, c2kd: dict, teacher: dict, queries: list[dict], chance: float, times: dict[str, float]
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(LANGUAGES))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.bar(x - 0.2, [baseline[l]["t2v"]["R@1"] for l in LANGUAGES], 0.4, label="translate-train baseline")
    ax.bar(x + 0.2, [c2kd[l]["t2v"]["R@1"] for l in LANGUAGES], 0.4, label="C2KD")
    ax.axhline(teacher["en"]["t2v"]["R@1"], color="gray", ls="--", lw=1, label="English teacher (en)")
    ax.axhline(chance, color="red", ls=":", lw=1, label="chance")
    ax.set_xticks(x, LANGUAGES)
    ax.set_ylabel("test R@1 (%)")
    ax.set_title("Multi-Shapes text→video retrieval, per query language")
    ax.legend(fontsize=8)
    chart = _png_b64(fig)
    plt.close(fig)
    parts = [
        f"<h1>mtvr demo report</h1><p>Multi-Shapes test split; chance R@1 = {chance:.1f}%.</p>",
        f'<img src="data:image/png;base64,{chart}" alt="R@1 per language"/>',
        "<h2>Per-language results</h2>",
        "<table border=1 cellpadding=4><tr><th>language</th><th>baseline R@1</th><th>C2KD R@1</th>"
        "<th>C2KD − baseline</th></tr>",
    ]
    for l in LANGUAGES:
        b, c = baseline[l]["t2v"]["R@1"], c2kd[l]["t2v"]["R@1"]
        parts.append(f"<tr><td>{l}</td><td>{b:.1f}</td><td>{c:.1f}</td><td>{c - b:+.1f}</td></tr>")
    parts.append("</table><h2>Queries</h2>")
    for q in queries:
        parts.append(f"<h3>[{q['language']}] {q['query']}</h3><p>target: {q['target']}</p><ol>")
        for h in q["hits"]:
            mark = " ✔" if h["video_id"] == q["target"] else ""
            parts.append(
                f'<li>{h["video_id"]} ({h["score"]:.3f}){mark}<br/><img src="data:image/png;base64,{h["thumb"]}"/></li>'
            )
        parts.append("</ol>")
    parts.append("<h2>Timings</h2><ul>" + "".join(f"<li>{k}: {v:.1f} s</li>" for k, v in times.items()) + "</ul>")
    path = out / "report.html"
    path.write_text(
        "<!doctype html><meta charset=utf-8><title>mtvr demo</title><body style='font-family:sans-serif'>"
        + "".join(parts)
        + "</body>",
        encoding="utf-8",
    )
    return path


def run_demo(out: str | Path = "demo_output", small: bool = False, seed: int = 0, seeds: int = 1) -> int:
    import torch

    from ..dataset_publishing import build_dataset
    from ..evaluation import evaluate_clipset
    from ..retriever import Retriever
    from ..train import train
    from ..train.data import load_clipset
    from ..video import clips_from_source, extract_features
    from ..video.shape_encoder import ShapeStatsEncoder
    from .grammar import caption

    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    stage = Stage()
    num_clips = 180 if small else 360
    bar = 2.0 if small else 3.0  # "far above chance": R@1 >= bar x chance in every language
    with stage(1, f"build Multi-Shapes: {num_clips} rendered clips, 9 languages (es through apertium)"):
        meta = build_dataset(
            "multi_shapes",
            out / "dataset",
            video_dir=str(out / "videos"),
            num_clips=num_clips,
            seed=seed,
            translation_cache=str(out / "translations.sqlite"),
            language_configs=False,
        )
        print(
            f"      splits {meta['counts']['all']}; es round-trip chrF "
            f"{meta['languages_report']['es'].get('chrf', '-')} (apertium)"
        )
    with stage(2, "extract frame features (decord, 2 worker processes, feature store)"):
        summary = extract_features(
            clips_from_source(out / "dataset"),
            out / "features",
            ShapeStatsEncoder(),
            num_frames=8,
            workers=2,
            progress=False,
        )
        print(f"      {summary}")
    recipes = {name: _recipe(name, out, small, seed) for name in ("baseline", "c2kd")}
    with stage(3, "train the English teacher and the C2KD student"):
        c2kd_run = train(recipes["c2kd"], resume=True, progress=False)
    with stage(4, "train the translate-train baseline (same student, budget and seed)"):
        base_run = train(recipes["baseline"], resume=True, progress=False)
    with stage(5, "per-language test results"):
        test = load_clipset(str(out / "dataset"), "all", "test", out / "features", LANGUAGES)
        teacher = Retriever.from_pretrained(c2kd_run.output_dir / "teachers" / "en-minilm" / "best")
        t_rep = evaluate_clipset(teacher, test, ["en"]).results
        b_rep = evaluate_clipset(Retriever.from_pretrained(base_run.best_dir), test, LANGUAGES).results
        c_rep = evaluate_clipset(Retriever.from_pretrained(c2kd_run.best_dir), test, LANGUAGES).results
        chance = 100.0 / len(test)
        print(_table({"teacher": t_rep, "baseline": b_rep, "C2KD": c_rep}, chance))
        wins = [l for l in LANGUAGES if c_rep[l]["t2v"]["R@1"] > b_rep[l]["t2v"]["R@1"]]
        ties = [l for l in LANGUAGES if c_rep[l]["t2v"]["R@1"] == b_rep[l]["t2v"]["R@1"]]
        print(
            f"\n      C2KD beats the baseline (test R@1) in {len(wins)}/9 languages: {', '.join(wins) or 'none'}"
            + (f"; ties: {', '.join(ties)}" if ties else "")
            + f"; mean R@1 baseline {np.mean([b_rep[l]['t2v']['R@1'] for l in LANGUAGES]):.1f}"
            f" vs C2KD {np.mean([c_rep[l]['t2v']['R@1'] for l in LANGUAGES]):.1f}"
        )
        low = [l for l in LANGUAGES if c_rep[l]["t2v"]["R@1"] < bar * chance]
        if low:
            raise RuntimeError(f"C2KD test R@1 is under {bar:g}x chance in {low}: the demo failed")
        (out / "results.json").write_text(
            json.dumps({"teacher": t_rep, "baseline": b_rep, "c2kd": c_rep, "chance_R@1": chance}, indent=2)
        )
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
        from .grammar import Clip

        rng = np.random.default_rng(seed)
        queries = []
        for lang, cid in zip(("de", "zh", "es"), rng.choice(sorted(rows), 3, replace=False)):
            text = (
                rows[cid]["captions"][lang]
                if lang == "es"
                else _recaption(rows[cid]["captions"]["en"], lang, Clip, caption)
            )
            hits = retriever.search(text, k=3)
            print(f"      [{lang}] {text}   (target {cid})")
            for h in hits:
                print(
                    f"         {h.rank}. {h.video_id}  score {h.score:.3f}{'  <- target' if h.video_id == cid else ''}"
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
                            "thumb": _thumb_b64(str(out / "videos" / f"{h.video_id}.mp4")),
                        }
                        for h in hits
                    ],
                }
            )
    report = write_report(out, b_rep, c_rep, t_rep, queries, chance, stage.times)
    total = time.perf_counter() - stage.t0
    print(f"\nreport: {report}\ntotal {total:.0f} s")
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


def _rows(dataset: Path, split: str) -> list[dict]:
    from ..train.data import load_rows

    return load_rows(str(dataset), "all", split)


def _recaption(english: str, lang: str, clip_cls, caption_fn) -> str:
    """The caption in ``lang`` of the clip an English caption describes, with the other template."""
    from .grammar import BACKGROUNDS, COLOURS, MOTIONS, SHAPES

    for clip in (clip_cls(s, c, m, b) for s in SHAPES for c in COLOURS for m in MOTIONS for b in BACKGROUNDS):
        for t in (0, 1):
            if caption_fn(clip, "en", t) == english:
                return caption_fn(clip, lang, 1 - t)
    raise ValueError(f"not a Multi-Shapes caption: {english!r}")
