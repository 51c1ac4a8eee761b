"""How many processes `manage.py reconcile` forks: one per core it may use, within a quota."""

import os

import pytest

from replication.reconcile import inline
from replication.reconcile.cores import quota_cores, usable_cores

AFFINITY = len(os.sched_getaffinity(0))


def test_a_cpu_max_of_max_sets_no_limit_and_a_quota_is_cpus():
    assert quota_cores("max 100000\n") is None
    assert quota_cores("150000 100000\n") == 1.5
    assert quota_cores("50000 100000") == 0.5


def cgroup_v2(tmp_path, cpu_max: str | None, own: str = ""):
    directory = tmp_path / own.lstrip("/")
    directory.mkdir(parents=True, exist_ok=True)
    if cpu_max is not None:
        (directory / "cpu.max").write_text(cpu_max)
    return tmp_path


def test_a_container_limited_to_one_cpu_uses_one_core(tmp_path):
    assert usable_cores(cgroup_v2(tmp_path, "100000 100000"), own_cgroup="/") == 1


def test_a_fraction_of_a_cpu_still_gets_one_process(tmp_path):
    assert usable_cores(cgroup_v2(tmp_path, "20000 100000"), own_cgroup="/") == 1


def test_the_process_own_cgroup_limit_counts(tmp_path):
    cgroup = cgroup_v2(tmp_path, "100000 100000", own="/system.slice/backupsite.service")
    assert usable_cores(cgroup, own_cgroup="/system.slice/backupsite.service") == 1


def test_without_a_quota_every_core_of_the_affinity_counts(tmp_path):
    assert usable_cores(cgroup_v2(tmp_path, "max 100000"), own_cgroup="/") == AFFINITY
    assert usable_cores(cgroup_v2(tmp_path / "none", None), own_cgroup="/") == AFFINITY


@pytest.mark.parametrize(("quota", "cores"), [("-1", AFFINITY), ("100000", min(1, AFFINITY))])
def test_a_cgroup_v1_quota_counts_too(tmp_path, quota, cores):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(quota)
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert usable_cores(tmp_path, own_cgroup="/") == cores


@pytest.mark.django_db
@pytest.mark.parametrize(("setting", "cores", "expected"), [(3, 16, 3), (0, 16, 4), (0, 1, 1)])
def test_the_setting_or_else_one_process_per_usable_core_up_to_four(
    settings, monkeypatch, setting, cores, expected
):
    settings.RECONCILE_INLINE_PROCESSES = setting
    monkeypatch.setattr(inline, "usable_cores", lambda: cores)
    monkeypatch.setattr(inline.connection, "vendor", "sqlite")
    monkeypatch.setattr(inline.connection, "is_in_memory_db", lambda: False, raising=False)

    assert inline.inline_processes() == expected


@pytest.mark.django_db
def test_an_in_memory_sqlite_database_is_never_forked(settings, monkeypatch):
    settings.RECONCILE_INLINE_PROCESSES = 4
    monkeypatch.setattr(inline.connection, "vendor", "sqlite")
    monkeypatch.setattr(inline.connection, "is_in_memory_db", lambda: True, raising=False)

    assert inline.inline_processes() == 1
