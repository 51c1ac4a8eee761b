"""Group commit: concurrent posts in one process share one statement (pure: no Django, no I/O).

A one-event post costs PostgreSQL a round trip and a commit whatever it holds, so the
threads of one web process join their posts, as PostgreSQL joins the WAL flushes of
concurrent commits:

- a thread that finds no statement running becomes the leader: it takes every post queued
  (its own included) and runs them as one group;
- a thread that finds one running queues its post and waits; the next leader takes it;
- every thread of a group gets its own post's result, and only once the group's statement
  has returned (ingest's statement commits before it returns: durable before 202);
- if the group fails, nothing of it was stored (one statement, atomic): every thread runs
  its own post alone, so only a post that fails alone gets the error; a group of one simply
  raises;
- a leader that raises, or dies, still wakes its followers (they run alone);
- no thread waits longer than ``wait_seconds`` for a group: then it runs its post alone.
  Running alone a post that a stuck group also holds is safe, as ingest's writes are
  idempotent; the late group may then have stored events that the post's own answer counts
  as duplicates, which is what a sender's retry would be told too.

No waiting for company: a leader runs at once, so a thread with no neighbours pays nothing.
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger(__name__)


class _Entry(Generic[T, R]):
    """One post in a queue or a group, and what became of it."""

    def __init__(self, item: T):
        self.item = item
        self.done = False
        self.failed = False  # the group failed: run alone
        self.result: R | None = None


class GroupCommit(Generic[T, R]):
    """Runs ``run(items) -> results`` (one result per item, in order) for groups of items
    submitted concurrently; ``submit(item)`` returns the item's result."""

    def __init__(self, run: Callable[[Sequence[T]], Sequence[R]], *, wait_seconds: float):
        self._run = run
        self._wait_seconds = wait_seconds
        self._changed = threading.Condition()
        self._queue: list[_Entry[T, R]] = []
        self._running = False

    @property
    def queued(self) -> int:
        """How many posts wait for the next group."""
        with self._changed:
            return len(self._queue)

    def submit(self, item: T) -> R:
        entry: _Entry[T, R] = _Entry(item)
        with self._changed:
            self._queue.append(entry)
            deadline = time.monotonic() + self._wait_seconds
            while self._running and not entry.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._changed.wait(remaining):
                    break
            if entry.done and not entry.failed:
                return entry.result
            if entry.done or self._running:
                # The group failed, or waiting took too long: this post on its own.
                if entry in self._queue:
                    self._queue.remove(entry)
                group = None
            else:
                group, self._queue, self._running = self._queue, [], True
        if group is None:
            return self._run([item])[0]
        return self._lead(entry, group)

    def _lead(self, own: _Entry[T, R], group: list[_Entry[T, R]]) -> R:
        results = None
        try:
            results = self._run([e.item for e in group])
        except Exception as error:
            if len(group) == 1:
                raise
            logger.info("a group of %d failed (%r): each runs alone", len(group), error)
        finally:
            with self._changed:
                for n, e in enumerate(group):
                    e.done = True
                    if results is None:
                        e.failed = True
                    else:
                        e.result = results[n]
                self._running = False
                self._changed.notify_all()
        if results is None:
            return self._run([own.item])[0]
        return own.result
