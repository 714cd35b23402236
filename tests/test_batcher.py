"""Micro-batching with a bounded queue and an explicit overload policy (real threads)."""

import threading

import pytest

from xpstream.daemon.batcher import BLOCK, DROP_OLDEST, Closed, MicroBatcher


def test_full_batches_come_at_once_and_a_partial_one_after_the_wait():
    b = MicroBatcher(max_batch=4, max_wait_s=0.05, capacity=16)
    for i in range(6):
        b.put(i)
    assert b.get_batch(timeout=5) == [0, 1, 2, 3]
    assert b.get_batch(timeout=5) == [4, 5]  # returned after max_wait with what there is
    assert b.get_batch(timeout=0.01) == []


def test_items_arriving_within_the_wait_join_the_batch():
    b = MicroBatcher(max_batch=3, max_wait_s=2.0, capacity=8)
    b.put("a")
    timer = threading.Timer(0.05, lambda: (b.put("b"), b.put("c")))
    timer.start()
    assert b.get_batch(timeout=5) == ["a", "b", "c"]  # full before the 2 s wait ran out
    timer.join()


def test_drop_oldest_counts_every_drop_and_keeps_the_newest():
    dropped = []
    b = MicroBatcher(max_batch=2, max_wait_s=0, capacity=3, on_drop=dropped.append)
    for i in range(10):
        assert b.put(i, policy=DROP_OLDEST)
    assert dropped == [0, 1, 2, 3, 4, 5, 6]
    assert len(b) == 3
    assert b.get_batch(timeout=1) + b.get_batch(timeout=1) == [7, 8, 9]


def test_block_policy_applies_back_pressure_and_loses_nothing():
    b = MicroBatcher(max_batch=2, max_wait_s=0, capacity=2)
    assert b.put(1) and b.put(2)
    assert b.put(3, policy=BLOCK, timeout=0.05) is False  # full: the producer waits
    done = threading.Event()

    def producer():
        for i in range(3, 8):
            b.put(i, policy=BLOCK, timeout=10)
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    taken = []
    while len(taken) < 7:
        taken += b.get_batch(timeout=10)
    thread.join(timeout=10)
    assert done.is_set() and taken == [1, 2, 3, 4, 5, 6, 7]


def test_close_drains_then_refuses():
    b = MicroBatcher(max_batch=4, max_wait_s=10, capacity=4)
    b.put("x")
    b.close()
    assert b.get_batch(timeout=5) == ["x"]  # no 10 s wait once closed
    assert b.get_batch(timeout=5) == []
    with pytest.raises(Closed):
        b.put("y")


def test_invalid_sizes_are_refused():
    with pytest.raises(ValueError):
        MicroBatcher(max_batch=8, max_wait_s=0.01, capacity=4)


def test_drop_oldest_evicts_only_droppable_items():
    """A SUB flood (DROP_OLDEST) never evicts PULL or folder items (BLOCK): it evicts the oldest
    SUB item, or, with none queued, the newcomer itself."""
    dropped = []
    b = MicroBatcher(max_batch=4, max_wait_s=0.0, capacity=4, on_drop=dropped.append)
    assert b.put("pull-0", BLOCK) and b.put("sub-0", DROP_OLDEST) and b.put("pull-1", BLOCK)
    assert b.put("sub-1", DROP_OLDEST)
    assert b.put("sub-2", DROP_OLDEST) and dropped == ["sub-0"]
    assert b.put("sub-3", DROP_OLDEST) and dropped == ["sub-0", "sub-1"]
    assert b.get_batch(timeout=1) == ["pull-0", "pull-1", "sub-2", "sub-3"]
    for i in range(4):
        b.put(f"pull-{i}", BLOCK)
    assert b.put("sub-4", DROP_OLDEST) and dropped[-1] == "sub-4"
    assert b.get_batch(timeout=1) == [f"pull-{i}" for i in range(4)]


def test_byte_capacity_bounds_the_queue_but_takes_one_large_item_into_an_empty_queue():
    dropped = []
    b = MicroBatcher(max_batch=8, max_wait_s=0, capacity=100, on_drop=dropped.append, capacity_bytes=10, weigh=len)
    assert b.put("aaaa", BLOCK) and b.put("bbbb", BLOCK)  # 8 bytes queued
    assert not b.put("cccc", BLOCK, timeout=0.05)  # 12 > 10: back-pressure
    assert b.put("dd", DROP_OLDEST) and b.queued_bytes == 10
    assert b.put("eeeeee", DROP_OLDEST) and dropped == ["dd", "eeeeee"]  # only BLOCK items left to evict
    assert b.get_batch(timeout=1) == ["aaaa", "bbbb"] and b.queued_bytes == 0
    assert b.put("x" * 50, BLOCK, timeout=0.05)  # larger than the capacity, alone: taken
    assert not b.put("y", BLOCK, timeout=0.05)
    assert b.get_batch(timeout=1) == ["x" * 50] and b.queued_bytes == 0


def test_an_item_weighs_its_arrays_once():
    import numpy as np

    from xpstream.contract import Region
    from xpstream.daemon.sources import Item

    c1s = Region("C 1s", np.linspace(280, 290, 100), 1 + np.hanning(100))
    o1s = Region("O 1s", np.linspace(528, 536, 50), 1 + np.hanning(50))
    item = Item("a", "esca1", "pull", "tcp://x", regions=[c1s], recorded=[c1s, o1s])  # C 1s in both lists
    assert item.nbytes == (2 * 100 + 2 * 50) * 8
    grid = Item("g", "esca1", "pull", "tcp://x", spectrum=np.zeros(6601, np.float32))
    assert grid.nbytes == 6601 * 4
