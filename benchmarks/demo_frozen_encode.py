"""Step 1 of a quick validation-only probe of the demo's frozen towers (used to find why the frozen-e5 students
learned slowly; the settings themselves are recorded by benchmarks/demo_sweep.py).

Encodes every distinct train + validation caption of the full-size demo data (built by benchmarks/demo_sweep.py
or `mtvr demo` into OUT) once with the packaged multilingual-e5-small (prompt "query: ", 9 languages) and
all-mpnet-base-v2 (English), and saves them to OUT/emb_cache.pt for benchmarks/demo_frozen_heads.py. The test
split is never read.

    python benchmarks/demo_frozen_encode.py OUT
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from mtvr.clipset import load_clipset
from mtvr.demo.data import LANGUAGES

out = Path(sys.argv[1])
cache = out / "emb_cache.pt"
torch.set_num_threads(2)
tr = load_clipset(str(out / "dataset"), "all", "train", out / "features", LANGUAGES)
va = load_clipset(str(out / "dataset"), "all", "validation", out / "features", LANGUAGES)
print(
    "train clips",
    len(tr),
    "sents/clip",
    np.mean([len(s) for s in tr.captions["en"]]),
    "features",
    tuple(tr.features.shape),
)
if cache.exists():
    E = torch.load(cache)
else:
    E = {}
    from mtvr.hub.download import resolve_folder

    for name, prompt, langs in (
        ("intfloat/multilingual-e5-small", "query: ", LANGUAGES),
        ("sentence-transformers/all-mpnet-base-v2", "", ["en"]),
    ):
        m = SentenceTransformer(str(resolve_folder(name)), device="cpu")
        texts = sorted({prompt + t for cs in (tr, va) for l in langs for caps in cs.captions[l] for t in caps})
        t0 = time.perf_counter()
        if True:
            emb = m.encode(
                texts, batch_size=128, show_progress_bar=False, convert_to_tensor=True, normalize_embeddings=False
            ).float()
        dt = time.perf_counter() - t0
        print(f"{name}: {len(texts)} texts in {dt:.1f} s ({len(texts) / dt:.0f}/s)", flush=True)
        E[name] = {t[len(prompt) :]: e for t, e in zip(texts, emb)}
    torch.save(E, cache)
