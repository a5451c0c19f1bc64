"""Scale-out on Ray (``pip install "mtvr[ray]"``): frame-feature extraction across machines
(:mod:`mtvr.scale.ray_extract`) and sharded IVF-PQ index building (:mod:`mtvr.scale.sharded_index`).

Both write the same formats as the single-machine code: a :class:`~mtvr.video.store.FeatureStore` and a
:class:`~mtvr.index.VideoIndex` folder. See ``docs/scaling.md`` for running on a cluster and the cost model.
"""

from ..video.engines import register_engine
from ..video.pipeline import register_executor

# `extract_features(..., engine="ray")` and `mtvr extract-features --engine ray` run the extraction pipeline on
# Ray Data: its executor, registered into the pipeline (the video package never imports this one)
register_executor("ray", "mtvr.scale.ray_extract:ray_executor")
register_engine("ray", "mtvr.scale.ray_extract:extract_features_ray")
