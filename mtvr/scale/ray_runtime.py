"""Connecting to Ray: an existing cluster (``address``), the one this process already joined, or a local one."""

from __future__ import annotations

from typing import Any

from ..errors import MissingDependencyError


def require_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError('the Ray engine needs Ray Data: pip install "mtvr[ray]"') from exc
    return ray


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """``ray.init`` once: ``address`` (``ray://host:10001`` or ``auto``) joins a cluster; none starts a local one."""
    ray = require_ray()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
        if address:
            kwargs["address"] = address
        elif num_cpus:
            kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
    return ray
