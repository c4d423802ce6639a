"""The native platform for real: chroot into the shared image, scratch on the host disk, nothing left."""

import os
from pathlib import Path

import pytest

from runtime.errors import InstanceError
from runtime.native import NativePlatform
from runtime.spec import InstanceSpec


@pytest.fixture
def native(image):
    with NativePlatform(image).create(InstanceSpec(memory=2**30)) as instance:
        yield instance


def test_runs_the_image_binaries(native, image):
    result = native.exec(["cat", "/etc/debian_version"])
    assert result.ok and result.stdout.strip().startswith("12")
    assert native.exec(["sysbench", "--version"]).stdout.startswith("sysbench 1.0")


def test_root_is_read_only_and_tmp_is_writable(native):
    assert not native.exec(["touch", "/etc/isolab-probe"]).ok
    assert native.exec(["sh", "-c", "echo data > /tmp/probe && cat /tmp/probe"]).stdout == "data\n"
    assert native.disk_usage_bytes() == 5


def test_missing_command_is_127(native):
    result = native.exec(["no-such-tool"])
    assert result.returncode == 127 and "not found" in result.stderr


def test_nonzero_exit_is_reported(native):
    result = native.exec(["sh", "-c", "echo oops >&2; exit 3"])
    assert result.returncode == 3 and result.stderr_tail() == "oops"


def test_limits_are_ignored_and_said(native):
    assert native.ignored_limits() == {"memory": 2**30}
    assert native.metadata() == {"limits_ignored": ["memory"]}


def test_file_transfer(native, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("hello")
    native.put_file(src, "/tmp/in.txt")
    native.get_file("/tmp/in.txt", tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text() == "hello"
    with pytest.raises(InstanceError, match="only /tmp is writable"):
        native.put_file(src, "/etc/x")


def test_destroy_leaves_nothing(image):
    instance = NativePlatform(image).create(InstanceSpec())
    state, scratch = instance.state, instance.scratch
    instance.destroy()
    instance.destroy()  # idempotent
    assert not state.exists() and not scratch.exists()
    assert str(state) not in Path("/proc/self/mountinfo").read_text()


def test_cleanup_finds_leftovers_of_a_crash(image):
    from runtime import state
    from runtime.sweep import sweep

    instance = NativePlatform(image).create(InstanceSpec())
    instance._destroyed = True  # as if the process died: destroy never ran
    state.update(instance.state, owner={"pid": 2**22 + 1, "start": 1})  # its owner is gone
    removed = sweep()
    assert str(instance.state) in removed
    assert not instance.state.exists() and not os.path.exists(instance.scratch)


def test_cleanup_spares_instances_of_live_runs(image):
    import subprocess

    from runtime import state
    from runtime.sweep import sweep

    other_run = subprocess.Popen(["sleep", "30"])
    instance = NativePlatform(image).create(InstanceSpec())
    try:
        owner = state.Owner.of(other_run.pid)
        assert owner is not None
        state.update(instance.state, owner=owner.to_dict())  # as if another run owned it
        assert str(instance.state) not in sweep()
        assert instance.exec(["true"]).ok
    finally:
        other_run.kill()
        other_run.wait()
        instance.destroy()


def test_cleanup_kills_a_dead_runs_chrooted_workload(image):
    """A native workload outlives its killed run: cleanup ends it before detaching its root."""
    import subprocess
    import time

    from runtime import state
    from runtime.sweep import sweep

    instance = NativePlatform(image).create(InstanceSpec())
    proc = subprocess.Popen(["sleep", "300"], preexec_fn=instance._enter)  # as a workload in flight
    try:
        time.sleep(0.2)
        instance._destroyed = True
        state.update(instance.state, owner={"pid": 2**22 + 1, "start": 1})
        removed = sweep()
        assert proc.wait(timeout=10) == -9
        assert any(r.startswith(f"process {proc.pid} ") for r in removed)
        assert not instance.state.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_commands_run_in_the_instances_own_unlimited_cgroup(image):
    """Like every instance of the other platforms, a native command sits in a cgroup of its own (one group's
    CPU weight under contention, not one share per thread in the root cgroup); destroy removes it."""
    from runtime.container.cgroups import make_cgroup

    instance = NativePlatform(image).create(InstanceSpec())
    try:
        text = instance.exec(["cat", "/proc/self/cgroup"]).stdout
        # v1: the line of the hierarchy holding the cpu controller; v2: the unified line
        lines = [line for line in text.splitlines()
                 if "cpu" in line.split(":")[1].split(",") or (line.startswith("0::") and "cpu" not in text)]
        assert lines and all(line.endswith(f"/isolab/{instance.instance_id}") for line in lines), text
        limits = make_cgroup(instance.instance_id).limits()
        assert limits.memory_bytes is None and limits.cpus is None and limits.pids_max is None
        paths = instance.cgroup.paths()
        assert all(p.exists() for p in paths)
    finally:
        instance.destroy()
    assert not any(p.exists() for p in paths)
