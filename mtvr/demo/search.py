"""The demo's stages 6 and 7: export the C2KD student to a local "hub" folder, load it back, index the test clips
from their MP4 files and search them in three languages."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np

from .data import recaption, rows
from .stage import Stage

HUB_REPO = "mtvr/multi-shapes-c2kd"
QUERY_LANGUAGES = ("de", "zh", "es")  # es: the dataset's own apertium caption; the others: the grammar's


def export_and_index(out: Path, export_dir: Path, stage: Stage) -> tuple[Any, Path, dict[str, dict]]:
    """Stage 6: the exported student staged for the Hub in ``out/hub``, loaded back, the test clips indexed from
    their video files (index saved in ``out/index``). Returns the retriever, the hub folder and the test rows."""
    from ..retriever import Retriever

    hub_dir = out / "hub" / HUB_REPO
    Retriever.from_pretrained(export_dir).stage_for_hub(hub_dir, HUB_REPO)
    stage.say(f"{hub_dir}: {', '.join(sorted(p.name for p in hub_dir.iterdir()))}")
    retriever = Retriever.from_pretrained(hub_dir)
    test_rows = {r["clip_id"]: r for r in rows(out / "dataset", "test")}
    added = retriever.add_videos([str(out / "videos" / f"{cid}.mp4") for cid in test_rows], workers=2)
    stage.say(f"indexed {len(added.video_ids)} test clips from their MP4 files ({len(added.errors)} failed)")
    retriever.save_index(out / "index")
    return retriever, hub_dir, test_rows


def search_queries(retriever: Any, out: Path, test_rows: dict[str, dict], seed: int, stage: Stage) -> list[dict]:
    """Stage 7: one query per language of :data:`QUERY_LANGUAGES` for a random test clip; prints the top 3 and
    returns them (with key-frame thumbnails) for the report."""
    rng = np.random.default_rng(seed)
    queries = []
    for lang, cid in zip(QUERY_LANGUAGES, rng.choice(sorted(test_rows), len(QUERY_LANGUAGES), replace=False)):
        row = test_rows[cid]
        text = row["captions"][lang] if lang == "es" else recaption(row["captions"]["en"], lang)
        hits = retriever.search(text, k=3)
        stage.say(f"[{lang}] {text}   (target {cid})")
        for h in hits:
            match = test_rows[h.video_id]["scene"] == row["scene"]
            stage.say(f"   {h.rank}. {h.video_id}  score {h.score:.3f}{'  <- matches the query' if match else ''}")
        queries.append(
            {
                "language": lang,
                "query": text,
                "target": cid,
                "hits": [
                    {
                        "video_id": h.video_id,
                        "score": h.score,
                        "match": test_rows[h.video_id]["scene"] == row["scene"],
                        "thumb": thumb_b64(str(out / "videos" / f"{h.video_id}.mp4")),
                    }
                    for h in hits
                ],
            }
        )
    return queries


def thumb_b64(path: str) -> str:
    """Three key frames of a clip side by side, as a base64 PNG."""
    from PIL import Image

    from ..video.decode import sample_frames

    frames = sample_frames(path, 3, size=None).frames
    img = Image.fromarray(np.concatenate(list(frames), axis=1)).resize((64 * 3 * 2, 64 * 2), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()
