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

CORPUS = [
    "a person is slicing onions in the kitchen", "a man plays the guitar on a stage",
    "una persona corta cebollas en la cocina", "ein mann spielt gitarre auf der bühne",
    "une femme cuisine des pâtes", "一个人在厨房里切洋葱", "mtu anakata vitunguu jikoni",
    "a red circle moves to the left", "a blue square grows", "the cat jumps over the dog",
    "человек режет лук на кухне", "người đàn ông chơi đàn guitar", "人が玉ねぎを切っている",
] * 3

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    from mtvr.tiny import build_tiny_text_encoder

    return build_tiny_text_encoder(tmp_path_factory.mktemp("tiny_bert"), CORPUS, hidden_size=32, vocab_size=400)


@pytest.fixture()
def tiny_retriever(tiny_encoder_dir):
    import torch

    from mtvr import Retriever

    torch.manual_seed(0)
    return Retriever.from_text_encoder(str(tiny_encoder_dir), device="cpu", video_feature_dim=16, embed_dim=24,
                                       aggregator="seqtransf", max_frames=8, seqtransf_heads=4)
