"""A faster CPU text encoder: the text side of a :class:`~mtvr.modeling.VideoTextModel` in ONNX Runtime.

The whole query path of the model (text tower, pooling, projection, L2 normalisation) is exported once with
``torch.onnx`` (the TorchScript exporter: it needs no extra package and traces the sentence-transformers and
transformers towers mtvr uses) and run by ONNX Runtime's CPU provider. ``quantize=True`` adds ONNX Runtime's
dynamic int8 quantisation of the weights (``onnxruntime.quantization.quantize_dynamic``, per output channel: per
tensor lost 3-9 points of cosine on MiniLM, per channel 0.5-2).

An encoder changes the numbers a little (fp32: ~1e-7; int8: cosine ~0.98-0.995 to the torch embedding), so it is
accepted only if the search results stay the same: :func:`top_k_agreement` compares the top ``k`` of a set of
queries under both encoders position by position, and :meth:`mtvr.Retriever.use_text_encoder` refuses an encoder
under ``min_agreement`` (default 0.99) with :class:`EncoderAgreementError`.

Threads: one query is encoded on the calling thread (a session with one intra-op thread), batches on
``MTVR_NUM_THREADS`` or all cores (:mod:`mtvr.threads`), with ONNX Runtime's spin-waiting off so that its workers
do not burn a core that another process needs.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import MissingDependencyError, MtvrError, OptionError
from .threads import SMALL_TEXT_BATCH, threads_for

TEXT_ENCODERS = ("torch", "onnx", "onnx-int8")
DEFAULT_MIN_AGREEMENT = 0.99


class EncoderAgreementError(MtvrError, ValueError):
    """An alternative text encoder changes too many search results to be used in place of torch."""


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(
            "the ONNX text encoder needs onnxruntime: pip install 'mtvr[onnx]' (or onnxruntime onnx)"
        ) from exc
    return onnxruntime


class OnnxTextEncoder:
    """The query encoder of a model as an ONNX Runtime session: ``encode(tokenized) -> [n, embed_dim]`` float32.

    Build it with :meth:`export`; ``input_names`` are the tokenizer outputs the graph takes, in order.
    """

    def __init__(self, model_bytes: bytes, input_names: Sequence[str], quantized: bool) -> None:
        self._ort = _ort()
        self.model_bytes = model_bytes
        self.input_names = list(input_names)
        self.quantized = quantized
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._available = os.cpu_count() or 1

    @property
    def kind(self) -> str:
        return "onnx-int8" if self.quantized else "onnx"

    @classmethod
    def export(cls, model: Any, sample: Mapping[str, Any], quantize: bool = False) -> OnnxTextEncoder:
        """Export ``model.encode_text`` traced on ``sample`` (tokenizer output, torch tensors ``[B, L]``) with
        dynamic batch and length axes; ``quantize`` applies int8 dynamic quantisation to the weights."""
        ort = _ort()
        names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
        graph = _QueryGraph(model, names).eval()
        buffer = io.BytesIO()
        try:  # trace the tower, not a cache lookup
            with model.without_text_cache(), torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
                torch.onnx.export(
                    graph,
                    tuple(sample[n].cpu() for n in names),
                    buffer,
                    input_names=names,
                    output_names=["embeddings"],
                    dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "embeddings": {0: "batch"}},
                    opset_version=17,
                    dynamo=False,
                )
        except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds; one clear error names the model
            raise MtvrError(f"the text encoder cannot be exported to ONNX: {str(exc).splitlines()[0]}") from exc
        data = buffer.getvalue()
        if quantize:
            data = _quantize(data, ort)
        return cls(data, names, quantize)

    def session(self, threads: int) -> Any:
        """The session that runs on ``threads`` intra-op threads (built on first use, then shared)."""
        with self._lock:
            if threads not in self._sessions:
                opts = self._ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                opts.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                opts.log_severity_level = 3
                self._sessions[threads] = self._ort.InferenceSession(
                    self.model_bytes, opts, providers=["CPUExecutionProvider"]
                )
            return self._sessions[threads]

    def encode(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """Embeddings ``[n, embed_dim]`` (float32, L2-normalised) of tokenized texts (torch tensors or arrays)."""
        feed = {n: _numpy(inputs[n]).astype(np.int64, copy=False) for n in self.input_names}
        n = len(feed[self.input_names[0]])
        threads = threads_for(n, SMALL_TEXT_BATCH, self._available)
        return self.session(threads).run(None, feed)[0].astype(np.float32, copy=False)


class _QueryGraph(torch.nn.Module):
    """``model.encode_text`` as a module taking its inputs positionally (what the exporter traces)."""

    def __init__(self, model: Any, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(**dict(zip(self.names, tensors)))


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _quantize(data: bytes, ort: Any) -> bytes:
    """int8 dynamic quantisation (per output channel) of an fp32 ONNX graph, file to file as the tool wants."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="mtvr-onnx-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import logging

            level = logging.getLogger().level
            logging.getLogger().setLevel(logging.ERROR)  # "consider pre-processing" advice on the root logger
            try:
                quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
            finally:
                logging.getLogger().setLevel(level)
        return dst.read_bytes()


def top_k_agreement(index: Any, reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> float:
    """The fraction of result positions (query, rank) at which ``index`` returns the same video for the query
    embeddings ``candidate`` as for ``reference`` (rows: the same queries under two encoders), over the top
    ``min(k, len(index))``."""
    if reference.shape != candidate.shape or not len(reference):
        raise OptionError(f"reference {reference.shape} and candidate {candidate.shape} must be the same, non-empty")
    kk = min(int(k), len(index))
    ref = index.search(reference, k=kk)
    cand = index.search(candidate, k=kk)
    same = sum(a.video_id == b.video_id for ra, rb in zip(ref, cand) for a, b in zip(ra, rb))
    return same / (kk * len(reference))
