"""The one extraction pipeline (decode → batch → encode → sink): Retriever.encode_videos honours the frame
encoder's configured sampling, every executor gives the same features, and no other module runs its own
decode → encode loop."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from mtvr import Retriever
from mtvr.config import FrameEncoderConfig
from mtvr.video.frame_encoders import register_frame_encoder
from mtvr.video.render import write_video

STEP = 12  # frame i of the test video is filled with the grey level STEP * i


class FrameRecorder:
    """A frame encoder that records which frame of the test video each encoded frame is."""

    feature_dim = 2
    image_size = 16
    seen: list[list[int]] = []

    def __init__(self, name_or_path: str = "toy/recorder", device=None, **_):
        self.name = name_or_path

    def encode_clips(self, clips):
        grey = clips.reshape(*clips.shape[:2], -1).mean(-1)
        FrameRecorder.seen.extend([[int(round(v / STEP)) for v in clip] for clip in grey])
        return np.stack([grey / 255.0, np.ones_like(grey)], -1).astype(np.float32)

    def encode(self, frames):  # pragma: no cover - encode_clips is preferred
        return self.encode_clips(frames[None])[0]


register_frame_encoder("toy/recorder", FrameRecorder)


@pytest.fixture(scope="module")
def numbered_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("numbered") / "numbered.mp4"
    frames = np.zeros((20, 32, 32, 3), np.uint8)
    for i in range(20):
        frames[i] = STEP * i
    write_video(path, frames, fps=10, codec="mpeg4")
    return path


def _retriever(tiny_encoder_dir, sampling: str) -> Retriever:
    fe = FrameEncoderConfig(name_or_path="toy/recorder", num_frames=4, image_size=16, sampling=sampling)
    return Retriever.from_text_encoder(
        str(tiny_encoder_dir), device="cpu", embed_dim=8, video_feature_dim=2, frame_encoder=fe
    )


def test_encode_videos_samples_frames_as_the_frame_encoder_config_says(tiny_encoder_dir, numbered_video):
    """Regression: encode_videos (behind add_videos) hard-coded "uniform" sampling whatever the model's
    frame_encoder.sampling said."""
    from mtvr.video.decode import sample_frames

    uniform = sample_frames(numbered_video, 4, size=16, sampling="uniform").indices
    FrameRecorder.seen.clear()
    _retriever(tiny_encoder_dir, "uniform").encode_videos([numbered_video])
    assert FrameRecorder.seen == [uniform]  # the recorder reads frame numbers right
    FrameRecorder.seen.clear()
    r = _retriever(tiny_encoder_dir, "random")
    for _ in range(4):
        assert r.encode_videos([numbered_video]).video_ids == ["numbered"]
    # random sampling picks one frame in each quarter of the video (5 frames); 4 draws all equal to the uniform
    # middles has probability (1/5)^16
    assert len(FrameRecorder.seen) == 4 and any(seq != uniform for seq in FrameRecorder.seen)
    for seq in FrameRecorder.seen:
        assert [s // 5 for s in seq] == [0, 1, 2, 3], seq
    bogus = _retriever(tiny_encoder_dir, "bogus").encode_videos([numbered_video])
    assert bogus.video_ids == [] and "unknown sampling 'bogus'" in bogus.errors[0]["reason"]


@pytest.mark.parametrize("executor", ["processes", "threads"])
def test_every_executor_gives_the_inline_features(tmp_path, numbered_video, executor):
    from mtvr.video.extract import extract_clips
    from mtvr.video.shape_encoder import ShapeStatsEncoder
    from mtvr.video.store import FeatureStore

    clips = [(numbered_video, 0.0, 2.0), (numbered_video, 1.0, 3.5), tmp_path / "missing.mp4", numbered_video]
    from mtvr.video.extract import as_clip_specs

    specs = as_clip_specs(clips)
    stores = {}
    for name in ("inline", executor):
        summary = extract_clips(
            specs, tmp_path / name, ShapeStatsEncoder(image_size=32), 4, workers=2, clips_per_batch=2,
            shard_size=2, progress=False, executor=name,
        )  # fmt: skip
        assert (summary.done, summary.failed) == (3, 1) and summary.errors[0]["clip"] == "missing"
        stores[name] = FeatureStore(tmp_path / name)
    a, b = stores["inline"], stores[executor]
    assert a.clip_ids == b.clip_ids and len(a.clip_ids) == 3
    for (fa, na), (fb, nb) in zip(a.get_many(a.clip_ids), b.get_many(b.clip_ids)):
        assert na == nb and np.array_equal(fa, fb)


def test_only_the_pipeline_runs_the_decode_encode_loop():
    """extract_features, Retriever.encode_videos, segment extraction and the Ray executor all reach the frame
    encoder through the pipeline's encode stage (the Ray executor's encoder actor is its one remote copy)."""
    import mtvr

    root = Path(mtvr.__file__).parent
    calls: dict[str, set[str]] = {"encode_clips": set(), "sample_frames": set()}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name in calls:
                    calls[name].add(path.relative_to(root).as_posix())
    # (video/clips.py is encode_clips itself, calling an encoder's own encode_clips)
    assert calls["encode_clips"] == {"video/pipeline.py", "scale/ray_extract.py", "video/clips.py"}, calls
    # sample_frames decodes for the encoder only in the pipeline (the server and the demo draw thumbnails with it)
    others = {m for m in calls["sample_frames"] if not m.startswith(("serve/", "demo/"))}
    assert others == {"video/pipeline.py"}, calls
