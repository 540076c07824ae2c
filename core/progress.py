"""Progress bars (tqdm) that stay quiet when output is not a terminal or when asked."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    return sys.stderr.isatty() and os.environ.get("EDGEAMP_NO_PROGRESS", "") == ""


def progress(iterable: Iterable[T], desc: str = "", unit: str = "it", leave: bool = True, total=None) -> Iterable[T]:
    if not enabled():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit=unit, leave=leave, total=total, dynamic_ncols=True)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(total: int, desc: str = "", unit: str = "it", unit_scale: bool = False):
    """A bar updated by hand (``with progress_bar(n) as bar: bar.update(k)``); a no-op when quiet."""
    if not enabled():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, dynamic_ncols=True)
