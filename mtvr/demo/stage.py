"""How every demo stage reports on the console: ``[n/7] title``, its lines indented, ``done in X s``.

One template for all stages (the stage modules print through :meth:`Stage.say`); the times are kept for the
results and the HTML report.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

STAGES = 7  # numbered stages of the demo
HEADER = "\n[{n}/{total}] {title}"
LINE = "      {text}"
DONE = "      done in {seconds:.1f} s"


class Stage:
    """The demo's stage reporter: ``with stage(3, "train ..."):`` prints the header and the time taken."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, n: int | str, title: str) -> Iterator[Stage]:
        print(HEADER.format(n=n, total=STAGES, title=title) if isinstance(n, int) else f"\n[{n}] {title}", flush=True)
        start = time.perf_counter()
        yield self
        self.times[title] = time.perf_counter() - start
        print(DONE.format(seconds=self.times[title]), flush=True)

    @staticmethod
    def say(text: str) -> None:
        """One line of a stage's report, indented under its header."""
        print(LINE.format(text=text), flush=True)

    @property
    def total(self) -> float:
        return time.perf_counter() - self.t0
