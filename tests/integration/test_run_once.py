"""Platform.run_once for real: a throwaway instance whose command is argv, waited for and removed (the
startup scenario's start-to-exit). Our runtime's one-shot path (the command as pid 1, the writable layer on
a tmpfs of the container's own mount namespace) keeps the lockdown of every container and leaves nothing on
the host; the OCI runtimes' `run` path and the default path (create, exec, destroy) return the command's
exit status the same way. Skips only where a platform cannot run here (the reason printed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.container.hardening import DEFAULT_CAP_MASK
from runtime.errors import PlatformUnavailable
from runtime.naming import CGROUP_PARENT, SCRATCH_ROOT, STATE_ROOT
from runtime.platform import DEFAULT_RUN_ONCE, load_platform
from runtime.spec import InstanceSpec

CGROUP = Path("/sys/fs/cgroup")


def available(name: str, image):
    platform = load_platform(name, image=image)
    try:
        platform.check_available()
    except PlatformUnavailable as exc:
        pytest.skip(str(exc))
    return platform


def traces(instance_id: str) -> list[str]:
    """What an instance may leave on the host: state and layer dirs, cgroups, mounts (by its id: other runs
    share the host)."""
    assert instance_id
    found = [str(p) for p in (STATE_ROOT / instance_id, SCRATCH_ROOT / instance_id) if p.exists()]
    found += [str(p) for p in CGROUP.glob(f"*/{CGROUP_PARENT}/{instance_id}")]
    found += [line.split()[4] for line in open("/proc/self/mountinfo") if instance_id in line.split()[4]]
    return found


# Checked inside the container, as its own pid 1: the seccomp filter and Docker's capabilities are on,
# masked and read-only paths are in place, only the default devices exist, and the root is writable.
LOCKDOWN_PROBE = f"""
grep -q '^Seccomp:[[:space:]]*2' /proc/self/status || exit 10
grep -q '^CapEff:[[:space:]]*{DEFAULT_CAP_MASK:016x}' /proc/self/status || exit 11
grep -q '^NoNewPrivs:[[:space:]]*1' /proc/self/status || exit 12
test -e /proc/interrupts -a -z "$(head -c 1 /proc/interrupts)" || exit 13
echo 1 > /proc/sys/kernel/sysrq 2>/dev/null && exit 14
test -e /dev/null -a ! -e /dev/sda -a ! -e /dev/vda || exit 15
mknod /dev/isl-probe b 8 0 2>/dev/null && exit 16
touch /written-here && rm /written-here || exit 17
test "$(hostname)" = isolab || exit 18
exit 0
"""


def test_our_one_shot_keeps_the_lockdown_and_leaves_nothing(image):
    platform = available("container", image)
    once = platform.run_once(["sh", "-c", LOCKDOWN_PROBE], InstanceSpec())
    assert once.returncode == 0, f"lockdown probe failed with exit {once.returncode} (see LOCKDOWN_PROBE)"
    assert once.path == platform.one_shot != DEFAULT_RUN_ONCE and "tmpfs" in once.path
    assert {"namespaces", "mounts", "exec"} <= set(once.phases) and once.seconds > 0
    assert traces(once.instance_id) == []
    assert platform.run_once(["sh", "-c", "exit 3"]).returncode == 3  # the command's status, as is
    unconfined = platform.run_once(["sh", "-c", LOCKDOWN_PROBE], InstanceSpec(seccomp="unconfined"))
    assert unconfined.returncode == 10  # the probe does see a missing filter


def test_our_one_shot_writable_layer_is_not_on_the_host_disk(image):
    platform = available("container", image)
    marker = "isl-run-once-marker"
    once = platform.run_once(["sh", "-c", f"head -c 1048576 /dev/zero > /{marker} && "
                                          f"grep -q ' / overlay ' /proc/mounts"])
    assert once.returncode == 0
    assert not list(SCRATCH_ROOT.glob(f"*/upper/{marker}")) if SCRATCH_ROOT.is_dir() else True


@pytest.mark.parametrize("name", ["crun", "runc"])
def test_oci_run_path(image, name):
    platform = available(name, image)
    once = platform.run_once(["/bin/true"])
    assert once.returncode == 0, once.detail
    assert once.path == platform.one_shot and "run" in once.phases
    failed = platform.run_once(["/bin/no-such-command"])
    assert failed.returncode != 0 and failed.detail  # the runtime's own words
    assert traces(once.instance_id) == [] and traces(failed.instance_id) == []


def test_default_path_is_create_exec_destroy(image):
    platform = available("native", image)
    once = platform.run_once(["/bin/true"])
    assert once.returncode == 0 and once.path == DEFAULT_RUN_ONCE
    assert once.ready_s is not None and once.teardown_s is not None and once.ready_s < once.seconds


def test_an_ephemeral_layer_refuses_what_it_cannot_hold(image):
    from runtime.container.container import Container
    from runtime.errors import InstanceError

    for spec in (InstanceSpec(volume=True), InstanceSpec(userns=True)):
        with pytest.raises(InstanceError, match="ephemeral writable layer"):
            Container(spec, [image.rootfs], ["/bin/true"], ephemeral=True)
