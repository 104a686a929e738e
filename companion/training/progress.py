"""Progress reporting shared by every training loop on both sides."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar

from companion.settings import progress_bars

T = TypeVar("T")


def batches(iterable: Iterable[T], total: int, desc: str) -> Iterator[T]:
    """Wrap a batch iterator in a tqdm bar when bars are on, else pass it through."""
    if not progress_bars():
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stdout)


def epoch_line(epoch: int, epochs: int, metrics: Mapping[str, float], seconds: float) -> str:
    """``epoch  3/20  train 0.0312  val 0.0335  (1.9 s)``: one readable line per epoch."""
    width = len(str(epochs))
    values = "  ".join(f"{name} {value:.4f}" for name, value in metrics.items())
    return f"epoch {epoch:>{width}}/{epochs}  {values}  ({seconds:.1f} s)"


def should_log(epoch: int, epochs: int, every: int) -> bool:
    """Log the first epoch, every ``every``-th one and the last; ``every <= 0`` logs none."""
    return every > 0 and (epoch == 1 or epoch % every == 0 or epoch == epochs)
