"""Model cards: YAML metadata with a ``model-index`` built from ``results.json``, and a readable body."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from ..config import VideoTextConfig
from ..metrics import METRIC_KEYS, LanguageReport
from ..translate.base import LANGUAGE_NAMES

# results.json metric -> (model-index metric type, display name)
METRIC_TYPES = {"R@1": "recall_at_1", "R@5": "recall_at_5", "R@10": "recall_at_10", "MdR": "median_rank"}
TASK_TYPE = "text-to-video-retrieval"

CITATIONS = {  # the datasets' papers; each loss carries its own (mtvr.distill.registry)
    "msrvtt": """@inproceedings{xu2016msrvtt, title={MSR-VTT: A Large Video Description Dataset for Bridging Video and Language},
  author={Xu, Jun and Mei, Tao and Yao, Ting and Rui, Yong}, booktitle={CVPR}, year={2016}}""",
    "youcook2": """@inproceedings{zhou2018youcook2, title={Towards Automatic Learning of Procedures From Web Instructional Videos},
  author={Zhou, Luowei and Xu, Chenliang and Corso, Jason J.}, booktitle={AAAI}, year={2018}}""",
}


def eval_results(results: dict, model_name: str) -> list:
    from huggingface_hub import EvalResult

    out = []
    for ev in results.get("evaluations", []):
        for lang, res in ev["languages"].items():
            for key, (mtype, _) in ((k, (v, k)) for k, v in METRIC_TYPES.items()):
                out.append(
                    EvalResult(
                        task_type=TASK_TYPE,
                        task_name="Text-to-video retrieval",
                        dataset_type=ev["dataset"],
                        dataset_name=f"{_dataset_label(ev['dataset'])} ({lang})",
                        dataset_config=f"{ev.get('config', 'all')}:{lang}",
                        dataset_split=ev["split"],
                        metric_type=mtype,
                        metric_name=f"{key} ({LANGUAGE_NAMES.get(lang, lang)})",
                        metric_value=round(float(res["t2v"][key]), 4),
                    )
                )
    return out


def _dataset_label(dataset: str) -> str:
    return dataset.rstrip("/").split("/")[-1]


def render_model_card(config: VideoTextConfig, results: dict, repo_id: str, recipe_yaml: str | None = None) -> str:
    from huggingface_hub import ModelCardData

    recipe = yaml.safe_load(recipe_yaml) if recipe_yaml else results.get("recipe") or {}
    loss = (recipe.get("loss") or {}).get("name", "contrastive")
    languages = list(config.languages) or ["en"]
    datasets = sorted(
        {
            ev["dataset"]
            for ev in results.get("evaluations", [])
            if "/" in ev["dataset"] and not ev["dataset"].startswith(("/", "."))
        }
    )
    base_models = [
        m
        for m in (config.text_model_name_or_path, config.frame_encoder.name_or_path)
        if m and not m.startswith(("/", ".")) and m.count("/") == 1
    ]
    data = ModelCardData(
        language=languages,
        license="apache-2.0",
        library_name="mtvr",
        pipeline_tag="feature-extraction",
        tags=["text-to-video-retrieval", "video-retrieval", "multilingual", "mtvr"]
        + (["zero-shot", "clip"] if config.zero_shot else [loss]),
        datasets=datasets or None,
        base_model=base_models or None,
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results(results, repo_id.split("/")[-1]) or None,
    )
    tables = []
    for ev in results.get("evaluations", []):
        tables.append(
            f"**{_dataset_label(ev['dataset'])}**, split `{ev['split']}`\n\n"
            + LanguageReport.from_dict(ev).to_markdown()
        )
    from ..distill import LOSSES
    from ..distill.registry import loss_spec

    # C2KD is always cited (the multilingual setting and the datasets come from it), then the loss's own paper
    spec = loss_spec(loss) if loss in LOSSES else None
    cites = [loss_spec("c2kd").citation] + ([spec.citation] if spec and spec.citation and loss != "c2kd" else [])
    names = " ".join(ev["dataset"].lower() for ev in results.get("evaluations", []))
    cites += [CITATIONS[k] for k in ("msrvtt", "youcook2") if k in names.replace("-", "")]
    template = (resources.files("mtvr.hub.templates") / "model_card.md").read_text(encoding="utf-8")
    return template.format(
        yaml=data.to_yaml(),
        title=repo_id.split("/")[-1],
        n_languages=len(languages),
        language_names=", ".join(LANGUAGE_NAMES.get(l, l) for l in languages),
        text_encoder=config.text_model_name_or_path,
        num_frames=config.frame_encoder.num_frames,
        frame_encoder=config.frame_encoder.name_or_path,
        aggregator=config.aggregator,
        embed_dim=config.embed_dim,
        method_sentence=_zero_shot_sentence(config) if config.zero_shot else (spec.card_method if spec else ""),
        repo_id=repo_id,
        results_tables="\n\n".join(tables) or "(no evaluation recorded)",
        recipe=(recipe_yaml or yaml.safe_dump(recipe, sort_keys=False)).strip() or "# not recorded",
        citations="\n".join(cites),
    )


def _zero_shot_sentence(config: VideoTextConfig) -> str:
    return (
        f"**Zero-shot: nothing was trained.** This retriever combines two public checkpoints as they are: the "
        f"multilingual text tower `{config.text_model_name_or_path}` (a sentence-transformers model distilled "
        f"into CLIP's text space) and the CLIP image tower of `{config.frame_encoder.name_or_path}`; a video is "
        "the mean of its L2-normalised CLIP frame embeddings (CLIP4Clip's zero-shot meanP). Fine-tune it with a "
        "recipe from mtvr's `models/` for better results on a domain."
    )


def results_from_card(card: Any) -> dict[tuple[str, str, str, str], float]:
    """``{(dataset, config:lang, split, metric type): value}`` from a loaded ModelCard."""
    return {
        (r.dataset_type, r.dataset_config, r.dataset_split, r.metric_type): r.metric_value
        for r in card.data.eval_results or []
    }


def results_index(results: dict) -> dict[tuple[str, str, str, str], float]:
    """The same keys from ``results.json``."""
    inv = {k: v for k, v in METRIC_TYPES.items()}
    out = {}
    for ev in results.get("evaluations", []):
        for lang, res in ev["languages"].items():
            for key, mtype in inv.items():
                out[(ev["dataset"], f"{ev.get('config', 'all')}:{lang}", ev["split"], mtype)] = round(
                    float(res["t2v"][key]), 4
                )
    return out


__all__ = ["render_model_card", "eval_results", "results_from_card", "results_index", "METRIC_KEYS"]
