import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# datasets keys its cache of a local folder by the folder's name: give every test session its own cache
import tempfile  # noqa: E402

os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="mtvr-test-hf-datasets-")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from helpers import CORPUS  # noqa: E402


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    from helpers import build_tiny_text_encoder

    return build_tiny_text_encoder(tmp_path_factory.mktemp("tiny_bert"), CORPUS, hidden_size=32, vocab_size=400)


@pytest.fixture()
def tiny_retriever(tiny_encoder_dir):
    import torch

    from mtvr import Retriever

    torch.manual_seed(0)
    return Retriever.from_text_encoder(
        str(tiny_encoder_dir),
        device="cpu",
        video_feature_dim=16,
        embed_dim=24,
        aggregator="seqtransf",
        max_frames=8,
        seqtransf_heads=4,
    )
