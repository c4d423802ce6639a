"""Real (root) checks that each namespace and each hardening step of the container runtime holds."""

from __future__ import annotations

import ctypes
import os

import pytest

from runtime.container.container import Container
from runtime.container.hardening import DEFAULT_CAP_MASK
from runtime.spec import InstanceSpec


@pytest.fixture(params=[False, True], ids=["plain", "userns"])
def box(request, image, require_root):
    with Container(InstanceSpec(hostname="islbox", userns=request.param), [image.rootfs]) as container:
        container.start()
        yield container


@pytest.mark.parametrize("userns", [False, True], ids=["plain", "userns"])
def test_workload_is_pid1_with_own_hostname(image, require_root, userns):
    with Container(InstanceSpec(hostname="islpid", userns=userns), [image.rootfs],
                   ["/bin/sh", "-c", "test $$ -eq 1 && test $(hostname) = islpid"], init=False) as c:
        c.start()
        assert c.wait(timeout=30) == 0


def test_init_is_pid1_and_reaps(box):
    result = box.exec(["sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; (sleep 0.1 &) ; sleep 0.3; "
                                   "grep -l zombie /proc/[0-9]*/status 2>/dev/null | wc -l"])
    assert result.ok, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0"  # the orphaned sleep was reaped by pid 1


def test_no_host_processes_visible(box):
    result = box.exec(["sh", "-c", "ls -d /proc/[0-9]* | wc -l"])
    assert result.ok
    assert int(result.stdout) <= 4, result.stdout  # init, sh, ls (+ wc): nothing from the host
    assert box.exec(["hostname"]).stdout.strip() == "islbox"


def test_no_host_interfaces_visible(box):
    result = box.exec(["ls", "/sys/class/net"])
    assert result.ok, result.stderr
    assert result.stdout.split() == ["lo"]


def test_ipc_objects_not_shared(box):
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    shmid = libc.shmget(0, 4096, 0o1600)  # IPC_PRIVATE, IPC_CREAT|0600
    assert shmid >= 0
    try:
        host = open("/proc/sysvipc/shm").read()
        assert f" {shmid} " in host
        inside = box.exec(["cat", "/proc/sysvipc/shm"]).stdout
        assert f" {shmid} " not in inside
        assert len(inside.strip().splitlines()) == 1  # only the header line
    finally:
        libc.shmctl(shmid, 0, None)  # IPC_RMID


def test_writes_land_in_writable_layer_only(box, image):
    script = "echo data > /etc/isl-written && echo tmp > /tmp/isl-tmp && rm /etc/issue"
    result = box.exec(["sh", "-c", script])
    assert result.ok, result.stderr
    assert (box.upper / "etc" / "isl-written").read_text() == "data\n"
    assert (box.upper / "tmp" / "isl-tmp").exists()
    assert not (image.rootfs / "etc" / "isl-written").exists()
    assert (image.rootfs / "etc" / "issue").exists()
    assert box.disk_usage_bytes() > 0


def test_capabilities_dropped_to_docker_default(box):
    status = box.exec(["grep", "^CapEff", "/proc/self/status"]).stdout
    assert int(status.split()[1], 16) == DEFAULT_CAP_MASK
    mknod = box.exec(["mknod", "/tmp/sda", "b", "8", "0"])
    assert mknod.returncode != 0, "mknod of a block device must fail"
    mount = box.exec(["mount", "-t", "tmpfs", "none", "/mnt"])
    assert mount.returncode != 0, "mount needs CAP_SYS_ADMIN, which is dropped"
    nnp = box.exec(["grep", "^NoNewPrivs", "/proc/self/status"]).stdout
    assert nnp.split()[1] == "1"


def test_proc_sys_read_only_and_paths_masked(box):
    write = box.exec(["sh", "-c", "echo isl > /proc/sys/kernel/domainname"])
    assert write.returncode != 0
    assert "Read-only" in write.stderr
    for path in ("/proc/timer_list", "/proc/keys", "/proc/kcore"):
        if os.path.exists(path):  # not every kernel has all of them (this one lacks kcore)
            assert box.exec(["sh", "-c", f"cat {path} | wc -c"]).stdout.strip() == "0", path
    assert "ro," in box.exec(["sh", "-c", "grep ' /proc/acpi ' /proc/self/mountinfo"]).stdout
    sys_write = box.exec(["sh", "-c", "echo 1 > /sys/kernel/profiling"])
    assert sys_write.returncode != 0


def test_minimal_dev(box):
    listing = box.exec(["ls", "/dev"]).stdout.split()
    for name in ("null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx"):
        assert name in listing
    assert "sda" not in listing and "vda" not in listing
    assert box.exec(["sh", "-c", "head -c 4 /dev/zero | wc -c"]).stdout.strip() == "4"


def test_exec_missing_command_gives_127(box):
    result = box.exec(["isl-no-such-command"])
    assert result.returncode == 127
    assert "not found in the image" in result.stderr


def test_host_mount_table_untouched(box):
    assert "isolab/ct-" not in open("/proc/self/mounts").read()  # all container mounts are in its own ns
    assert os.path.exists(f"/proc/{box.pid}/root/bin/sh")
