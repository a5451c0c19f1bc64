"""`datasets` builders of mtvr's multilingual video datasets and the shared translate-and-score step."""

from .multi_msrvtt import MultiMSRVTT
from .multi_youcook2 import MultiYouCook2

__all__ = ["MultiMSRVTT", "MultiYouCook2"]
