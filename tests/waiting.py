"""Waiting for another thread to get somewhere, in tests that hold a statement open."""

import threading

# Generous: only a broken implementation waits this long (no test measures time).
PATIENCE = 30


def until(condition) -> None:
    """Return once ``condition()`` is true; fail after PATIENCE seconds."""
    pause = threading.Event()
    for _ in range(PATIENCE * 1000):
        if condition():
            return
        pause.wait(0.001)
    raise AssertionError("never happened")
