"""What a distillation loss sees for one batch of B clips."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import RecipeError


@dataclass
class DistillInputs:
    """Embeddings and similarity matrices of one batch.

    Attributes:
        student_text: ``{language: [B, E]}`` L2-normalised student caption embeddings.
        student_video: ``[B, E]`` L2-normalised student video embeddings.
        teacher_text: ``[K, B, E_t]`` teachers' embeddings of the **English** captions (no gradient).
        teacher_video: ``[K, B, E_t]`` teachers' video embeddings (no gradient).
        student_frame_log_weights: ``[B, T]`` log of the student's AFA frame weights, ``-inf`` on padding
            (TeachCLIP only).
        teacher_frame_logits: ``[K, B, T]`` teachers' caption-to-own-frame similarities (TeachCLIP only).
        frame_mask: ``[B, T]``, ``True`` on real frames.
    """

    student_text: dict[str, torch.Tensor]
    student_video: torch.Tensor
    teacher_text: torch.Tensor | None = None
    teacher_video: torch.Tensor | None = None
    student_frame_log_weights: torch.Tensor | None = None
    teacher_frame_logits: torch.Tensor | None = None
    frame_mask: torch.Tensor | None = None

    def student_sims(self, language: str) -> torch.Tensor:
        """``S_l [B, B]``: cosine similarity of caption i (language l) and video j."""
        return self.student_text[language] @ self.student_video.T

    def teacher_sims(self) -> torch.Tensor:
        """``T [K, B, B]`` from the English captions; detached: teachers are frozen."""
        if self.teacher_text is None or self.teacher_video is None:
            raise RecipeError("this loss needs teacher embeddings: the recipe must name at least one teacher")
        return torch.einsum("kie,kje->kij", self.teacher_text, self.teacher_video).detach()
