"""The default worker count follows the container's CPU quota (cgroup v2 and v1 files in tmp_path),
then the affinity mask; never below 1."""

from __future__ import annotations

import os
from pathlib import Path

from oidcproxy.serve import cgroup_cpu_quota, default_workers

CPUS = len(os.sched_getaffinity(0))


def write(root: Path, name: str, text: str) -> None:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text + "\n")


def test_cgroup_v2_quota_in_cpus(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", "350000 100000")
    assert cgroup_cpu_quota(str(tmp_path)) == (3.5, "cpu.max")


def test_cgroup_v2_without_a_limit(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", "max 100000")
    assert cgroup_cpu_quota(str(tmp_path)) is None


def test_cgroup_v1_quota_in_the_cpu_controller_folder(tmp_path: Path) -> None:
    write(tmp_path, "cpu,cpuacct/cpu.cfs_quota_us", "250000")
    write(tmp_path, "cpu,cpuacct/cpu.cfs_period_us", "100000")
    assert cgroup_cpu_quota(str(tmp_path)) == (2.5, "cpu.cfs_quota_us")


def test_cgroup_v1_unlimited_and_missing_files(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(str(tmp_path)) is None
    write(tmp_path, "cpu/cpu.cfs_quota_us", "-1")
    write(tmp_path, "cpu/cpu.cfs_period_us", "100000")
    assert cgroup_cpu_quota(str(tmp_path)) is None


def test_a_half_cpu_quota_gives_one_worker_and_says_why(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", "50000 100000")
    assert default_workers(str(tmp_path)) == (1, "cgroup cpu.max quota 0.5 CPUs")


def test_a_fractional_quota_rounds_up_within_the_affinity_mask(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", f"{(CPUS - 0.5) * 100000:.0f} 100000")
    # e.g. 1.5 CPUs on a 2-CPU machine: 2 workers
    assert default_workers(str(tmp_path)) == (CPUS, f"cgroup cpu.max quota {CPUS - 0.5:g} CPUs")


def test_a_quota_above_the_affinity_mask_is_bounded_by_it(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", f"{(CPUS + 6) * 100000} 100000")
    assert default_workers(str(tmp_path)) == (CPUS, f"{CPUS} CPUs in the affinity mask")
