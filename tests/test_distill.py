"""Each distillation loss against a straightforward implementation written here (values and gradients)."""

import math

import pytest
import torch
from torch.nn import functional as F

from mtvr.aggregation import AFAAggregator, build_aggregator
from mtvr.config import VideoTextConfig
from mtvr.distill import C2KDLoss, ContrastiveLoss, DistillInputs, MCKDLoss, TeachTextLoss

B, E, K, T = 6, 8, 3, 5


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def make_inputs(seed=0, langs=("en", "de")):
    s_text = {l: unit(B, E, seed=seed + i).requires_grad_() for i, l in enumerate(langs)}
    s_video = unit(B, E, seed=seed + 10).requires_grad_()
    return DistillInputs(
        student_text=s_text,
        student_video=s_video,
        teacher_text=unit(K, B, E, seed=seed + 20),
        teacher_video=unit(K, B, E, seed=seed + 30),
    )


# --- independent reference implementations (explicit loops) ---
def ref_softmax(row, tau):
    ex = [math.exp(x / tau) for x in row]
    z = sum(ex)
    return [e / z for e in ex]


def ref_info_nce(S, tau):
    n = len(S)
    t2v = -sum(math.log(ref_softmax(S[i], tau)[i]) for i in range(n)) / n
    cols = [[S[j][i] for j in range(n)] for i in range(n)]
    v2t = -sum(math.log(ref_softmax(cols[i], tau)[i]) for i in range(n)) / n
    return 0.5 * (t2v + v2t)


def ref_kl_rows(Tm, Sm, tau):
    total = 0.0
    for trow, srow in zip(Tm, Sm):
        p, q = ref_softmax(trow, tau), ref_softmax(srow, tau)
        total += sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))
    return total / len(Tm)


def transpose(M):
    return [list(r) for r in zip(*M)]


def lists(x):
    return x.detach().tolist()


def check_grad(loss_fn, inputs, ref_fn):
    """Compare autograd gradients of the loss with central finite differences of the reference."""
    loss, _ = loss_fn(inputs)
    loss.backward()
    x = inputs.student_video
    eps = 1e-6
    for idx in [(0, 0), (2, 3), (5, 7)]:
        with torch.no_grad():
            x[idx] += eps
            up = ref_fn(inputs)
            x[idx] -= 2 * eps
            down = ref_fn(inputs)
            x[idx] += eps
        assert x.grad[idx].item() == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-7)


def test_contrastive_matches_reference():
    inp = make_inputs()
    loss, _ = ContrastiveLoss(0.07)(inp)
    ref = sum(ref_info_nce(lists(inp.student_sims(l)), 0.07) for l in inp.student_text) / 2
    assert loss.item() == pytest.approx(ref, rel=1e-10)
    check_grad(
        ContrastiveLoss(0.07),
        make_inputs(),
        lambda i: sum(ref_info_nce(lists(i.student_sims(l)), 0.07) for l in i.student_text) / 2,
    )


def test_c2kd_kl_is_zero_when_student_equals_teacher_and_positive_otherwise():
    t = unit(1, B, E, seed=1)
    v = unit(1, B, E, seed=2)
    same = DistillInputs({"en": t[0].clone()}, v[0].clone(), teacher_text=t, teacher_video=v)
    _, logs = C2KDLoss(balance=0.5, num_teachers=1)(same)
    assert abs(logs["kl"]) < 1e-12
    _, logs = C2KDLoss(balance=0.5, num_teachers=1)(make_inputs())
    assert logs["kl"] > 1e-3


def test_teachers_get_no_gradient():
    inp = make_inputs()
    inp.teacher_text.requires_grad_()
    loss, _ = C2KDLoss(num_teachers=K)(inp)
    loss.backward()
    assert inp.teacher_text.grad is None


def test_teachtext_matches_reference():
    inp = make_inputs(seed=5)

    def ref(i):
        target = [
            [sum(lists(i.teacher_text[k] @ i.teacher_video[k].T)[a][b] for k in range(K)) / K for b in range(B)]
            for a in range(B)
        ]
        total = 0.0
        for l in i.student_text:
            S = lists(i.student_sims(l))
            huber = sum(
                (0.5 * (S[a][b] - target[a][b]) ** 2)
                if abs(S[a][b] - target[a][b]) < 1
                else abs(S[a][b] - target[a][b]) - 0.5
                for a in range(B)
                for b in range(B)
            ) / (B * B)
            total += ref_info_nce(S, 0.05) + 2.0 * huber
        return total / len(i.student_text)

    loss, _ = TeachTextLoss(weight=2.0, temperature=0.05)(inp)
    assert loss.item() == pytest.approx(ref(inp), rel=1e-10)
    check_grad(TeachTextLoss(weight=2.0, temperature=0.05), make_inputs(seed=5), ref)


def test_mckd_matches_reference():
    inp = make_inputs(seed=11)

    def struct_kl(Tm, Sm, tau, drop_diag):
        total = 0.0
        for i, (tr, sr) in enumerate(zip(Tm, Sm)):
            idx = [j for j in range(len(tr)) if not (drop_diag and j == i)]
            p = ref_softmax([tr[j] for j in idx], tau)
            q = ref_softmax([sr[j] for j in idx], tau)
            total += sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q))
        return total / len(Tm)

    def ref(i):
        def avg(f):
            return [[sum(f(k)[a][b] for k in range(K)) / K for b in range(B)] for a in range(B)]

        tt = avg(lambda k: lists(i.teacher_text[k] @ i.teacher_text[k].T))
        vv = avg(lambda k: lists(i.teacher_video[k] @ i.teacher_video[k].T))
        tv = avg(lambda k: lists(i.teacher_text[k] @ i.teacher_video[k].T))
        u = i.student_video
        kl_vv = struct_kl(vv, lists(u @ u.T), 0.1, True)
        total = 0.0
        for l, s in i.student_text.items():
            C = lists(s @ u.T)
            total += (
                ref_info_nce(C, 0.05)
                + 0.5 * struct_kl(tt, lists(s @ s.T), 0.1, True)
                + 2.0 * struct_kl(tv, C, 0.1, False)
            )
        return total / len(i.student_text) + 1.5 * kl_vv

    loss_fn = MCKDLoss(temperature=0.05, distill_temperature=0.1, w_text_text=0.5, w_video_video=1.5, w_text_video=2.0)
    loss, _ = loss_fn(inp)
    assert loss.item() == pytest.approx(ref(inp), rel=1e-9)
    check_grad(loss_fn, make_inputs(seed=11), ref)


def test_afa_weights_are_a_distribution_over_real_frames():
    torch.manual_seed(0)
    agg = AFAAggregator(VideoTextConfig(embed_dim=E, afa_temperature=0.1, afa_weight_temperature=1.0))
    x = torch.randn(4, T, E)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    video, logw = agg(x, mask)
    w = logw.exp()
    assert (w >= 0).all() and torch.allclose(w.sum(-1), torch.ones(4)) and (w[~mask] == 0).all()
    # padding content does not matter
    x2 = x.clone()
    x2[~mask] = 1e3
    video2, logw2 = agg(x2, mask)
    assert torch.allclose(video, video2) and torch.allclose(logw.exp(), logw2.exp())
    # official modeling.py: aggregate at temperature 0.1, distil the weights at temperature 1
    scores = agg.scorer(x).squeeze(-1).masked_fill(~mask, float("-inf"))
    expected = (torch.softmax(scores / 0.1, -1).unsqueeze(-1) * F.normalize(x, dim=-1)).sum(1)
    assert torch.allclose(video, expected)
    assert torch.allclose(w, torch.softmax(scores, -1))


def test_seqtransf_afa_runs_afa_after_the_temporal_transformer():
    torch.manual_seed(0)
    cfg = VideoTextConfig(embed_dim=E, aggregator="seqtransf+afa", max_frames=T, seqtransf_heads=2)
    agg = build_aggregator(cfg).eval()
    x = torch.randn(3, T, E)
    mask = torch.ones(3, T, dtype=torch.bool)
    mask[1, 2:] = False
    video, logw = agg(x, mask)
    h = agg.temporal(x, mask)
    expected, expected_logw = agg.afa(h, mask)
    assert torch.allclose(video, expected) and torch.allclose(logw, expected_logw)
    assert not torch.allclose(video, agg.afa(x, mask)[0])
