"""The console's ring buffers: the latest items, a fixed number of them, in the process.

Writers are on the request path (a span ending, a log record): they append to a
:class:`collections.deque` with a ``maxlen``, which is atomic under the GIL, takes no lock,
and drops the oldest item once full, so memory is bounded by the count whatever the
traffic. Readers (a console page) copy the buffer first and work on the copy.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Generic, TypeVar

__all__ = ["Ring"]

T = TypeVar("T")

#: How many times a reader retries a copy that a writer interrupted.
_COPY_TRIES = 8


class Ring(Generic[T]):
    """The latest *size* items appended, oldest first.

    :param size: how many items are kept; older ones are dropped as new ones come.
    """

    __slots__ = ("_items", "append", "size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a ring holds at least one item, not {size}")
        self.size = size
        self._items: deque[T] = deque(maxlen=size)
        #: Add an item, dropping the oldest when full; safe from any thread, lock-free.
        self.append: Callable[[T], None] = self._items.append

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[T]:
        """A copy of the items, oldest first."""
        for _ in range(_COPY_TRIES):
            try:
                return list(self._items)
            except RuntimeError:  # "deque mutated during iteration": a writer came between
                continue
        return list(self._items.copy())

    def clear(self) -> None:
        """Drop every item."""
        self._items.clear()
