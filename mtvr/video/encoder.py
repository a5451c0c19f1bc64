"""Frame encoders: images ``uint8 [N, S, S, 3]`` → frame features ``float [N, D]``.

:class:`CLIPFrameEncoder` wraps ``transformers.CLIPVisionModelWithProjection`` (default
``openai/clip-vit-base-patch32``; any CLIP-family Hub id or local folder) and the PIL-based CLIP image
processor, which works without torchvision. Inference runs under ``torch.inference_mode``, batched
across clips, in fp16/bf16 on CUDA.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import OptionError
from .frame_encoders import FrameEncoder, build_frame_encoder  # noqa: F401  (re-exported)


def _autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    raise OptionError(f"unknown precision {precision!r}; use fp32, fp16 or bf16")


class CLIPFrameEncoder:
    """CLIP vision tower with projection: one embedding per frame."""

    def __init__(
        self,
        name_or_path: str | os.PathLike = "openai/clip-vit-base-patch32",
        device: str | torch.device | None = None,
        precision: str = "fp16",
        batch_size: int = 256,
        revision: str | None = None,
    ) -> None:
        from transformers import CLIPImageProcessorPil, CLIPVisionModelWithProjection

        self.name = str(name_or_path)
        from ..devices import default_device

        self.device = default_device(device)
        self.dtype = _autocast_dtype(self.device, precision)
        from transformers import AutoConfig

        from ..errors import ModelLoadError
        from ..hub.download import resolve_folder
        from ..text_towers import refuse_pickle_only

        folder = resolve_folder(self.name, revision=revision)
        refuse_pickle_only(folder, "CLIP vision checkpoint")
        if not any(folder.glob("*.safetensors")):
            raise ModelLoadError(f"CLIP vision checkpoint {folder} has no *.safetensors weights")
        try:
            full = AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"CLIP vision checkpoint {folder}: its config.json cannot be read ({exc})") from exc
        vision_cfg = getattr(full, "vision_config", full)
        if hasattr(full, "vision_config") and hasattr(full, "projection_dim"):
            vision_cfg.projection_dim = full.projection_dim  # a full CLIPModel checkpoint
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # a full CLIPModel's text weights are expected to go unused
        try:
            model, info = CLIPVisionModelWithProjection.from_pretrained(
                str(folder),
                config=vision_cfg,
                use_safetensors=True,
                trust_remote_code=False,
                dtype=self.dtype or torch.float32,
                output_loading_info=True,
            )
        finally:
            hf_logging.set_verbosity(level)
        if info.get("missing_keys"):  # transformers would initialise them at random, differently on every load
            missing = sorted(info["missing_keys"])
            raise ModelLoadError(
                f"CLIP vision checkpoint {folder} lacks {len(missing)} weight(s) ({', '.join(missing[:4])}"
                f"{', ...' if len(missing) > 4 else ''}): they would be random; give the complete checkpoint"
            )
        self.model = model.to(self.device).eval()
        try:
            self.processor = CLIPImageProcessorPil.from_pretrained(str(folder))
        except OSError:  # a bare vision checkpoint without preprocessor_config.json: CLIP's defaults
            self.processor = CLIPImageProcessorPil()
        self.image_size = int(self.model.config.image_size)
        self.feature_dim = int(self.model.config.projection_dim)
        self.batch_size = batch_size

    def encode(self, frames: np.ndarray) -> np.ndarray:
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise OptionError(f"frames must be uint8 [N, H, W, 3], got {frames.shape}")
        out = []
        with torch.inference_mode():
            for s in range(0, len(frames), self.batch_size):
                chunk = list(frames[s : s + self.batch_size])
                same = frames.shape[1] == frames.shape[2] == self.image_size
                pixels = self.processor(images=chunk, return_tensors="pt", do_resize=not same, do_center_crop=not same)[
                    "pixel_values"
                ]
                pixels = pixels.to(self.device, dtype=self.dtype or torch.float32)
                out.append(self.model(pixel_values=pixels).image_embeds.float().cpu())
        return torch.cat(out).numpy()
