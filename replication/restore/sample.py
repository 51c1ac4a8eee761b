"""Choosing a restore drill's sample from one pass over the backup's listing. Pure.

A uniform random sample of any size of listing in bounded memory (reservoir sampling), with
spares in case some sources changed since their copy, plus the largest multipart objects up
to a size limit (the hardest restore a drill can afford).
"""

import heapq
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from replication.reconcile.diff import Entry

SPARES = 3  # candidates drawn per object sampled, since some sources will have changed
LARGEST = 3  # multipart candidates kept, largest first
_MULTIPART = re.compile(r"^[0-9a-fA-F]{32}-\d+$")
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")


def is_multipart(etag: str) -> bool:
    return bool(_MULTIPART.match(etag))


def is_md5(etag: str) -> bool:
    """An ETag that is the MD5 of the bytes (single part, not KMS: as far as it can tell)."""
    return bool(_MD5.match(etag))


@dataclass
class Sampler:
    size: int
    max_bytes: int
    max_key_bytes: int = 1024  # a scratch key longer than S3's limit cannot be written
    rng: random.Random = field(default_factory=random.Random)
    seen: int = 0
    reservoir: list[Entry] = field(default_factory=list)
    largest: list[tuple[int, str, Entry]] = field(default_factory=list)  # a min-heap

    def see(self, entry: Entry) -> None:
        if len(entry.key.encode()) > self.max_key_bytes:
            return
        self.seen += 1
        wanted = self.size * SPARES
        if len(self.reservoir) < wanted:
            self.reservoir.append(entry)
        else:
            slot = self.rng.randrange(self.seen)
            if slot < wanted:
                self.reservoir[slot] = entry
        if is_multipart(entry.etag) and entry.size <= self.max_bytes:
            item = (entry.size, entry.key, entry)
            if len(self.largest) < LARGEST:
                heapq.heappush(self.largest, item)
            elif item > self.largest[0]:
                heapq.heapreplace(self.largest, item)

    def see_all(self, entries: Iterable[Entry]) -> "Sampler":
        for entry in entries:
            self.see(entry)
        return self

    def random_candidates(self) -> list[Entry]:
        candidates = list(self.reservoir)
        self.rng.shuffle(candidates)
        return candidates

    def multipart_candidates(self) -> list[Entry]:
        return [entry for _, _, entry in sorted(self.largest, reverse=True)]


def pick(sampler: Sampler, unchanged) -> tuple[list[Entry], Entry | None]:
    """The sample: the largest multipart candidate for which ``unchanged(entry)`` holds, and
    ``sampler.size`` random ones besides it."""
    largest = next((e for e in sampler.multipart_candidates() if unchanged(e)), None)
    chosen: list[Entry] = []
    for entry in sampler.random_candidates():
        if len(chosen) == sampler.size:
            break
        if (largest is None or entry.key != largest.key) and unchanged(entry):
            chosen.append(entry)
    return chosen, largest
