"""The container tests' smoke subset (bench.v2guest.SMOKE) on a real cgroup v2 kernel: a VM guest booted
with cgroup_no_v1=all runs them with pytest; its JUnit report comes back and any failure fails this test.

Skips only when no VM can run here (no libvirt/QEMU; the reason is printed). The full container subset
runs in `nox -s tests_v2`.
"""

from __future__ import annotations

import pytest

from bench import v2guest

pytestmark = [pytest.mark.vm, pytest.mark.root, pytest.mark.image]


def test_container_smoke_subset_passes_in_a_cgroup_v2_guest(require_root, image):
    reason = v2guest.check_capability()
    if reason is not None:
        pytest.skip(f"cgroup v2 guest needs a VM: {reason}")
    tests = v2guest.resolve_tests(v2guest.SMOKE)
    run = v2guest.run_in_guest(image, tests, timeout=1500, progress=lambda m: print(f"v2 guest: {m}", flush=True))
    print(v2guest.format_run(run))
    assert run.guest["cgroup_mounts"] == "cgroup2@/sys/fs/cgroup"
    ran = {o.node_id for o in run.outcomes}
    missing = [t for t in tests if t not in ran and not any(r.startswith(f"{t}[") for r in ran)]
    assert not missing, f"not run in the guest: {missing}"
    failures = "\n".join(f"{o.outcome} {o.node_id}: {o.message[:500]}" for o in run.failures())
    assert run.passed, f"in the cgroup v2 guest: {run.summary}\n{failures}\n{run.output[-3000:]}"
    assert not [o for o in run.outcomes if o.outcome == "skipped"], "a smoke test skipped in the guest"
