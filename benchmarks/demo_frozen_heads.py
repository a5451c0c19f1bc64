"""Step 2 of the validation-only probe (after benchmarks/demo_frozen_encode.py): train the demo's heads (a linear
text projection over the cached frozen-tower outputs, a linear frame projection + mean over frames, symmetric
InfoNCE at tau 0.05, 5 of 9 languages per step, Adam, decay 0.75 per epoch: the demo's baseline) for each
configuration given, and print the best validation mean R@1, per-language R@1 and the curve. ``center=True``
subtracts the training captions' mean tower output first (what ``text_centering`` does in mtvr).

    python benchmarks/demo_frozen_heads.py OUT '[{"epochs": 10}, {"epochs": 10, "center": true}]'

The committed log ran: mpnet (English) 10 epochs; e5 10 epochs at lr 3e-3 (the recipes'), at lr 3e-2, centred,
a LayerNorm head at lr 1e-2, an MLP head at lr 3e-3.

Its printout (run once on 2 cores shared with other jobs, load average 8-11) is committed as
benchmarks/results_committed/demo_frozen_heads.log.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mtvr.clipset import load_clipset
from mtvr.demo.data import LANGUAGES
from mtvr.metrics import text_to_video_ranks

torch.set_num_threads(2)
out = Path(sys.argv[1])
E = torch.load(out / "emb_cache.pt")
tr = load_clipset(str(out / "dataset"), "all", "train", out / "features", LANGUAGES)
va = load_clipset(str(out / "dataset"), "all", "validation", out / "features", LANGUAGES)


def text_tensor(cs, name, langs):
    e = E[name]
    return {l: [torch.stack([e[t] for t in caps]) for caps in cs.captions[l]] for l in langs}


def run(
    name, langs, lr=3e-3, decay=0.75, epochs=20, tau=0.05, head="linear", center=False, lps=5, seed=0, bs=32, wd=0.0
):
    torch.manual_seed(seed)
    T_tr, T_va = text_tensor(tr, name, langs), text_tensor(va, name, langs)
    d = next(iter(E[name].values())).shape[0]
    mu = torch.zeros(d)
    if center:
        mu = torch.cat([torch.cat(v) for v in T_tr.values()]).mean(0)
    if head == "linear":
        th = nn.Linear(d, 128)
    elif head == "mlp":
        th = nn.Sequential(nn.Linear(d, 512), nn.GELU(), nn.Linear(512, 128))
    elif head == "ln":
        th = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 128))
    vh = nn.Linear(tr.features.shape[-1], 128)
    params = list(th.parameters()) + list(vh.parameters())
    opt = torch.optim.Adam(params, lr=lr, weight_decay=wd)
    sch = torch.optim.lr_scheduler.ExponentialLR(opt, decay)

    def enc_v(feats, mask):
        f = vh(feats)
        m = mask.float().unsqueeze(-1)
        return F.normalize((f * m).sum(1) / m.sum(1).clamp_min(1), dim=-1)

    def enc_t(x):
        return F.normalize(th(x - mu), dim=-1)

    n = len(tr)
    curve = []
    for ep in range(epochs):
        g = np.random.default_rng([seed, ep])
        perm = g.permutation(n)
        sent = {i: g.integers(len(T_tr["en"][i])) for i in range(n)}
        for s in range(0, n, bs):
            idx = perm[s : s + bs]
            if len(idx) < 2:
                continue
            ls = langs if len(langs) <= lps else [langs[i] for i in sorted(g.choice(len(langs), lps, replace=False))]
            v = enc_v(tr.features[idx], tr.mask[idx])
            loss = 0
            for l in ls:
                t = enc_t(torch.stack([T_tr[l][i][sent[i]] for i in idx]))
                sims = t @ v.T / tau
                y = torch.arange(len(idx))
                loss = loss + F.cross_entropy(sims, y) + F.cross_entropy(sims.T, y)
            loss = loss / len(ls)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sch.step()
        with torch.no_grad():
            v = enc_v(va.features, va.mask).numpy()
            r = {}
            for l in langs:
                texts = torch.cat(T_va[l])
                owner = np.concatenate([[i] * len(c) for i, c in enumerate(T_va[l])])
                sims = enc_t(texts).numpy() @ v.T
                ranks = text_to_video_ranks(sims, owner, video_groups=va.video_groups)
                r[l] = 100 * (ranks == 1).mean()
        curve.append((np.mean(list(r.values())), r))
    best = max(range(len(curve)), key=lambda i: curve[i][0])
    return best + 1, curve[best], [round(c[0], 1) for c in curve]


E5, MP = "intfloat/multilingual-e5-small", "sentence-transformers/all-mpnet-base-v2"
configs = json.loads(sys.argv[2]) if len(sys.argv) > 2 else [{}]  # the committed run passed the same dicts to eval
for cfg in configs:
    name = cfg.pop("model", E5)
    langs = ["en"] if name == MP else LANGUAGES
    t0 = time.perf_counter()
    be, (m, r), curve = run(name, langs, **cfg)
    print(
        f"{name.split('/')[-1]} {cfg}: best ep {be} mean {m:.1f} "
        + " ".join(f"{l}:{v:.0f}" for l, v in r.items())
        + f" | curve {curve} ({time.perf_counter() - t0:.0f}s)",
        flush=True,
    )
