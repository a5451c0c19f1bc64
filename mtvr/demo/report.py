"""The demo's HTML report: ``report.html`` (the template beside this module) filled with the chart, the
per-language comparison, the queries with key frames and the stage timings."""

from __future__ import annotations

import base64
import html
import io
from importlib import resources
from pathlib import Path
from string import Template

import numpy as np

from .data import LANGUAGES


def _png_b64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _chart(results: dict, chance: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(LANGUAGES))
    fig, ax = plt.subplots(figsize=(10, 4))
    for offset, model, label in ((-0.2, "baseline", "translate-train baseline"), (0.2, "c2kd", "C2KD")):
        r1 = np.array([results[model][l]["R@1"] for l in LANGUAGES])
        err = np.array(
            [
                [r1[i] - results[model][l]["ci_low"], results[model][l]["ci_high"] - r1[i]]
                for i, l in enumerate(LANGUAGES)
            ]
        ).T
        ax.bar(x + offset, r1, 0.4, yerr=err, capsize=3, label=f"{label} (95% CI)")
    teacher = results["teacher"]["en"]["R@1"]
    ax.axhline(teacher, color="gray", ls="--", lw=1, label=f"English teacher on English ({teacher:.1f})")
    ax.axhline(chance, color="red", ls=":", lw=1, label=f"chance ({chance:.2f})")
    ax.set_xticks(x, LANGUAGES)
    ax.set_ylabel("test R@1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Multi-Shapes text→video retrieval per query language (bootstrap 95% intervals over queries)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=4, frameon=False)
    chart = _png_b64(fig)
    plt.close(fig)
    return chart


def _rows(results: dict, diffs: dict, seed_summary: dict | None) -> str:
    rows = []
    for l in LANGUAGES:
        b, c, d = results["baseline"][l], results["c2kd"][l], diffs[l]
        verdict = (
            ("C2KD better" if d["diff"] > 0 else "C2KD worse") if d["significant"] else "no significant difference"
        )
        seeds = ""
        if seed_summary:
            m, sd = seed_summary["diff"][l]
            seeds = f"<td>{m:+.1f} ± {sd:.1f}</td>"
        rows.append(
            f"<tr><td>{l}</td><td>{b['R@1']:.1f} [{b['ci_low']:.1f}, {b['ci_high']:.1f}]</td>"
            f"<td>{c['R@1']:.1f} [{c['ci_low']:.1f}, {c['ci_high']:.1f}]</td>"
            f"<td>{d['diff']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}]</td><td>{verdict}</td>{seeds}</tr>"
        )
    return "\n".join(rows)


def _queries(queries: list[dict]) -> str:
    parts = []
    for q in queries:
        parts.append(
            f'<h3 lang="{q["language"]}">[{q["language"]}] {html.escape(q["query"])}</h3>'
            f"<p>target: {html.escape(q['target'])}</p><ol>"
        )
        for h in q["hits"]:
            mark = " ✔ matches the query" if h.get("match") else ""
            parts.append(
                f"<li>{html.escape(h['video_id'])} ({h['score']:.3f}){mark}<br/>"
                f'<img src="data:image/png;base64,{h["thumb"]}" alt="keyframes of {html.escape(h["video_id"])}"/></li>'
            )
        parts.append("</ol>")
    return "\n".join(parts)


def write_report(
    out: Path,
    results: dict,
    diffs: dict,
    seed_summary: dict | None,
    queries: list[dict],
    chance: float,
    times: dict[str, float],
) -> Path:
    """Write ``out/report.html`` from the template; returns its path."""
    template = Template((resources.files("mtvr.demo") / "report.html").read_text(encoding="utf-8"))
    page = template.substitute(
        queries=len(next(iter(results["c2kd"].values()))["hits"]),
        teacher=f"{results['teacher']['en']['R@1']:.1f}",
        chance=f"{chance:.2f}",
        chart=_chart(results, chance),
        seed_header="<th>difference over seeds (mean ± std)</th>" if seed_summary else "",
        rows=_rows(results, diffs, seed_summary),
        queries_html=_queries(queries),
        timings="".join(f"<li>{html.escape(k)}: {v:.1f} s</li>" for k, v in times.items()),
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
