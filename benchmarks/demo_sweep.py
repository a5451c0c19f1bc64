"""The demo's hyper-parameters, chosen on the **validation** split only (the test split is never read).

Builds the full-size demo data once (``OUT/dataset``, ``OUT/features``: seed 0, as ``make demo``), then trains
each trial of a stage until early stopping on validation mean R@1 (or ``--max-epochs``) and records its best
validation mean R@1, best epoch, epochs trained and seconds in ``OUT/sweep.json``; prints a Markdown table.
An interrupted sweep resumes: finished trials are skipped.

Stages (run in this order; each later stage starts from what the earlier stage chose, passed with ``--set``):

* ``towers`` (the real towers: frozen multilingual-e5-small student): centring its outputs, heads learning rate
  and per-epoch decay, on the baseline;
* ``teacher``: the English all-mpnet-base-v2 teacher's heads learning rate and centring, trained as the C2KD
  recipe trains it (English captions only); ``--set teacher.KEY=VALUE`` then sets the C2KD recipe's teacher;
* ``optim`` (the earlier MiniLM demo): the optimiser settings that the translate-train baseline and C2KD share (head / encoder
  learning rate, per-epoch decay), on the baseline; the budget of ``make demo`` (10 minutes on 2 cores) is
  a constraint, so a setting whose best epoch comes too late to fit is not eligible.
* ``teacher_patience``: the teacher's early-stopping patience (2, 4, 6) over seeds 0-2.
* ``temperature``: the contrastive temperature τ (shared by both methods), on the baseline.
* ``c2kd``: C2KD's β (the weight of the contrastive term; 1 − β weighs the distillation term) and distillation
  temperature, on C2KD, plus the control β = 1 (no distillation). The English teacher is trained once, by
  the first trial, and reused by the others.

    python benchmarks/demo_sweep.py --stage towers --out demo_sweep
    python benchmarks/demo_sweep.py --stage c2kd --out demo_sweep --set optim.lr=0.01 --set teacher.lr=0.001

``--set`` values are parsed as YAML 1.1, where ``1e-2`` is a string: write ``0.01``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

# the baseline recipe turned into the C2KD recipe's English teacher: its tower (all-mpnet-base-v2, frozen) as the
# only text tower, trained on the English captions (validation R@1 is then English R@1)
TEACHER_AS_BASELINE: dict[str, Any] = {
    "student.text_encoder": "sentence-transformers/all-mpnet-base-v2",
    "data.languages": ["en"],
    "optim.languages_per_step": 1,
}

STAGES: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    # the real towers (frozen multilingual-e5-small student): centering the frozen tower's outputs
    # (student.text_centering) and the heads' learning rate and decay, on the baseline
    "towers": (
        "baseline",
        {
            "center_lr3e-3_decay0.75": {"student.text_centering": True},
            "center_lr1e-2_decay0.75": {"student.text_centering": True, "optim.lr": 1e-2},
            "center_lr3e-3_decay0.85": {"student.text_centering": True, "optim.lr_decay": 0.85},
            "nocenter_lr3e-3_decay0.75": {"student.text_centering": False},
            # second round, after the four above: the two gains (higher lr, slower decay) together, and slower still
            "center_lr1e-2_decay0.85": {"student.text_centering": True, "optim.lr": 1e-2, "optim.lr_decay": 0.85},
            "center_lr3e-3_decay0.9": {"student.text_centering": True, "optim.lr_decay": 0.9},
            "center_lr1e-2_decay0.9": {"student.text_centering": True, "optim.lr": 1e-2, "optim.lr_decay": 0.9},
            # third round: one step further along each axis from the best two
            "center_lr3e-2_decay0.85": {"student.text_centering": True, "optim.lr": 3e-2, "optim.lr_decay": 0.85},
            "center_lr1e-2_decay0.95": {"student.text_centering": True, "optim.lr": 1e-2, "optim.lr_decay": 0.95},
        },
    ),
    # the English teacher, chosen the same way: the baseline recipe with the teacher's tower (all-mpnet-base-v2,
    # frozen) as its only text tower, trained on the English captions — what the C2KD recipe's teacher trains
    # (contrastive, mean aggregator, 128-d, τ 0.05, the recipe's decay); its validation R@1 is English R@1.
    # Run with the student's chosen --set optim.lr_decay=... (the teacher shares the recipe's decay).
    "teacher": (
        "baseline",
        {
            f"{'center' if center else 'nocenter'}_lr{lr}": {
                **TEACHER_AS_BASELINE,
                "student.text_centering": center,
                "optim.lr": float(lr),
            }
            for center in (False, True)
            for lr in ("1e-3", "3e-3", "1e-2")
        },
    ),
    # the teacher's early-stopping patience, over 3 seeds (the 3-seed demo showed a teacher stopping at a 2-epoch
    # plateau at epoch 8, validation 81.3, where the same seed had reached 90.0 at epoch 15): the teacher trials
    # above with the chosen centring and lr, and the C2KD recipe's teacher temperature (0.05)
    "teacher_patience": (
        "baseline",
        {
            f"patience{patience}_seed{seed}": {
                **TEACHER_AS_BASELINE,
                "student.text_centering": True,
                "optim.lr": 1e-3,
                "loss.options.temperature": 0.05,
                "optim.early_stopping_patience": patience,
                "seed": seed,
            }
            for patience in (2, 4, 6)
            for seed in (0, 1, 2)
        },
    ),
    "optim": (
        "baseline",
        {
            "lr1e-3_enc2e-4_decay0.9": {"optim.lr": 1e-3, "optim.text_encoder_lr": 2e-4, "optim.lr_decay": 0.9},
            "lr1e-3_enc2e-4_decay0.8": {"optim.lr": 1e-3, "optim.text_encoder_lr": 2e-4, "optim.lr_decay": 0.8},
            "lr3e-3_enc2e-4_decay0.8": {"optim.lr": 3e-3, "optim.text_encoder_lr": 2e-4, "optim.lr_decay": 0.8},
            "lr3e-3_enc4e-4_decay0.8": {"optim.lr": 3e-3, "optim.text_encoder_lr": 4e-4, "optim.lr_decay": 0.8},
            "lr3e-3_enc2e-4_decay0.85": {"optim.lr": 3e-3, "optim.text_encoder_lr": 2e-4, "optim.lr_decay": 0.85},
            "lr3e-3_enc2e-4_decay0.8_5langs": {
                "optim.lr": 3e-3,
                "optim.text_encoder_lr": 2e-4,
                "optim.lr_decay": 0.8,
                "optim.languages_per_step": 5,
            },
            "lr3e-3_enc2e-4_decay0.75_5langs": {
                "optim.lr": 3e-3,
                "optim.text_encoder_lr": 2e-4,
                "optim.lr_decay": 0.75,
                "optim.languages_per_step": 5,
            },
            "lr3e-3_enc2e-4_decay0.7_5langs": {
                "optim.lr": 3e-3,
                "optim.text_encoder_lr": 2e-4,
                "optim.lr_decay": 0.7,
                "optim.languages_per_step": 5,
            },
        },
    ),
    "temperature": (
        "baseline",
        {f"tau{t}": {"loss.options.temperature": t} for t in (0.03, 0.05, 0.1, 0.2)},  # 0.2: 0.1 was best
    ),
    "c2kd": (
        "c2kd",
        {
            **{
                f"beta{b}_dtau{dt}": {"loss.options.balance": b, "loss.options.distill_temperature": dt}
                for b in (0.1, 0.5)
                for dt in (0.1, 1.0)
            },
            # control: β = 1 switches the distillation term off (β weighs the contrastive term, 1 − β the
            # distillation), so it should land on the baseline; the distillation temperature is then unused
            "beta1.0_dtau0.1": {"loss.options.balance": 1.0, "loss.options.distill_temperature": 0.1},
        },
    ),
}


TRIAL = {"data.test_split": None}  # never read the test split


def _parse_set(items: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def main() -> None:
    from mtvr.atomic import atomic_write_json
    from mtvr.demo.pipeline import SIZES, build_demo_dataset, demo_recipe, extract_demo_features, training_summary
    from mtvr.train import train

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stage", choices=sorted(STAGES), required=True)
    p.add_argument("--out", default="demo_sweep", help="sweep folder (data, runs, sweep.json)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="settings chosen earlier")
    p.add_argument("--max-epochs", type=int, default=40, help="epoch cap of every trial (early stopping first)")
    p.add_argument("--only", action="append", default=[], help="run only these trials")
    p.add_argument(
        "--results",
        default=str(Path(__file__).parent / "results_committed" / "demo_sweep.json"),
        help="where the results are also written (committed: the recipes and README cite them)",
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the trainer's per-epoch lines
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    build_demo_dataset(out, SIZES, seed=0)
    extract_demo_features(out)
    method, trials = STAGES[args.stage]
    fixed = _parse_set(args.set)
    results_path = out / "sweep.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    teacher = None
    for name, over in trials.items():
        if args.only and name not in args.only:
            continue
        key = f"{args.stage}/{name}"
        if key in results:
            print(f"{key}: done before (validation mean R@1 {results[key]['best_val_R@1']:.2f})")
            continue
        settings = {**fixed, **over}
        overrides = {k: v for k, v in settings.items() if not k.startswith("teacher.") and k != "seed"}
        recipe = demo_recipe(
            method,
            out,
            small=False,
            seed=int(settings.get("seed", 0)),
            overrides={**overrides, "optim.epochs": args.max_epochs, **TRIAL},
        )
        for setting, value in settings.items():  # teacher.KEY: the recipe's (first) teacher, a list entry
            if setting.startswith("teacher."):
                if not recipe.teachers:
                    raise SystemExit(f"--set {setting}: the {method} recipe has no teacher")
                setattr(recipe.teachers[0], setting.partition(".")[2], value)
        recipe.output_dir = str(out / "runs" / args.stage / name)
        if teacher is not None:
            recipe.teachers[0].checkpoint = str(teacher)
        t0 = time.perf_counter()
        result = train(recipe, resume=True, progress=False)
        seconds = time.perf_counter() - t0
        if recipe.teachers and teacher is None:
            teacher = Path(recipe.output_dir) / "teachers" / recipe.teachers[0].name / "best"
        summary = training_summary(result)
        results[key] = {
            "method": method,
            "settings": settings,
            "best_val_R@1": summary["best_validation_mean_R@1"],
            "best_epoch": result.best_epoch,
            "epochs_trained": summary["epochs_trained"],
            "stopped_by": summary["stopped_by"],
            "seconds_per_epoch": sum(h["seconds"] for h in result.history) / len(result.history),
            "seconds": seconds,
            "curve": summary["validation_curve"],
        }
        atomic_write_json(results_path, results)
        # the committed file keeps the trials of other sweep folders (earlier stages run elsewhere)
        committed = json.loads(Path(args.results).read_text()) if Path(args.results).is_file() else {}
        atomic_write_json(args.results, {**committed, key: results[key]})
        print(f"{key}: validation mean R@1 {summary['best_validation_mean_R@1']:.2f} at epoch {result.best_epoch}")
    print(
        "\n| trial | method | validation mean R@1 | best epoch | epochs | stopped by | s/epoch |\n|---|---|---|---|---|---|---|"
    )
    for key, r in sorted(results.items(), key=lambda kv: (kv[0].split("/")[0], -kv[1]["best_val_R@1"])):
        if key.startswith(args.stage + "/"):
            print(
                f"| {key} | {r['method']} | {r['best_val_R@1']:.2f} | {r['best_epoch']} | {r['epochs_trained']} | "
                f"{r['stopped_by']} | {r['seconds_per_epoch']:.1f} |"
            )


if __name__ == "__main__":
    main()
