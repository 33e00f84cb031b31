"""One object per prometheus_client registry, made the first time an app asks for it.

Several apps in one process (app factories, tests) may share a registry. Whatever they
register on it (a family, a collector) must be registered once, or prometheus_client
refuses the second with "Duplicated timeseries"; so each module that registers families
keeps its object per registry in a :class:`PerRegistry`.
"""

from __future__ import annotations

import threading
import weakref
from typing import Callable, Generic, TypeVar

from prometheus_client import CollectorRegistry

__all__ = ["PerRegistry"]

T = TypeVar("T")


class PerRegistry(Generic[T]):
    """``get(registry, make)``: the object of *registry*, made by ``make()`` on first use.

    Held as long as the registry is: a registry that goes away takes its object along.
    """

    def __init__(self) -> None:
        self._made: weakref.WeakKeyDictionary[CollectorRegistry, T] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, registry: CollectorRegistry, make: Callable[[], T]) -> T:
        found = self._made.get(registry)  # made already: no lock (an @timed call asks)
        if found is None:
            with self._lock:
                found = self._made.get(registry)
                if found is None:
                    found = self._made[registry] = make()
        return found
