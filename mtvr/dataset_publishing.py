"""Publish datasets: run a builder (found by name) and write Parquet files + a dataset card.

The folder written by :func:`build_dataset` loads offline with ``datasets.load_dataset(folder, config)``
and uploads as is to the Hub (``push_dataset_folder``)::

    README.md                          card; its YAML ``configs:`` list the data files
    build_report.json / .md            per-language counts, time and round-trip BLEU / chrF
    data/<config>/<split>-00000-of-00001.parquet
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from .atomic import atomic_folder, remove_stale_staging
from .builders import get_builder
from .translate.base import LANGUAGE_NAMES


def language_subset(table: pa.Table, languages: Sequence[str]) -> pa.Table:
    """Keep only ``languages`` in the ``captions`` and ``translation`` structs."""
    out = table
    for column, langs in (("captions", languages), ("translation", [l for l in languages if l != "en"])):
        struct = table.column(column).combine_chunks()
        fields = [struct.field(l) for l in langs]
        new = pa.StructArray.from_arrays(fields, names=list(langs)) if langs else pa.nulls(len(table))
        out = out.set_column(out.schema.get_field_index(column), column, new)
    return out


def build_dataset(
    builder: str,
    out_dir: str | Path,
    *,
    config_name: str | None = None,
    data_dir: str | None = None,
    languages: Sequence[str] | None = None,
    language_configs: bool = True,
    repo_id: str | None = None,
    **config_kwargs: Any,
) -> dict:
    """Run a builder and write its Parquet files, card and build report into ``out_dir`` (atomically).

    Returns the build report. ``config_kwargs`` go to the builder config (backend, video_dir, splits...).
    """
    cls = get_builder(builder)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out_dir)
    # the datasets cache lives beside the output, named like a staging folder: if this process is killed
    # (kill -9), the next build of the same folder removes it (atomic.remove_stale_staging)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.tmp-{os.getpid()}-cache-", dir=out_dir.parent) as cache:
        b = cls(
            config_name=config_name or cls.DEFAULT_CONFIG_NAME,
            cache_dir=cache,
            data_dir=data_dir,
            languages=list(languages) if languages else None,
            **config_kwargs,
        )
        b.download_and_prepare(download_mode="force_redownload")
        ds = b.as_dataset()
        report = dict(getattr(b, "build_report", {}))
        langs = b.languages
        base = b.config.name
        with atomic_folder(out_dir) as tmp:
            configs: dict[str, dict[str, int]] = {}
            for split, d in ds.items():
                table = d.data.table
                subsets = {base: langs}
                if language_configs:
                    subsets.update(
                        {f"{base}-{l}" if base not in ("all",) else l: ["en", l] for l in langs if l != "en"}
                    )
                    if base == "all":
                        subsets["en"] = ["en"]
                for name, subset in subsets.items():
                    path = tmp / "data" / name / f"{split}-00000-of-00001.parquet"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    pq.write_table(language_subset(table, subset), path)
                    configs.setdefault(name, {})[split] = len(table)
            report_clean = {k: v for k, v in report.items() if not k.startswith("_")}
            meta = {
                "builder": builder,
                "config": base,
                "languages": langs,
                "counts": configs,
                "backend": config_kwargs.get("backend", "transformers"),
                "languages_report": report_clean,
                "backend_calls": report.get("_backend_calls", 0),
                "translated": report.get("_translated", 0),
                "skipped": dict(getattr(b, "skipped", {})),  # annotations the builder left out, counted
            }
            (tmp / "build_report.json").write_text(
                json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
            skipped = "".join(f"\nSkipped: {n} {what}." for what, n in meta["skipped"].items())
            (tmp / "build_report.md").write_text(report_markdown(report_clean) + "\n" + skipped, encoding="utf-8")
            (tmp / "README.md").write_text(
                dataset_card(builder, base, langs, configs, report_clean, b.info, repo_id or f"mtvr/{builder}"),
                encoding="utf-8",
            )
    return meta


def report_markdown(report: dict) -> str:
    rows = [
        "| language | backend | model | captions | unique | translated now | flagged | round-trip BLEU | round-trip chrF | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lang, r in report.items():
        rows.append(
            f"| {lang} ({LANGUAGE_NAMES.get(lang, lang)}) | {r['backend']} | `{r['model']}` | {r['captions']} | "
            f"{r['unique']} | {r['translated_now']} | {r['flagged']} | {r.get('bleu', '-')} | {r.get('chrf', '-')} | {r['seconds']} |"
        )
    return "\n".join(rows)


def dataset_card(
    builder: str, base: str, languages: Sequence[str], configs: dict, report: dict, info: Any, repo_id: str
) -> str:
    meta = {
        "language": list(languages),
        "license": "other",
        "multilinguality": "multilingual",
        "task_categories": ["text-retrieval"],
        "tags": ["video", "text-to-video-retrieval", "machine-translated", "mtvr"],
        "pretty_name": builder.replace("_", "-"),
        "configs": [
            {
                "config_name": name,
                "data_files": [{"split": s, "path": f"data/{name}/{s}-*.parquet"} for s in splits],
                **({"default": True} if name == base else {}),
            }
            for name, splits in configs.items()
        ],
    }
    table = [
        "| config | languages | " + " | ".join(next(iter(configs.values()))) + " |",
        "|---|---|" + "---|" * len(next(iter(configs.values()))),
    ]
    for name, splits in configs.items():
        langs = ", ".join(languages) if name == base else ("en" if name == "en" else f"en, {name.split('-')[-1]}")
        table.append(f"| `{name}` | {langs} | " + " | ".join(str(n) for n in splits.values()) + " |")
    sig = next((r for r in report.values() if "bleu_signature" in r), {})
    template = (resources.files("mtvr.hub.templates") / "dataset_card.md").read_text(encoding="utf-8")
    return template.format(
        yaml=yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip(),
        title=builder.replace("_", "-"),
        summary=(info.description or "").strip().split("\n\n")[0],
        builder=builder,
        configs_table="\n".join(table),
        repo_id=repo_id,
        default_config=base,
        report_table=report_markdown(report) if report else "(no translation)",
        bleu_signature=sig.get("bleu_signature", "-"),
        chrf_signature=sig.get("chrf_signature", "-"),
        license=info.license or "-",
        citation=(info.citation or "").strip(),
    )


def push_dataset_folder(
    folder: str | Path, repo_id: str, token: str | None = None, private: bool = False, commit_message: str | None = None
) -> str:
    """Upload a folder written by :func:`build_dataset` to the Hub as a dataset repository."""
    from .hub.upload import upload_folder_to_hub

    return upload_folder_to_hub(
        folder,
        repo_id,
        repo_type="dataset",
        token=token,
        private=private,
        commit_message=commit_message or "Upload dataset with mtvr",
    )


def write_rows_dataset(
    out_dir: str | Path, rows_by_split: dict[str, list[dict]], config_name: str = "all", title: str = "mtvr dataset"
) -> Path:
    """Write example rows (the builders' schema) as a loadable Parquet folder with a minimal card."""
    out_dir = Path(out_dir)
    with atomic_folder(out_dir) as tmp:
        for split, rows in rows_by_split.items():
            path = tmp / "data" / config_name / f"{split}-00000-of-00001.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows), path)
        meta = {
            "configs": [
                {
                    "config_name": config_name,
                    "default": True,
                    "data_files": [{"split": s, "path": f"data/{config_name}/{s}-*.parquet"} for s in rows_by_split],
                }
            ]
        }
        (tmp / "README.md").write_text(
            f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n\n# {title}\n", encoding="utf-8"
        )
    return out_dir
