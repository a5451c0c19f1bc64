"""Multi-YouCook2: YouCook2 (Zhou et al., AAAI 2018) recipe segments with machine-translated captions,
as in C2KD (Rouditchenko et al., ICASSP 2023).

Input: the official ``youcookii_annotations_trainval.json``: ``database`` → video id →
``duration``, ``subset`` (``training`` / ``validation``), ``recipe_type``, ``annotations`` → list of
``{"segment": [start, end], "id": n, "sentence": "..."}``. One example per annotated segment, clip id
``<video_id>_<id>``; splits ``train`` and ``validation``.
"""

from __future__ import annotations

import logging
import math
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

logger = logging.getLogger(__name__)

ANNOTATIONS_URL = "http://youcook2.eecs.umich.edu/static/YouCookII/youcookii_annotations_trainval.tar.gz"
ANNOTATIONS_FILE = "youcookii_annotations_trainval.json"
LANGUAGES = ("en", "de", "fr", "cs", "zh", "ru", "vi", "es", "ja")
SUBSETS = {"training": "train", "validation": "validation"}

_CITATION = """@inproceedings{zhou2018youcook2, title={Towards Automatic Learning of Procedures From Web Instructional Videos},
  author={Zhou, Luowei and Xu, Chenliang and Corso, Jason J.}, booktitle={AAAI}, year={2018}}
@inproceedings{rouditchenko2023c2kd, title={C2KD: Cross-Lingual Cross-Modal Knowledge Distillation for Multilingual Text-Video Retrieval},
  author={Rouditchenko, Andrew and Chuang, Yung-Sung and Shvetsova, Nina and Thomas, Samuel and Feris, Rogerio and Kingsbury, Brian and Karlinsky, Leonid and Harwath, David and Kuehne, Hilde and Glass, James},
  booktitle={ICASSP}, year={2023}}"""


def parse_youcook2(path: Path) -> list[dict]:
    """Rows (clip_id, video_id, sentence_id, split, start, end, caption) from the official JSON."""
    data = read_json(path, "YouCook2 annotations")
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise DatasetBuildError(f"{path}: expected an object with a 'database' mapping (the official YouCook2 schema)")
    rows = []
    seen: dict[str, str] = {}
    for vid, video in data["database"].items():
        if not isinstance(video, dict):
            raise DatasetBuildError(
                f"{path}: video {vid!r} is a {type(video).__name__}, not an object; fix that record"
            )
        check_video_id(vid, f"{path}: video {vid!r}")
        subset = video.get("subset")
        if subset not in SUBSETS:
            if subset == "testing":  # the official test set has no public captions
                continue
            raise DatasetBuildError(f"{path}: video {vid!r} has subset {subset!r}; expected training or validation")
        annotations = video.get("annotations", [])
        if not isinstance(annotations, list):
            raise DatasetBuildError(f"{path}: video {vid!r}: 'annotations' must be a list")
        for n, ann in enumerate(annotations):
            where = f"{path}: video {vid!r}, annotation #{n}"
            if not isinstance(ann, dict):
                raise DatasetBuildError(f"{where} is a {type(ann).__name__}, not an object; fix that record")
            sentence = ann.get("sentence")
            sentence = check_caption(sentence, f"{where}: 'sentence'")
            segment = ann.get("segment")
            if not isinstance(segment, (list, tuple)) or len(segment) != 2:
                raise DatasetBuildError(f"{where}: 'segment' must be [start, end] in seconds, got {segment!r:.60}")
            try:
                start, end = (float(v) for v in segment)
            except (TypeError, ValueError):
                raise DatasetBuildError(f"{where}: 'segment' {segment!r} holds non-numbers") from None
            if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
                raise DatasetBuildError(f"{where}: segment [{start}, {end}] must be finite with 0 <= start < end")
            seg_id = ann.get("id", n)
            clip_id = f"{vid}_{seg_id}"
            if clip_id in seen:
                raise DatasetBuildError(f"{where}: segment id {seg_id!r} repeats {seen[clip_id]} (clip id {clip_id!r})")
            seen[clip_id] = f"annotation #{n}"
            rows.append(
                {
                    "clip_id": clip_id,
                    "video_id": vid,
                    "sentence_id": str(seg_id),
                    "split": SUBSETS[subset],
                    "start": start,
                    "end": end,
                    "caption": sentence,
                    "recipe_type": video.get("recipe_type"),
                }
            )
    return rows


class MultiYouCook2(datasets.GeneratorBasedBuilder):
    """Multi-YouCook2 builder. ``MultiYouCook2(config_name="all", data_dir=..., video_dir=..., backend=...)``."""

    BUILDER_CONFIG_CLASS = MultilingualVideoConfig
    BUILDER_CONFIGS = [
        MultilingualVideoConfig(name="all", default_languages=LANGUAGES, description="all C2KD languages")
    ] + [
        MultilingualVideoConfig(
            name=lang, default_languages=("en", lang), description="English" if lang == "en" else f"English + {lang}"
        )
        for lang in LANGUAGES
    ]
    DEFAULT_CONFIG_NAME = "all"

    def _info(self) -> datasets.DatasetInfo:
        self.languages = resolve_languages(self.config, LANGUAGES)
        return datasets.DatasetInfo(
            description=__doc__,
            features=example_features(self.languages),
            homepage="http://youcook2.eecs.umich.edu/",
            citation=_CITATION,
            license="MIT (annotations); videos: YouTube terms",
        )

    def _split_generators(self, dl_manager):
        if self.config.data_dir:
            path = Path(self.config.data_dir) / ANNOTATIONS_FILE
        else:
            path = Path(dl_manager.download_and_extract(ANNOTATIONS_URL)) / "youcookii_annotations_trainval.json"
        rows = parse_youcook2(path)
        wanted = self.config.splits or list(SUBSETS.values())
        unknown = sorted(set(wanted) - set(SUBSETS.values()))
        if unknown:
            raise DatasetBuildError(f"unknown splits {unknown}; YouCook2 has {sorted(SUBSETS.values())}")
        rows = [r for r in rows if r["split"] in wanted]
        return translated_split_generators(self, rows, wanted)

    def _generate_examples(self, rows, per_lang, unique):
        yield from build_rows(rows, self.config, self.languages, per_lang, unique)
