"""Group commit (replication/ingest/grouping.py): posts made while a statement runs share the
next one, each gets its own result, and a failure or a stuck group strands nobody."""

import threading

import pytest

from replication.ingest.grouping import GroupCommit
from tests.waiting import PATIENCE, until


class Statements:
    """A stand-in for the database: runs a group by upper-casing each item, records the
    groups, and holds the first one until ``release()`` (as a slow statement would)."""

    def __init__(self, *, fail_when=lambda group: False):
        self.groups: list[list[str]] = []
        self.first_may_finish = threading.Event()
        self.fail_when = fail_when

    def __call__(self, items):
        self.groups.append(list(items))
        if len(self.groups) == 1:
            assert self.first_may_finish.wait(PATIENCE)
        if self.fail_when(items):
            raise ValueError(f"cannot store {items}")
        return [item.upper() for item in items]

    def release(self):
        self.first_may_finish.set()


class Poster(threading.Thread):
    """Submits one item on a thread of its own, as a request's thread would."""

    def __init__(self, grouping: GroupCommit, item: str):
        super().__init__(daemon=True)
        self.grouping, self.item = grouping, item
        self.result = self.error = None

    def run(self):
        try:
            self.result = self.grouping.submit(self.item)
        except Exception as error:
            self.error = error

    def finished(self) -> "Poster":
        self.join(PATIENCE)
        assert not self.is_alive()
        return self


def a_statement_running(grouping: GroupCommit, statements: Statements) -> Poster:
    """A first post whose statement is held until ``statements.release()``."""
    leader = Poster(grouping, "first")
    leader.start()
    until(lambda: statements.groups)
    return leader


def queued(grouping: GroupCommit, *items: str) -> list[Poster]:
    """Posts made one after the other while a statement runs: they queue in this order."""
    posters = []
    for n, item in enumerate(items, start=1):
        posters.append(Poster(grouping, item))
        posters[-1].start()
        until(lambda n=n: grouping.queued == n)
    return posters


def test_a_post_with_no_statement_running_is_stored_at_once_on_its_own():
    statements = Statements()
    statements.release()
    grouping = GroupCommit(statements, wait_seconds=PATIENCE)

    assert grouping.submit("a") == "A"
    assert grouping.submit("b") == "B"
    assert statements.groups == [["a"], ["b"]]


def test_posts_made_while_a_statement_runs_share_the_next_one_and_each_gets_its_own_result():
    statements = Statements()
    grouping = GroupCommit(statements, wait_seconds=PATIENCE)
    leader = a_statement_running(grouping, statements)
    followers = queued(grouping, "b", "c", "d")

    statements.release()

    assert leader.finished().result == "FIRST"
    assert [f.finished().result for f in followers] == ["B", "C", "D"]
    assert statements.groups == [["first"], ["b", "c", "d"]]
    assert grouping.queued == 0


def test_a_post_is_answered_only_once_its_group_has_returned():
    statements = Statements()
    grouping = GroupCommit(statements, wait_seconds=PATIENCE)
    leader = a_statement_running(grouping, statements)
    (follower,) = queued(grouping, "b")

    assert follower.is_alive() and leader.is_alive()
    statements.release()
    assert follower.finished().result == "B"


def test_a_group_that_fails_is_retried_post_by_post_so_only_the_bad_post_fails():
    statements = Statements(fail_when=lambda items: "bad" in items)
    grouping = GroupCommit(statements, wait_seconds=PATIENCE)
    leader = a_statement_running(grouping, statements)
    followers = queued(grouping, "b", "bad", "d")

    statements.release()

    assert leader.finished().result == "FIRST"
    b, bad, d = (f.finished() for f in followers)
    assert (b.result, b.error) == ("B", None)
    assert (d.result, d.error) == ("D", None)
    assert isinstance(bad.error, ValueError) and bad.result is None
    assert statements.groups[:2] == [["first"], ["b", "bad", "d"]]
    assert sorted(map(tuple, statements.groups[2:])) == [("b",), ("bad",), ("d",)]


def test_a_leader_that_fails_still_wakes_its_followers_who_store_their_posts_alone():
    statements = Statements(fail_when=lambda items: "first" in items)
    grouping = GroupCommit(statements, wait_seconds=PATIENCE)
    leader = a_statement_running(grouping, statements)
    followers = queued(grouping, "b", "c")

    statements.release()

    assert isinstance(leader.finished().error, ValueError)
    assert [f.finished().result for f in followers] == ["B", "C"]


def test_a_post_alone_that_fails_raises_to_its_own_caller_only_once():
    statements = Statements(fail_when=lambda items: True)
    statements.release()
    grouping = GroupCommit(statements, wait_seconds=PATIENCE)

    with pytest.raises(ValueError, match="cannot store"):
        grouping.submit("a")
    assert statements.groups == [["a"]]


def test_a_post_waits_for_its_group_only_so_long_then_is_stored_alone():
    statements = Statements()
    grouping = GroupCommit(statements, wait_seconds=0.01)
    stuck = a_statement_running(grouping, statements)

    impatient = Poster(grouping, "b")
    impatient.start()

    assert impatient.finished().result == "B"
    assert stuck.is_alive()  # the first statement still holds
    assert statements.groups == [["first"], ["b"]]
    assert grouping.queued == 0
    statements.release()
    assert stuck.finished().result == "FIRST"
