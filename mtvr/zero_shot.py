"""Zero-shot multilingual video retrieval from public checkpoints (``Retriever.from_zero_shot``).

A multilingual text tower distilled into CLIP's text space (sentence-transformers'
``clip-ViT-B-32-multilingual-v1``, Reimers & Gurevych 2020's multilingual knowledge distillation) and the
matching CLIP image tower (``openai/clip-vit-base-patch32``) share one embedding space. A video is its
CLIP frame embeddings, L2-normalised and averaged (CLIP4Clip's zero-shot "meanP", Luo et al. 2022).
"""

from __future__ import annotations

from .errors import ModelLoadError

DEFAULT_TEXT = "sentence-transformers/clip-ViT-B-32-multilingual-v1"
DEFAULT_VISION = "openai/clip-vit-base-patch32"
ZERO_SHOT_TEXT_TOWER = "sentence-transformers"  # the text tower kind (mtvr.text_towers) that reads DEFAULT_TEXT

# The languages sentence-transformers lists for clip-ViT-B-32-multilingual-v1 (its model card).
MULTILINGUAL_CLIP_LANGUAGES = [
    "ar", "bg", "ca", "cs", "da", "de", "el", "en", "es", "et", "fa", "fi", "fr", "fr-ca", "gl", "gu", "he", "hi",
    "hr", "hu", "hy", "id", "it", "ja", "ka", "ko", "ku", "lt", "lv", "mk", "mn", "mr", "ms", "my", "nb", "nl",
    "pl", "pt", "pt-br", "ro", "ru", "sk", "sl", "sq", "sr", "sv", "th", "tr", "uk", "ur", "vi", "zh-cn", "zh-tw",
]  # fmt: skip


def vision_embedding_dim(vision: str) -> int:
    """The projected image-embedding size of a CLIP checkpoint (its ``projection_dim``)."""
    from transformers import AutoConfig

    from .hub.download import resolve_folder

    folder = resolve_folder(vision)
    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{vision}: not a CLIP checkpoint ({exc})") from exc
    dim = getattr(config, "projection_dim", None)
    if dim is None:
        raise ModelLoadError(f"{vision}: its config has no projection_dim; give a CLIP checkpoint")
    return int(dim)
