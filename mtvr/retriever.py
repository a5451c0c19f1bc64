"""`Retriever`: the API applications use. Load a model, index videos, search in any language.

>>> retriever = Retriever.from_pretrained("mtvr/c2kd-labse-msrvtt")          # doctest: +SKIP
>>> retriever.add(video_ids, features=frame_features)                        # doctest: +SKIP
>>> retriever.search("una persona corta cebollas", k=5)                      # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .atomic import atomic_folder
from .config import DEFAULT_TEXT_TOWER, VideoTextConfig
from .devices import default_device
from .errors import EmptyIndexError, ModelLoadError, OptionError, QueryError, QueryTypeError, VideoIndexError
from .hub.download import resolve_model_folder
from .index import IndexBackend, SearchHit, VideoIndex
from .modeling import VideoTextModel, pad_frame_features
from .threads import torch_threads

logger = logging.getLogger(__name__)


@dataclass
class VideoEmbeddings:
    """Embeddings of the videos that decoded, and ``{"file", "clip", "reason"}`` for those that did not."""

    video_ids: list[str]
    embeddings: np.ndarray
    errors: list[dict]


def load_tokenizer(folder: str | os.PathLike, config: VideoTextConfig, model: VideoTextModel | None = None) -> Any:
    """The tokenizer saved beside a model, as its text tower's kind reads it (a sentence-transformers tower
    brings its own). A folder without tokenizer files is refused: transformers would otherwise fall back to a
    tiny default vocabulary, every word would become ``[UNK]`` and the results would be garbage.
    """
    from .text_towers import get_tower

    return get_tower(config.text_tower).load_tokenizer(
        Path(folder), config.text_config, model.text_encoder if model is not None else None
    )


def validate_queries(queries: Any) -> list[str]:
    """Check that every query is a non-empty string that UTF-8 can encode; raise
    :class:`QueryTypeError` / :class:`QueryError` naming it."""
    items = [queries] if isinstance(queries, str) else queries
    if not isinstance(items, (list, tuple)):
        raise QueryTypeError(f"a query must be a string or a list of strings, got {type(queries).__name__}")
    if len(items) == 0:
        raise QueryError("no query given: pass a string or a non-empty list of strings")
    for i, q in enumerate(items):
        if not isinstance(q, str):
            raise QueryTypeError(f"query #{i} is a {type(q).__name__}, not a string: {q!r:.60}")
        if not q.strip():
            raise QueryError(f"query #{i} is empty; give some words to search for")
        try:
            q.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: the tokenizer would fail with a type error
            raise QueryError(
                f"query #{i} {q!r:.60} holds {q[exc.start : exc.end]!r} at position {exc.start}, "
                "which is not a Unicode character (a lone surrogate)"
            ) from None
    return list(items)


def _check_extra_names(extra_files: dict[str, Any]) -> None:
    for name in extra_files:
        parts = Path(name).parts
        if not name or Path(name).is_absolute() or ".." in parts or parts[0] in ("", "."):
            raise OptionError(f"extra_files: {name!r} is not a plain relative file name inside the model folder")


class Retriever:
    """A multilingual text-to-video retriever: a :class:`VideoTextModel`, its tokenizer and an index."""

    def __init__(
        self,
        model: VideoTextModel,
        tokenizer: Any,
        device: str | torch.device | None = None,
        index: VideoIndex | None = None,
        index_kind: str = "flat",
        **index_options: Any,
    ) -> None:
        self.device = default_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.index = index
        self.index_kind = index_kind
        self.index_options = index_options
        self._frame_encoder = None
        self._onnx: Any = None  # an mtvr.onnx_text.OnnxTextEncoder once use_text_encoder("onnx...") accepted one
        self.source_folder: Path | None = None

    @property
    def config(self) -> VideoTextConfig:
        return self.model.config

    # ----------------------------------------------------------------- loading & saving
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        revision: str | None = None,
        device: str | torch.device | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        **kwargs: Any,
    ) -> Retriever:
        """Load from a local folder or a Hub repo id (config.json, model.safetensors, tokenizer).

        Pickle weights are never loaded and ``trust_remote_code`` is never used.
        """
        folder = resolve_model_folder(name_or_path, revision=revision, cache_dir=cache_dir, token=token)
        model = VideoTextModel.from_pretrained(folder)
        try:
            tokenizer = load_tokenizer(folder, model.config, model)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{folder}: the tokenizer files cannot be loaded ({exc})") from exc
        retriever = cls(model, tokenizer, device=device, **kwargs)
        retriever.source_folder = folder
        return retriever

    @classmethod
    def from_text_encoder(
        cls,
        name_or_path: str,
        device: str | torch.device | None = None,
        text_tower: str = DEFAULT_TEXT_TOWER,
        **config_kwargs: Any,
    ) -> Retriever:
        """A new, untrained retriever whose text tower starts from a pretrained checkpoint.

        ``text_tower``: a kind registered in :mod:`mtvr.text_towers` (``transformers`` mean pooling,
        ``sentence-transformers``, ``clip``...).
        """
        model, tokenizer = VideoTextModel.from_text_encoder_with_tokenizer(
            name_or_path, text_tower=text_tower, **config_kwargs
        )
        return cls(model, tokenizer, device=device)

    @classmethod
    def from_zero_shot(
        cls,
        text: str = "sentence-transformers/clip-ViT-B-32-multilingual-v1",
        vision: str = "openai/clip-vit-base-patch32",
        device: str | torch.device | None = None,
        num_frames: int = 12,
        languages: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Retriever:
        """A multilingual video retriever from public checkpoints, with no training.

        ``text`` is a sentence-transformers text tower aligned to CLIP's image space (default: the
        multilingual CLIP student ``clip-ViT-B-32-multilingual-v1``, 50+ languages) and ``vision`` the
        matching CLIP checkpoint. Videos are encoded frame by frame with CLIP's image tower and the
        L2-normalised frame embeddings are averaged (CLIP4Clip's zero-shot "meanP"); nothing is trained
        and there is no projection. Index with :meth:`add_videos`, search in any of the text tower's
        languages, save and push like any mtvr model.
        """
        from .option_values import positive_int

        num_frames = positive_int("num_frames", num_frames)
        from .config import FrameEncoderConfig
        from .zero_shot import MULTILINGUAL_CLIP_LANGUAGES, ZERO_SHOT_TEXT_TOWER, vision_embedding_dim

        dim = vision_embedding_dim(vision)
        model, tokenizer = VideoTextModel.from_text_encoder_with_tokenizer(
            text,
            text_tower=ZERO_SHOT_TEXT_TOWER,
            embed_dim=dim,
            video_feature_dim=dim,
            projection="none",
            normalize_frames=True,
            aggregator="mean",
            max_frames=max(num_frames, 1),
            languages=list(languages or MULTILINGUAL_CLIP_LANGUAGES),
            frame_encoder=FrameEncoderConfig(name_or_path=str(vision), num_frames=num_frames),
            zero_shot=True,
        )
        return cls(model, tokenizer, device=device, **kwargs)

    def save_pretrained(
        self,
        folder: str | os.PathLike,
        extra_files: dict[str, str | bytes] | Callable[[Path], dict[str, str | bytes]] | None = None,
    ) -> Path:
        """Write the model folder atomically: a crash never leaves a half-written model.

        ``extra_files`` maps file names to contents written beside the model (e.g. README.md); or it is a
        function given the staged folder (model and tokenizer written, loadable) that returns them, e.g. the
        results of evaluating exactly what is being exported (the training pipeline's one export).
        """
        folder = Path(folder)
        if not callable(extra_files):
            _check_extra_names(extra_files or {})
        with atomic_folder(folder) as tmp:
            self.model.save_pretrained(tmp)
            self.model.tower.save_tokenizer(self.tokenizer, tmp)
            if callable(extra_files):
                extra_files = extra_files(tmp)
                _check_extra_names(extra_files)
            for name, content in (extra_files or {}).items():
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return folder

    # ----------------------------------------------------------------- Hub
    def stage_for_hub(self, folder: str | os.PathLike, repo_id: str) -> Path:
        """Write what ``push_to_hub`` uploads: weights, config, tokenizer, ``README.md`` (model card),
        ``results.json``, the recipe and ``evaluate.py``."""
        import json
        from importlib import resources

        from .hub.card import render_model_card

        extra: dict[str, str | bytes] = {}
        src = self.source_folder
        results = {}
        if src is not None and (src / "results.json").is_file():
            extra["results.json"] = (src / "results.json").read_bytes()
            results = json.loads(extra["results.json"])
        recipe = (
            (src / "recipe.yaml").read_text(encoding="utf-8")
            if src is not None and (src / "recipe.yaml").is_file()
            else None
        )
        if recipe:
            extra["recipe.yaml"] = recipe
        extra["README.md"] = render_model_card(self.config, results, repo_id, recipe)
        extra["evaluate.py"] = (resources.files("mtvr.hub.templates") / "evaluate.py").read_bytes()
        return self.save_pretrained(folder, extra_files=extra)

    def push_to_hub(
        self,
        repo_id: str,
        token: str | None = None,
        private: bool = False,
        commit_message: str | None = None,
        revision: str | None = None,
    ) -> str:
        """Stage the model folder and upload it (``create_repo(exist_ok=True)`` + ``upload_folder``).

        The token comes from the argument, ``HF_TOKEN`` or the saved login, and is never logged.
        """
        import tempfile

        from .hub.upload import upload_folder_to_hub

        with tempfile.TemporaryDirectory(prefix="mtvr-push-") as tmp:
            staged = self.stage_for_hub(Path(tmp) / "model", repo_id)
            return upload_folder_to_hub(
                staged,
                repo_id,
                repo_type="model",
                token=token,
                private=private,
                commit_message=commit_message or "Upload mtvr retriever",
                revision=revision,
            )

    # ----------------------------------------------------------------- encoding
    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        max_len = min(self.config.max_text_length, getattr(self.tokenizer, "model_max_length", 10**6))
        for t in texts:
            if len(t) > 4 * max_len:  # cheap pre-filter; only long texts are tokenized twice
                n = self.model.tower.token_count(self.tokenizer, t, self.config.text_prompt)
                if n > max_len:
                    warnings.warn(
                        f"query of {len(t)} characters ({n} tokens) truncated to {max_len} tokens", stacklevel=3
                    )
        return self.model.tower.tokenize(self.tokenizer, texts, max_len, self.device, self.config.text_prompt)

    def encode_text(
        self, texts: str | Sequence[str], batch_size: int = 64, show_progress: bool | None = None
    ) -> np.ndarray:
        """L2-normalised text embeddings, float32 ``(n, embed_dim)``, in the order given."""
        texts = validate_queries(list(texts) if not isinstance(texts, str) else texts)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch
        out = np.empty((len(texts), self.config.embed_dim), dtype=np.float32)
        show = show_progress if show_progress is not None else len(texts) > 8 * batch_size
        # one thread for a handful of queries, all (or MTVR_NUM_THREADS) for batches: mtvr.threads
        with torch.inference_mode(), torch_threads(min(len(texts), batch_size)):
            for start in tqdm(range(0, len(texts), batch_size), desc="encode text", disable=not show):
                idx = order[start : start + batch_size]
                enc = self._tokenize([texts[i] for i in idx])
                out[idx] = (
                    self._onnx.encode(enc)
                    if self._onnx is not None
                    else self.model.encode_text(**enc).float().cpu().numpy()
                )
        return out

    @property
    def text_encoder(self) -> str:
        """What encodes queries: ``"torch"``, or ``"onnx"`` / ``"onnx-int8"`` after :meth:`use_text_encoder`."""
        return "torch" if self._onnx is None else self._onnx.kind

    def use_text_encoder(
        self,
        kind: str = "torch",
        check_queries: Sequence[str] = (),
        min_agreement: float = 0.99,
        k: int = 10,
    ) -> float | None:
        """Encode queries with torch (``"torch"``) or ONNX Runtime (``"onnx"``, ``"onnx-int8"``: the model's text
        side exported and optionally int8-quantised, :mod:`mtvr.onnx_text`), CPU only.

        An ONNX encoder is accepted only if the index's top ``k`` for ``check_queries`` (queries like the ones it
        will serve; ``mtvr search/serve`` default to the demo's) are the same videos at the same ranks as with
        torch on at least ``min_agreement`` of the positions; otherwise :class:`~mtvr.onnx_text.EncoderAgreementError`
        is raised and torch stays. Returns the measured agreement (``None`` for torch).
        """
        from .onnx_text import (
            TEXT_ENCODERS,
            EncoderAgreementError,
            OnnxTextEncoder,
            top_k_agreement,
        )

        if kind not in TEXT_ENCODERS:
            raise OptionError(f"text encoder {kind!r}: choose one of {', '.join(TEXT_ENCODERS)}")
        if not 0.0 < float(min_agreement) <= 1.0:
            raise OptionError(f"min_agreement must be in (0, 1], got {min_agreement!r}")
        self._onnx = None
        if kind == "torch":
            return None
        if self.device.type != "cpu":
            raise OptionError(f"text encoder {kind!r} runs on the CPU; this retriever is on {self.device}")
        if self.index is None or len(self.index) == 0:
            raise VideoIndexError(f"text encoder {kind!r} is checked against the index's results: load an index first")
        if isinstance(check_queries, str) or not check_queries:
            raise OptionError(f"text encoder {kind!r} needs check_queries: queries to compare its results with torch's")
        queries = validate_queries(list(check_queries))
        reference = self.encode_text(queries)
        encoder = OnnxTextEncoder.export(self.model, self._tokenize(queries[:2]), quantize=kind == "onnx-int8")
        self._onnx = encoder
        try:
            agreement = top_k_agreement(self.index, reference, self.encode_text(queries), k)
        except BaseException:
            self._onnx = None
            raise
        if agreement < min_agreement:
            self._onnx = None
            raise EncoderAgreementError(
                f"text encoder {kind!r}: the top-{k} results of {len(queries)} queries agree with torch on "
                f"{agreement:.2%} of positions, under the {min_agreement:.0%} required; queries stay on torch"
            )
        return agreement

    def encode_video_features(
        self,
        features: Sequence[np.ndarray | torch.Tensor] | np.ndarray,
        num_frames: Sequence[int] | None = None,
        batch_size: int = 256,
    ) -> np.ndarray:
        """L2-normalised video embeddings from precomputed frame features ``[T_i, D]`` (T may vary)."""
        if isinstance(features, np.ndarray) and features.ndim == 2:
            features = [features]
        features = list(features)
        out = np.empty((len(features), self.config.embed_dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(features), batch_size):
                chunk = features[start : start + batch_size]
                nf = None if num_frames is None else list(num_frames)[start : start + batch_size]
                x, mask = pad_frame_features(chunk, self.config.max_frames, nf)
                if x.shape[-1] != self.config.video_feature_dim:
                    raise OptionError(
                        f"frame features have size {x.shape[-1]}; this model expects "
                        f"{self.config.video_feature_dim} (frame encoder {self.config.frame_encoder.name_or_path})"
                    )
                emb = self.model.encode_video(x.to(self.device), mask.to(self.device))
                out[start : start + len(chunk)] = emb.float().cpu().numpy()
        return out

    # ----------------------------------------------------------------- raw videos
    @property
    def frame_encoder(self):
        """The model's own frame encoder (``config.frame_encoder``), built on first use."""
        if self._frame_encoder is None:
            from .video.encoder import build_frame_encoder

            self._frame_encoder = build_frame_encoder(self.config.frame_encoder.name_or_path, device=self.device)
        return self._frame_encoder

    def encode_videos(
        self, videos: Sequence[Any], workers: int = 0, clips_per_batch: int = 16, show_progress: bool | None = None
    ) -> VideoEmbeddings:
        """Decode, encode and aggregate raw videos with the model's frame encoder config (its ``num_frames`` and
        ``sampling``), through the extraction pipeline (:mod:`mtvr.video.pipeline`; decoding in ``workers``
        processes, or in this one).

        ``videos`` holds paths, :class:`~mtvr.video.ClipSpec` objects or ``(path, start, end)`` tuples.
        Videos that cannot be decoded are skipped and listed in ``errors`` (never fatal).
        """
        from .video.extract import as_clip_specs
        from .video.pipeline import ClipDecoder, Decoded, EncodedBatch, ExtractionJob, Sampling, SourceDone, run

        specs = as_clip_specs(videos)
        encoder = self.frame_encoder
        job = ExtractionJob(  # the frames sampled as the model's frame encoder config says (num_frames, sampling)
            specs,
            ClipDecoder(Sampling.of(self.config.frame_encoder, encoder)),
            encoder,
            encoder,
            clips_per_batch,
            workers,
        )
        ids: list[str] = []
        chunks: list[np.ndarray] = []
        errors: list[dict] = []
        show = show_progress if show_progress is not None else len(specs) > 16
        with tqdm(total=len(specs), desc="encode videos", disable=not show) as bar:
            for event in run(job, "processes" if workers > 0 else "inline"):
                if isinstance(event, EncodedBatch):
                    chunks.append(self.encode_video_features(list(event.features), num_frames=event.num_real))
                    ids.extend(d.spec.clip_id for d in event.items)
                elif isinstance(event, Decoded):
                    errors.append({"file": event.spec.path, "clip": event.spec.clip_id, "reason": event.error})
                elif isinstance(event, SourceDone):
                    bar.update(1)
        for e in errors:
            logger.warning("skipped video %s: %s", e["file"], e["reason"])
        emb = np.concatenate(chunks) if chunks else np.zeros((0, self.config.embed_dim), np.float32)
        return VideoEmbeddings(ids, emb, errors)

    def add_videos(
        self,
        videos: Sequence[Any],
        metadata: dict[str, dict[str, Any]] | None = None,
        workers: int = 0,
        replace: bool = False,
        segments: str = "clip",
        window: float = 4.0,
        stride: float = 2.0,
        shot_threshold: float = 27.0,
    ) -> VideoEmbeddings:
        """Decode + encode + aggregate + add to the index in one call; returns what was added and the errors.

        ``segments="clip"`` (default) adds one embedding per file or ``(path, start, end)`` clip.
        ``"window"`` adds overlapping windows of ``window`` seconds every ``stride`` seconds and ``"shots"``
        the shots PySceneDetect finds (long shots split into windows): see :mod:`mtvr.video.segments`.
        Each file is decoded once for all its segments. Every entry's metadata holds ``file``, ``start`` and
        ``end`` (seconds) and, for segments, ``video`` (the file's clip id); ``metadata[clip_id]`` is added
        to every segment of that file. Segments a file could not give (corrupt mid-way) are in ``errors``
        with their ``start``/``end``; the segments decoded before are kept.
        """
        from .video.extract import as_clip_specs, check_unique_clips

        if segments != "clip":
            return self._add_segmented(videos, metadata, workers, replace, segments, window, stride, shot_threshold)
        specs = {s.clip_id: s for s in check_unique_clips(as_clip_specs(videos))}  # a repeated id is an error
        result = self.encode_videos(list(specs.values()), workers=workers)
        if result.video_ids:
            meta = []
            for v in result.video_ids:  # where the clip comes from (file name and segment), then the caller's
                spec = specs[v]
                source = {"file": Path(spec.path).name}
                if spec.start is not None:
                    source["start"] = float(spec.start)
                if spec.end is not None:
                    source["end"] = float(spec.end)
                meta.append({**source, **((metadata or {}).get(v) or {})})
            self._ensure_index().add(result.video_ids, result.embeddings, meta, replace=replace)
        return result

    def _add_segmented(
        self,
        videos: Sequence[Any],
        metadata: dict[str, dict[str, Any]] | None,
        workers: int,
        replace: bool,
        segments: str,
        window: float,
        stride: float,
        shot_threshold: float,
    ) -> VideoEmbeddings:
        """``add_videos`` for ``segments="window"|"shots"``: each file's segments are added once it is decoded."""
        from .video.extract import as_clip_specs, check_unique_clips
        from .video.segment_extract import SegmentOptions, encode_segments, segment_metadata

        opts = SegmentOptions(segments, window, stride, shot_threshold)
        specs = check_unique_clips(as_clip_specs(videos))
        for spec in specs:
            if spec.start is not None or spec.end is not None:
                raise OptionError(f"clip {spec.clip_id!r} has bounds: segments={segments!r} cuts whole files only")
        index = self._ensure_index()
        by_video = self._segments_by_video()
        present = [s.clip_id for s in specs if s.clip_id in by_video]
        if present and not replace:  # refuse before decoding anything
            raise VideoIndexError(
                f"video {present[0]!r} already has segments in the index; pass replace=True to re-index it"
            )
        ids: list[str] = []
        embs: list[np.ndarray] = []
        metas: list[dict] = []
        fe = self.config.frame_encoder
        for batch in encode_segments(specs, self.frame_encoder, opts, fe.num_frames, workers=workers):
            embs.append(self.encode_video_features(list(batch.features), num_frames=batch.num_real))
            for sid, spec, seg in zip(batch.ids, batch.specs, batch.segments):
                ids.append(sid)
                metas.append({**segment_metadata(spec, seg, segments), **((metadata or {}).get(spec.clip_id) or {})})
        for e in opts.errors:
            logger.warning("skipped %s: %s", e["file"], e["reason"])
        emb = np.concatenate(embs) if embs else np.zeros((0, self.config.embed_dim), np.float32)
        # files that gave segments replace their old ones in one step (a file that failed keeps its old ones)
        done = {m["video"] for m in metas}
        old = [i for v in present if v in done for i in by_video[v]]
        if ids:
            with_old = set(old)
            clash = [i for i in ids if i in index and i not in with_old]
            if clash:
                raise VideoIndexError(f"segment id {clash[0]!r} is already in the index as another entry")
            if old:  # ids and embeddings are checked: the add after the remove does not fail on them
                index.remove(old)
            index.add(ids, emb, metas)
        return VideoEmbeddings(ids, emb, opts.errors)

    def _segments_by_video(self) -> dict[str, list[str]]:
        """``{clip id of a file: ids of its segments}`` for the files added with segments."""
        out: dict[str, list[str]] = {}
        if self.index is not None:
            for vid, meta in self.index.metadata_items():
                if "video" in meta:
                    out.setdefault(meta["video"], []).append(vid)
        return out

    # ----------------------------------------------------------------- index
    def _ensure_index(self) -> VideoIndex:
        if self.index is None:
            self.index = VideoIndex(self.config.embed_dim, self.index_kind, **self.index_options)
        return self.index

    def add(
        self,
        video_ids: Sequence[str],
        embeddings: np.ndarray | None = None,
        features: Sequence[np.ndarray] | None = None,
        metadata: Sequence[dict[str, Any] | None] | None = None,
        num_frames: Sequence[int] | None = None,
        replace: bool = False,
    ) -> None:
        """Add videos to the index, from video ``embeddings`` or from precomputed frame ``features``."""
        if (embeddings is None) == (features is None):
            raise OptionError("pass exactly one of embeddings= or features=")
        if embeddings is None:
            embeddings = self.encode_video_features(features, num_frames=num_frames)
        self._ensure_index().add(video_ids, embeddings, metadata, replace=replace)

    def add_feature_store(
        self,
        store_dir: str | os.PathLike,
        batch_size: int = 1024,
        segments: str | None = None,
        replace: bool = False,
        progress: bool = True,
    ) -> int:
        """Add every entry of a feature store (``mtvr extract-features``), ``batch_size`` entries per encoder call.

        A store of segments (``extract_features(segments=...)``) adds each segment with its ``file``, ``start``,
        ``end`` and ``video`` metadata. ``segments`` (``"clip"``, ``"window"``, ``"shots"``), when given other
        than ``"clip"``, must be what the store holds. Returns how many entries were added.
        """
        from tqdm.auto import tqdm

        from .video.segment_extract import store_entry_metadata
        from .video.store import FeatureStore

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise OptionError(f"batch_size must be a positive integer, got {batch_size!r}")
        store = FeatureStore(store_dir)
        meta = store_entry_metadata(store, segments)
        ids = store.clip_ids
        for start in tqdm(range(0, len(ids), batch_size), desc="index", unit="batch", disable=not progress):
            chunk = ids[start : start + batch_size]
            entries = store.get_many(chunk)
            self.add(
                chunk,
                features=[f for f, _ in entries],
                num_frames=[n for _, n in entries],
                metadata=[meta.get(c) for c in chunk] if meta else None,
                replace=replace,
            )
        return len(ids)

    def remove(self, video_ids: Sequence[str]) -> int:
        """Remove entries by id; the clip id of a file added with segments removes all its segments.

        Returns how many index entries were removed; an id that is neither an entry nor a segmented file
        raises :class:`VideoIndexError` and nothing is removed.
        """
        if self.index is None:
            raise VideoIndexError("the index is empty: nothing to remove")
        from .index import check_video_ids

        by_video = self._segments_by_video()
        expanded: list[str] = []
        for v in check_video_ids(video_ids):
            expanded.extend([v] if v in self.index else by_video.get(v, [v]))
        return self.index.remove(list(dict.fromkeys(expanded)))

    def search(
        self,
        query: str | Sequence[str],
        k: int = 10,
        filter: Mapping[str, Any] | None = None,
        group_by: str | None = None,
        merge: bool = False,
        nms: bool = True,
        merge_margin: float = 0.05,
    ) -> list[SearchHit] | list[list[SearchHit]]:
        """Search the index: a string gives a list of hits; a list of strings gives one list per query.

        ``filter`` (:mod:`mtvr.filters`: ``{"file": "a.mp4"}``, ``{"year": {"$gte": 2020}}``, ``{"lang":
        {"$in": [...]}}``) runs inside the index search: a selective filter still returns ``k`` hits when
        ``k`` match; one that matches nothing returns ``[]``. Hits are moments (:mod:`mtvr.moments`): by
        default no two hits of a file overlap in time (temporal NMS, ``nms=False`` to keep every window),
        ``merge=True`` joins adjacent windows that score within ``merge_margin`` of the best into one longer
        moment, and
        ``group_by="file"`` keeps the best moment of each file. Every hit's metadata has ``file`` and, for
        segments, ``start``/``end`` seconds.
        """
        from .filters import parse_filter
        from .moments import to_moments

        queries = validate_queries(query)
        wanted = parse_filter(filter) or None
        to_moments(
            [], nms=nms, merge=merge, merge_margin=merge_margin, group_by=group_by
        )  # check the options before encoding
        n = self._index_size()  # one count per search (a query to the database on Milvus)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise VideoIndexError(f"k must be a positive integer, got {k!r}")
        hits = self._search_encoded(
            self.encode_text(queries), k, wanted, n, group_by=group_by, merge=merge, nms=nms, merge_margin=merge_margin
        )
        return hits[0] if isinstance(query, str) else hits

    def _index_size(self) -> int:
        """The number of index entries, counted once (``len`` is a count query on a database backend);
        an empty or missing index raises :class:`VideoIndexError`."""
        n = 0 if self.index is None else len(self.index)
        if n == 0:
            raise EmptyIndexError("the index is empty: add videos (Retriever.add / add_videos) before searching")
        return n

    def search_embeddings(
        self,
        q: np.ndarray,
        k: int = 10,
        filter: Mapping[str, Any] | Any = None,
        group_by: str | None = None,
        merge: bool = False,
        nms: bool = True,
        merge_margin: float = 0.05,
    ) -> list[list[SearchHit]]:
        """:meth:`search` for query embeddings already encoded (``[n, dim]``, e.g. by the server's batched
        encoder thread, :mod:`mtvr.serve.batching`): one list of hits per row."""
        from .filters import parse_filter

        n = self._index_size()
        wanted = parse_filter(filter) or None
        return self._search_encoded(q, k, wanted, n, group_by=group_by, merge=merge, nms=nms, merge_margin=merge_margin)

    def _search_encoded(
        self,
        q: np.ndarray,
        k: int,
        wanted: Any,
        n: int,
        *,
        group_by: str | None,
        merge: bool,
        nms: bool,
        merge_margin: float,
    ) -> list[list[SearchHit]]:
        """:meth:`search_embeddings` once the index size ``n`` is known and the filter parsed."""
        from .moments import to_moments

        if not (nms or merge or group_by):
            return self.index.search(q, k=k, filter=wanted)
        # moments remove overlapping windows: fetch more than k, and more again until k moments are found
        fetch = min(n, max(4 * int(k), int(k) + 32))
        rows = self.index.search(q, k=fetch, filter=wanted)
        out = []
        for i, hits in enumerate(rows):
            size = fetch
            while True:
                moments = to_moments(hits, nms=nms, merge=merge, merge_margin=merge_margin, group_by=group_by)
                if len(moments) >= k or len(hits) < size or size >= n:
                    break
                size = min(n, size * 4)
                hits = self.index.search(q[i], k=size, filter=wanted)[0]
            out.append(moments[:k])
        return out

    def save_index(self, folder: str | os.PathLike) -> Path:
        if self.index is None:
            raise VideoIndexError("no index to save: add videos first")
        return self.index.save(folder)

    def load_index(self, location: str | os.PathLike, **options: Any) -> IndexBackend:
        """Use the index at ``location``: a folder written by :meth:`save_index` (faiss), or a Milvus
        collection (``milvus-lite:///abs/path/videos.db#clips``, ``milvus://host:19530#clips``).

        ``options`` go to the backend (Milvus: ``token=``, ``timeout=``, ``create=True`` to create a missing
        collection for this model's ``embed_dim``...). The index replaces the current one.
        """
        from .index import open_index, split_location

        if split_location(location)[0] != "faiss":
            options.setdefault("dim", self.config.embed_dim)
            options.setdefault("create", False)
        index = open_index(location, **options)
        if index.dim != self.config.embed_dim:
            index.close()
            raise VideoIndexError(f"index {location} has dim {index.dim}; this model embeds in {self.config.embed_dim}")
        self.index = index
        return index
