"""Multi-MSRVTT: MSR-VTT (Xu et al., CVPR 2016) with machine-translated captions, as in C2KD
(Rouditchenko et al., ICASSP 2023).

Inputs (``data_dir``, as in CLIP4Clip's ``msrvtt_data.zip``):

* ``MSRVTT_data.json``: ``videos`` (``video_id``, ``split``, ...) and ``sentences`` (``video_id``,
  ``caption``, ``sen_id``; 20 per video);
* ``MSRVTT_JSFUSION_test.csv``: the 1k-A test pairs, header ``key,vid_key,video_id,sentence``.

Configs: ``1k-A`` (9,000 training videos = all videos outside the 1k-A test set, with their 20
captions each; 1,000 test pairs) and ``full`` (the official 6,513 / 497 / 2,990 split, all captions);
``<split>-<lang>`` configs hold English + one language.
"""

from __future__ import annotations

import csv
from pathlib import Path

import datasets

from mtvr.errors import DatasetBuildError

from .common import (
    MultilingualVideoConfig,
    build_rows,
    check_caption,
    check_video_id,
    example_features,
    read_json,
    resolve_languages,
    translated_split_generators,
)

DATA_URL = "https://github.com/ArrowLuo/CLIP4Clip/releases/download/v0.0/msrvtt_data.zip"
LANGUAGES = ("en", "de", "fr", "cs", "zh", "ru", "vi", "sw", "es")
SPLITS = {"1k-A": ("train", "test"), "full": ("train", "validation", "test")}

_CITATION = """@inproceedings{xu2016msrvtt, title={MSR-VTT: A Large Video Description Dataset for Bridging Video and Language},
  author={Xu, Jun and Mei, Tao and Yao, Ting and Rui, Yong}, booktitle={CVPR}, year={2016}}
@inproceedings{yu2018jsfusion, title={A Joint Sequence Fusion Model for Video Question Answering and Retrieval},
  author={Yu, Youngjae and Kim, Jongseok and Kim, Gunhee}, booktitle={ECCV}, year={2018}}
@inproceedings{rouditchenko2023c2kd, title={C2KD: Cross-Lingual Cross-Modal Knowledge Distillation for Multilingual Text-Video Retrieval},
  author={Rouditchenko, Andrew and others}, booktitle={ICASSP}, year={2023}}"""


def read_jsfusion_csv(path: Path) -> list[dict]:
    """The 1k-A test pairs: one row per video, sentence id = the CSV ``key``."""
    if not path.is_file():
        raise DatasetBuildError(f"1k-A test file not found at {path}: pass data_dir= pointing at its folder")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetBuildError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); convert it") from None
    import io

    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        need = {"key", "video_id", "sentence"}
        if not need <= set(reader.fieldnames or []):
            raise DatasetBuildError(
                f"{path}: header {reader.fieldnames} lacks {sorted(need - set(reader.fieldnames or []))}"
            )
        rows = []
        for n, r in enumerate(reader, 2):
            if not r["video_id"]:
                raise DatasetBuildError(f"{path}, line {n}: empty video_id")
            check_caption(r["sentence"], f"{path}, line {n}: 'sentence'")
            check_video_id(r["video_id"], f"{path}, line {n}")
            rows.append(
                {
                    "clip_id": r["video_id"],
                    "video_id": r["video_id"],
                    "sentence_id": r["key"],
                    "split": "test",
                    "start": None,
                    "end": None,
                    "caption": check_caption(r["sentence"], f"{path}, line {n}: 'sentence'"),
                }
            )
    return rows


def read_msrvtt_json(path: Path) -> tuple[dict[str, str], list[dict]]:
    data = read_json(path, "MSRVTT_data.json")
    try:
        split_of = {v["video_id"]: v["split"] for v in data["videos"]}
        sentences = data["sentences"]
    except (KeyError, TypeError) as exc:
        raise DatasetBuildError(
            f"{path}: expected 'videos' (video_id, split) and 'sentences' (video_id, caption, sen_id); missing {exc}"
        ) from None
    if not isinstance(sentences, list):
        raise DatasetBuildError(f"{path}: 'sentences' must be a list")
    for n, s in enumerate(sentences):
        if not isinstance(s, dict) or "caption" not in s or "video_id" not in s:
            raise DatasetBuildError(f"{path}: sentences[{n}] lacks 'caption' or 'video_id'")
        check_caption(s["caption"], f"{path}: sentences[{n}] (video {s['video_id']!r}): 'caption'")
        check_video_id(s["video_id"], f"{path}: sentences[{n}]")
    return split_of, sentences


class MultiMSRVTT(datasets.GeneratorBasedBuilder):
    """Multi-MSRVTT builder. ``MultiMSRVTT(config_name="1k-A", data_dir=..., splits=["test"], backend=...)``."""

    BUILDER_CONFIG_CLASS = MultilingualVideoConfig
    BUILDER_CONFIGS = [
        MultilingualVideoConfig(name=split, default_languages=LANGUAGES, description=f"{split}, all languages")
        for split in SPLITS
    ] + [
        MultilingualVideoConfig(
            name=f"{split}-{lang}", default_languages=("en", lang), description=f"{split}, English + {lang}"
        )
        for split in SPLITS
        for lang in LANGUAGES
    ]
    DEFAULT_CONFIG_NAME = "1k-A"

    @property
    def split_kind(self) -> str:
        return self.config.name.split("-")[0] if not self.config.name.startswith("1k-A") else "1k-A"

    def _info(self) -> datasets.DatasetInfo:
        self.languages = resolve_languages(self.config, LANGUAGES)
        return datasets.DatasetInfo(
            description=__doc__,
            features=example_features(self.languages),
            homepage="https://www.microsoft.com/en-us/research/publication/msr-vtt-a-large-video-description-dataset-for-bridging-video-and-language/",
            citation=_CITATION,
            license="MSR-VTT terms of use (research only)",
        )

    def _split_generators(self, dl_manager):
        folder = (
            Path(self.config.data_dir)
            if self.config.data_dir
            else Path(dl_manager.download_and_extract(DATA_URL)) / "msrvtt_data"
        )
        kind = self.split_kind
        wanted = self.config.splits or list(SPLITS[kind])
        unknown = sorted(set(wanted) - set(SPLITS[kind]))
        if unknown:
            raise DatasetBuildError(
                f"unknown splits {unknown} for config {self.config.name!r}; it has {list(SPLITS[kind])}"
            )
        rows: list[dict] = []
        if kind == "1k-A":
            test = read_jsfusion_csv(folder / "MSRVTT_JSFUSION_test.csv")
            if "test" in wanted:
                rows += test
            if "train" in wanted:
                _, sentences = read_msrvtt_json(folder / "MSRVTT_data.json")
                test_ids = {r["video_id"] for r in test}
                rows += [_sentence_row(s, "train") for s in sentences if s["video_id"] not in test_ids]
        else:
            split_of, sentences = read_msrvtt_json(folder / "MSRVTT_data.json")
            names = {"train": "train", "validate": "validation", "test": "test"}
            rows += [
                _sentence_row(s, names[split_of[s["video_id"]]])
                for s in sentences
                if names.get(split_of.get(s["video_id"])) in wanted
            ]
            self.skipped = skipped_sentences(folder / "MSRVTT_data.json", split_of, sentences, names)
        return translated_split_generators(self, rows, wanted)

    def _generate_examples(self, rows, per_lang, unique):
        yield from build_rows(rows, self.config, self.languages, per_lang, unique)


def skipped_sentences(path: Path, split_of: dict, sentences: list[dict], names: dict[str, str]) -> dict[str, int]:
    """Count (and log) what the ``full`` config leaves out: sentences of videos that ``videos`` does not
    list, and videos (with their sentences) whose split is none of the official ones."""
    import logging

    unknown = sum(1 for s in sentences if s["video_id"] not in split_of)
    other = {v: split for v, split in split_of.items() if split not in names}
    counts = {
        "sentences of videos not in 'videos'": unknown,
        f"videos of other splits ({', '.join(sorted(map(str, set(other.values()))))})": len(other),
        "sentences of those videos": sum(1 for s in sentences if s["video_id"] in other),
    }
    counts = {k: v for k, v in counts.items() if v}
    if counts:
        logging.getLogger(__name__).warning("%s: skipped %s", path, "; ".join(f"{v} {k}" for k, v in counts.items()))
    return counts


def _sentence_row(s: dict, split: str) -> dict:
    return {
        "clip_id": s["video_id"],
        "video_id": s["video_id"],
        "sentence_id": str(s.get("sen_id", "")),
        "split": split,
        "start": None,
        "end": None,
        "caption": s["caption"].strip(),
    }
