"""The per-process cache of keys and pairs (pure), and what the API does around it."""

import pytest

from replication.ingest.cache import ExpiringCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def test_value_is_loaded_once_until_it_expires(clock):
    cache = ExpiringCache(seconds=5, clock=clock)
    loads = []

    def load():
        loads.append(clock.now)
        return len(loads)

    assert cache.get("k", load) == 1
    clock.now += 4.9
    assert cache.get("k", load) == 1
    clock.now += 0.1
    assert cache.get("k", load) == 2
    assert loads == [1000.0, 1005.0]


def test_a_miss_is_not_remembered(clock):
    cache = ExpiringCache(seconds=5, clock=clock)
    assert cache.get("unknown", lambda: None) is None
    assert cache.get("unknown", lambda: "created since") == "created since"


def test_clear_forgets_everything(clock):
    cache = ExpiringCache(seconds=5, clock=clock)
    cache.get("a", lambda: 1)
    cache.clear()
    assert cache.get("a", lambda: 2) == 2
