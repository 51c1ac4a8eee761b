"""How many CPU cores this process may use: its CPU affinity, and a container's CPU quota.

``os.cpu_count()`` counts the host's cores. A container limited to one CPU on a 64-core
host still sees 64, and a process forked per core there would only be throttled. The quota
is the cgroup's ``cpu.max`` (cgroup v2: "QUOTA PERIOD", or "max PERIOD" for none) or
``cpu.cfs_quota_us`` over ``cpu.cfs_period_us`` (cgroup v1: a quota of -1 for none).
"""

import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def quota_cores(cpu_max: str) -> float | None:
    """The CPUs a cgroup v2 ``cpu.max`` allows, or None when it sets no limit."""
    quota, _, period = cpu_max.strip().partition(" ")
    if quota == "max" or not period:
        return None
    return int(quota) / int(period)


def usable_cores(cgroup: Path = CGROUP, own_cgroup: str | None = None) -> int:
    """The whole cores this process may use, at least 1."""
    cores = len(os.sched_getaffinity(0))
    quota = _quota(cgroup, own_cgroup if own_cgroup is not None else _own_cgroup())
    if quota is not None:
        cores = min(cores, int(quota))  # a quota of 1.5 CPUs keeps one process busy, not two
    return max(1, cores)


def _quota(cgroup: Path, own: str) -> float | None:
    # The process's own cgroup first (a systemd unit, a container's), then the root's.
    for directory in dict.fromkeys((cgroup / own.lstrip("/"), cgroup)):
        try:
            return quota_cores((directory / "cpu.max").read_text())
        except (OSError, ValueError):
            continue
    try:
        quota = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _own_cgroup() -> str:
    """This process's cgroup v2 path ("0::/path" in /proc/self/cgroup), or "" if none."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        pass
    return ""
