"""Neural MT backends on Hugging Face seq2seq checkpoints: ``transformers`` and ``ctranslate2``.

Families and their language codes:

* ``marian``: one model per pair, ``Helsinki-NLP/opus-mt-{src}-{tgt}`` (exceptions in :data:`MARIAN_IDS`).
* ``nllb``: ``facebook/nllb-200-distilled-600M`` with FLORES-200 codes (:data:`NLLB_CODES`).
* ``m2m100``: ``facebook/m2m100_418M`` with ISO 639-1 codes.

Weights are loaded from safetensors only. Batches are sorted by length; beam search; the GPU is used
when there is one (transformers) or int8 on the CPU (ctranslate2).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ComponentError, OptionError
from .base import TranslationError, Translator

NLLB_CODES = {
    "en": "eng_Latn",
    "de": "deu_Latn",
    "fr": "fra_Latn",
    "cs": "ces_Latn",
    "zh": "zho_Hans",
    "ru": "rus_Cyrl",
    "vi": "vie_Latn",
    "sw": "swh_Latn",
    "es": "spa_Latn",
    "ja": "jpn_Jpan",
}
M2M100_CODES = {k: k for k in NLLB_CODES}
MARIAN_IDS = {("en", "ja"): "Helsinki-NLP/opus-tatoeba-en-ja", ("en", "cs"): "Helsinki-NLP/opus-mt-en-cs"}
DEFAULT_MODELS = {"nllb": "facebook/nllb-200-distilled-600M", "m2m100": "facebook/m2m100_418M"}
FAMILIES = ("marian", "nllb", "m2m100")


def _codes(family: str) -> dict[str, str]:
    return NLLB_CODES if family == "nllb" else M2M100_CODES


class _Seq2SeqBase(Translator):
    def __init__(
        self,
        family: str = "marian",
        model: str | None = None,
        models: dict[str, str] | None = None,
        num_beams: int = 4,
        max_new_tokens: int = 256,
        min_new_tokens: int = 0,
        batch_size: int = 32,
    ) -> None:
        if family not in FAMILIES:
            raise ComponentError(f"unknown model family {family!r}; choose one of {FAMILIES}")
        self.family, self.model, self.models = family, model, dict(models or {})
        self.num_beams, self.max_new_tokens, self.min_new_tokens = num_beams, max_new_tokens, min_new_tokens
        self.batch_size = batch_size
        self._loaded: dict[str, Any] = {}

    def model_id(self, src: str, tgt: str) -> str:
        if f"{src}-{tgt}" in self.models:
            return self.models[f"{src}-{tgt}"]
        if self.family == "marian":
            return MARIAN_IDS.get((src, tgt), f"Helsinki-NLP/opus-mt-{src}-{tgt}")
        if self.model:
            return self.model
        return DEFAULT_MODELS[self.family]

    def _check_codes(self, src: str, tgt: str) -> None:
        if self.family != "marian":
            codes = _codes(self.family)
            for c in (src, tgt):
                if c not in codes:
                    raise OptionError(
                        f"unknown language code {c!r} for {self.family}; supported: {', '.join(sorted(codes))}"
                    )

    def _tokenizer(self, path: str, src: str):
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        if self.family != "marian":
            tok.src_lang = _codes(self.family)[src]
        return tok

    def _forced_bos(self, tokenizer, tgt: str) -> int | None:
        if self.family == "marian":
            return None
        return tokenizer.convert_tokens_to_ids(_codes(self.family)[tgt] if self.family == "nllb" else f"__{tgt}__")

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        self._check_codes(src, tgt)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        out: list[str] = [""] * len(texts)
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            for i, t in zip(idx, self._translate_batch([texts[i] for i in idx], src, tgt)):
                out[i] = t
        return out


def _local_weights_folder(model_id: str) -> str:
    """A local folder for ``model_id`` with safetensors weights (downloaded without pickles)."""
    if Path(model_id).is_dir():
        folder = Path(model_id)
    else:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        try:
            folder = Path(
                snapshot_download(
                    model_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.spm", "tokenizer*"]
                )
            )
        except LocalEntryNotFoundError:
            raise TranslationError(
                f"translation model {model_id!r} is not in the Hub cache and the Hub cannot be "
                "reached; download it once online or pass a local folder"
            ) from None
        except HfHubHTTPError as exc:
            raise TranslationError(f"cannot download translation model {model_id!r}: {exc}") from None
    if not list(folder.glob("*.safetensors")):
        raise TranslationError(
            f"{model_id} has no safetensors weights; mtvr never loads pickle checkpoints. "
            "Use a revision with model.safetensors (e.g. the Hub's refs/pr conversion)."
        )
    return str(folder)


class TransformersTranslator(_Seq2SeqBase):
    """``AutoModelForSeq2SeqLM.generate`` with beam search (GPU when present)."""

    name = "transformers"

    def __init__(self, *args: Any, device: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

        from ..devices import default_device

        self.device = str(default_device(device))

    def _load(self, src: str, tgt: str):
        model_id = self.model_id(src, tgt)
        if model_id not in self._loaded:
            from transformers import AutoModelForSeq2SeqLM

            path = _local_weights_folder(model_id)
            model = AutoModelForSeq2SeqLM.from_pretrained(path, use_safetensors=True, trust_remote_code=False)
            self._loaded[model_id] = (model.to(self.device).eval(), path)
        model, path = self._loaded[model_id]
        return model, self._tokenizer(path, src)

    def _translate_batch(self, texts: list[str], src: str, tgt: str) -> list[str]:
        import torch

        model, tok = self._load(src, tgt)
        enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=512).to(self.device)
        kwargs = {
            "num_beams": self.num_beams,
            "max_new_tokens": self.max_new_tokens,
            "min_new_tokens": self.min_new_tokens,
        }
        bos = self._forced_bos(tok, tgt)
        if bos is not None:
            kwargs["forced_bos_token_id"] = bos
        with torch.inference_mode():
            generated = model.generate(**enc, **kwargs)
        return [t.strip() for t in tok.batch_decode(generated, skip_special_tokens=True)]


class CTranslate2Translator(_Seq2SeqBase):
    """The same checkpoints converted to CTranslate2 (int8 on the CPU by default), cached on disk."""

    name = "ctranslate2"

    def __init__(
        self,
        *args: Any,
        compute_type: str = "int8",
        device: str = "cpu",
        converted_dir: str | os.PathLike | None = None,
        intra_threads: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.compute_type, self.device, self.intra_threads = compute_type, device, intra_threads
        self.converted_dir = Path(converted_dir or Path.home() / ".cache" / "mtvr" / "ctranslate2")

    def model_id(self, src: str, tgt: str) -> str:
        return f"{super().model_id(src, tgt)}@ct2-{self.compute_type}"

    def _load(self, src: str, tgt: str):
        import ctranslate2

        from .argos import SentencePieceCodec, argos_folder, is_argos_package

        model_id = super().model_id(src, tgt)
        if model_id not in self._loaded and is_argos_package(model_id):  # already CTranslate2 + SentencePiece
            folder = argos_folder(model_id, self.converted_dir / "argos")
            translator = ctranslate2.Translator(
                str(folder / "model"),
                device=self.device,
                compute_type=self.compute_type,
                intra_threads=self.intra_threads,
            )
            self._loaded[model_id] = (translator, SentencePieceCodec(folder / "sentencepiece.model"))
        if model_id not in self._loaded:
            path = _local_weights_folder(model_id)
            target = self.converted_dir / (model_id.strip("/").replace("/", "--") + f"-{self.compute_type}")
            if not (target / "model.bin").is_file():
                from ctranslate2.converters import TransformersConverter

                from ..atomic import atomic_folder

                with atomic_folder(target) as tmp:
                    TransformersConverter(path).convert(str(tmp), quantization=self.compute_type, force=True)
            translator = ctranslate2.Translator(
                str(target), device=self.device, compute_type=self.compute_type, intra_threads=self.intra_threads
            )
            self._loaded[model_id] = (translator, path)
        translator, path = self._loaded[model_id]
        if not isinstance(path, str):  # an Argos package brings its SentencePiece codec
            return translator, path
        return translator, self._tokenizer(path, src)

    def _translate_batch(self, texts: list[str], src: str, tgt: str) -> list[str]:
        from .argos import SentencePieceCodec

        translator, tok = self._load(src, tgt)
        if isinstance(tok, SentencePieceCodec):
            results = translator.translate_batch(
                [tok.encode(t) for t in texts],
                beam_size=self.num_beams,
                max_decoding_length=self.max_new_tokens,
                min_decoding_length=self.min_new_tokens,
            )
            return [tok.decode(r.hypotheses[0]) for r in results]
        tokens = [tok.convert_ids_to_tokens(tok.encode(t, truncation=True, max_length=512)) for t in texts]
        prefix = None
        if self.family != "marian":
            code = _codes(self.family)[tgt] if self.family == "nllb" else f"__{tgt}__"
            prefix = [[code]] * len(texts)
        results = translator.translate_batch(
            tokens,
            target_prefix=prefix,
            beam_size=self.num_beams,
            max_decoding_length=self.max_new_tokens,
            min_decoding_length=self.min_new_tokens,
        )
        out = []
        for r in results:
            hyp = r.hypotheses[0]
            if prefix:
                hyp = hyp[1:]
            out.append(tok.decode(tok.convert_tokens_to_ids(hyp), skip_special_tokens=True).strip())
        return out
