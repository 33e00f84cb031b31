"""The ring buffers: bounded by count whatever is appended, read as a copy."""

from __future__ import annotations

import threading

import pytest

from flask_observe.console.buffers import Ring


def test_a_ring_keeps_the_latest_items_oldest_first() -> None:
    ring: Ring[int] = Ring(3)
    for i in range(10):
        ring.append(i)
    assert ring.items() == [7, 8, 9]
    assert len(ring) == 3


def test_a_ring_is_read_as_a_copy() -> None:
    ring: Ring[int] = Ring(2)
    ring.append(1)
    items = ring.items()
    ring.append(2)
    assert items == [1]


def test_a_ring_refuses_no_room() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Ring(0)


def test_readers_and_writers_in_threads_never_fail() -> None:
    ring: Ring[int] = Ring(100)
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            ring.append(i)
            i += 1

    writers = [threading.Thread(target=write) for _ in range(2)]
    for writer in writers:
        writer.start()
    try:
        for _ in range(2000):
            assert len(ring.items()) <= 100
    finally:
        stop.set()
        for writer in writers:
            writer.join(timeout=10)
