"""The batch plan of an epoch: a seeded permutation cut into global batches.

``optim.batch_size`` is the **global** batch (the paper's batch): with N processes, accelerate's
``split_batches=True`` gives each process ``batch_size / N`` clips of every batch, and the losses see
the gathered global batch, so N processes train like one. The permutation of epoch ``e`` depends only
on ``(seed, e)``, which makes ``--resume`` exact.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class ClipIndices(Dataset):
    """Item ``i`` is the clip index ``i``: the trainer indexes its in-memory tensors with the batch."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class EpochBatchSampler(Sampler[list[int]]):
    """Global batches of one epoch; the last batch may be smaller (``drop_last=False``).

    With several processes accelerate completes that last batch with clips from the start of the
    epoch (``even_batches``), so every process takes the same number of steps and none is dropped.
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.drop_last = False
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        for i in range(0, self.n, self.batch_size):
            yield order[i : i + self.batch_size].tolist()


def collate_indices(batch: list[int]) -> torch.Tensor:
    return torch.tensor(batch, dtype=torch.long)


def epoch_loader(n: int, batch_size: int, seed: int) -> tuple[torch.utils.data.DataLoader, EpochBatchSampler]:
    sampler = EpochBatchSampler(n, batch_size, seed)
    loader = torch.utils.data.DataLoader(ClipIndices(n), batch_sampler=sampler, collate_fn=collate_indices)
    return loader, sampler
