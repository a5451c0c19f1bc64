"""Test scaffolding: tiny random models written in their real on-disk layouts, and small data sets.

Nothing here downloads anything: WordPiece/BPE tokenizers are trained with ``tokenizers`` on the text
given, and the models are random ``BertConfig`` / ``CLIPVisionConfig`` / ``MarianConfig`` models saved
as safetensors. Benchmarks import it too (``sys.path`` insert); the installed library never does.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import BertConfig, BertModel, BertTokenizerFast

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

CORPUS = [
    "a person is slicing onions in the kitchen",
    "a man plays the guitar on a stage",
    "una persona corta cebollas en la cocina",
    "ein mann spielt gitarre auf der bühne",
    "une femme cuisine des pâtes",
    "一个人在厨房里切洋葱",
    "mtu anakata vitunguu jikoni",
    "a red circle moves to the left",
    "a blue square grows",
    "the cat jumps over the dog",
    "человек режет лук на кухне",
    "người đàn ông chơi đàn guitar",
    "人が玉ねぎを切っている",
] * 3

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

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
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    from tokenizers import decoders

    tok.decoder = decoders.WordPiece()
    return BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def build_tiny_text_encoder(
    folder: str | os.PathLike,
    corpus: Iterable[str],
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 2000,
    seed: int = 0,
) -> Path:
    """Write a random BERT encoder + a tokenizer trained on ``corpus`` to ``folder`` (safetensors)."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_wordpiece_tokenizer(corpus, vocab_size=vocab_size)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=4 * hidden_size,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


def build_tiny_clip_vision(
    folder: str | os.PathLike,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    projection_dim: int = 16,
    num_layers: int = 2,
    seed: int = 0,
) -> Path:
    """Write a random ``CLIPVisionModelWithProjection`` + its image processor config to ``folder``."""
    import torch
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(folder)
    config = CLIPVisionConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=max(1, hidden_size // 16),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    CLIPVisionModelWithProjection(config).save_pretrained(folder, safe_serialization=True)
    CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    ).save_pretrained(str(folder))
    return folder


def build_tiny_marian(
    folder: str | os.PathLike,
    corpus: Iterable[str],
    d_model: int = 32,
    layers: int = 1,
    vocab_size: int = 500,
    seed: int = 0,
) -> Path:
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
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", model_max_length=64
    )
    config = MarianConfig(
        vocab_size=len(fast),
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        max_position_embeddings=128,
        pad_token_id=fast.pad_token_id,
        eos_token_id=eos,
        decoder_start_token_id=fast.pad_token_id,
        forced_eos_token_id=eos,
        decoder_vocab_size=len(fast),
        share_encoder_decoder_embeddings=True,
    )
    torch.manual_seed(seed)
    MarianMTModel(config).save_pretrained(folder, safe_serialization=True)
    fast.save_pretrained(str(folder))
    return folder


def youcook2_fixture(folder: Path, n_videos=6, bad=None) -> Path:
    sentences = [
        "heat oil in a pan",
        "add the chopped onions",
        "stir fry the onions until brown",
        "add salt and pepper",
        "pour the sauce over the noodles",
        "cut the tomatoes into slices",
    ]
    db = {}
    for v in range(n_videos):
        db[f"vid{v:03d}"] = {
            "duration": 120.0,
            "subset": "training" if v < n_videos - 2 else "validation",
            "recipe_type": "113",
            "video_url": f"https://www.youtube.com/watch?v=vid{v:03d}",
            "annotations": [
                {"segment": [10 * i, 10 * i + 8], "id": i, "sentence": sentences[(v + i) % len(sentences)]}
                for i in range(3)
            ],
        }
    if bad:
        bad(db)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "youcookii_annotations_trainval.json"
    path.write_text(json.dumps({"database": db}))
    return folder


COLOURS = {"en": ["red", "blue", "green", "yellow"], "de": ["roter", "blauer", "grüner", "gelber"]}
SHAPES = {"en": ["circle", "square"], "de": ["kreis", "würfel"]}
SIZES = {"en": ["small", "big", "huge"], "de": ["kleiner", "großer", "riesiger"]}


def planted_data(tmp_path: Path, n_train=240, n_eval=48, t=4, d=12, seed=0):
    """Clips whose features encode (colour, shape); captions name them in en and de."""
    from mtvr.dataset_publishing import write_rows_dataset
    from mtvr.video.store import FeatureStore, StoreManifest

    rng = np.random.default_rng(seed)
    proto = rng.standard_normal((4, 2, 3, d)).astype(np.float32)
    store = FeatureStore(tmp_path / "features", StoreManifest("planted", t, 32, "uniform", d))
    rows = {"train": [], "validation": []}
    ids, feats, nums = [], [], []
    for split, n in (("train", n_train), ("validation", n_eval)):
        for i in range(n):
            c, s, z = rng.integers(4), rng.integers(2), rng.integers(3)
            cid = f"{split}{i:03d}"
            ids.append(cid)
            feats.append(proto[c, s, z] + 0.3 * rng.standard_normal((t, d)).astype(np.float32))
            nums.append(int(rng.integers(2, t + 1)))
            caps = {l: f"a {SIZES[l][z]} {COLOURS[l][c]} {SHAPES[l][s]}" for l in ("en", "de")}
            rows[split].append(
                {
                    "clip_id": cid,
                    "video_id": cid,
                    "sentence_id": "0",
                    "split": split,
                    "start": None,
                    "end": None,
                    "video_path": None,
                    "captions": caps,
                }
            )
    store.write_shard(ids, ids, feats, nums)
    write_rows_dataset(tmp_path / "dataset", rows)
    return tmp_path / "dataset", tmp_path / "features"


def recipe_dict(tmp_path, encoder, loss="c2kd", epochs=3, n_train=240, **over):
    dataset, features = planted_data(tmp_path, n_train=n_train)
    r = {
        "name": "tiny",
        "seed": 0,
        "data": {"dataset": str(dataset), "features": str(features), "languages": ["en", "de"]},
        "teachers": [{"name": "en", "text_encoder": str(encoder), "embed_dim": 16, "epochs": 6, "lr": 3e-3}],
        "student": {"text_encoder": str(encoder), "embed_dim": 16, "aggregator": "mean"},
        "loss": {"name": loss, "options": {"balance": 0.5, "temperature": 0.1} if loss == "c2kd" else {}},
        "optim": {"lr": 3e-3, "batch_size": 16, "epochs": epochs},
        "output_dir": str(tmp_path / "run"),
    }
    r.update(over)
    return r


def build_tiny_sentence_transformer(
    folder: str | os.PathLike,
    transformer_dir: str | os.PathLike,
    pooling_mode: str = "mean",
    dense_out: int | None = None,
    normalize: bool = False,
    seed: int = 0,
) -> Path:
    """A sentence-transformers folder in the classic on-disk layout of the Hub checkpoints:
    ``modules.json``, ``0_Transformer/``, ``1_Pooling/``, ``2_Dense/`` (optional), ``3_Normalize/``."""
    import torch
    from sentence_transformers import models as st_models

    folder = Path(folder)
    torch.manual_seed(seed)
    transformer = st_models.Transformer(str(transformer_dir), max_seq_length=64)
    dim = transformer.get_embedding_dimension()
    modules = [transformer, st_models.Pooling(dim, pooling_mode=pooling_mode)]
    if dense_out:
        modules.append(st_models.Dense(dim, dense_out, bias=False, activation_function=torch.nn.Identity()))
    if normalize:
        modules.append(st_models.Normalize())
    names = ["0_Transformer", "1_Pooling", "2_Dense", "3_Normalize"][: len(modules)]
    if not dense_out and normalize:
        names[-1] = "2_Normalize"
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, (module, name) in enumerate(zip(modules, names)):
        sub = folder / name
        sub.mkdir(exist_ok=True)
        module.save(str(sub), safe_serialization=True)
        # the type names that the Hub checkpoints' modules.json use
        entries.append(
            {"idx": i, "name": str(i), "path": name, "type": f"sentence_transformers.models.{type(module).__name__}"}
        )
    (folder / "modules.json").write_text(json.dumps(entries, indent=2))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"__version__": {}, "prompts": {}}))
    return folder


def build_tiny_clip(
    folder: str | os.PathLike,
    tokenizer_dir: str | os.PathLike,
    projection_dim: int = 16,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """A random ``CLIPModel`` (text + vision towers) with an image processor and a tokenizer, safetensors."""
    import torch
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessorPil, CLIPModel

    folder = Path(folder)
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
            "eos_token_id": tok.sep_token_id,
            "pad_token_id": tok.pad_token_id,
            "bos_token_id": tok.cls_token_id,
        },
        vision_config={
            "image_size": image_size,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(str(folder))
    CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    ).save_pretrained(str(folder))
    return folder


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def milvus_lite_server(data_dir: Path) -> Iterator[str]:
    """Milvus Lite run as a gRPC server in its own process on 127.0.0.1: yields ``milvus://127.0.0.1:PORT``.

    It speaks the protocol of a Milvus server, so several processes (Ray workers, serve replicas) can share it.
    """
    import socket
    import subprocess
    import sys
    import time

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir)]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("the Milvus Lite server did not start") from None
                time.sleep(0.3)
        yield f"milvus://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
