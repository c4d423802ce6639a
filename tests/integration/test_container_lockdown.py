"""Real (root) attacks on the container's lockdown (issue 8): each tries the escape and must fail.

Probes run with what the image has: perl (perl-base is essential in Debian) calls syscalls by number
(x86_64 numbers), util-linux's `unshare` and busybox do the rest. Each seccomp probe also runs in an
unconfined container, to show that the kernel itself would have allowed the call: the EPERM inside
the default container is the filter's doing.
"""

from __future__ import annotations

import errno
import fcntl
import os
import platform
import signal
import stat
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from runtime.container.container import Container
from runtime.spec import InstanceSpec

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64",
                                reason="the probes use x86_64 syscall numbers")

# name -> perl argument list for syscall(): x86_64 numbers, arguments chosen so that an unconfined
# container gets past the kernel's own checks (success, or an error other than EPERM) where it can.
PROBES = {
    "keyctl": "250, 0, -4, 0",  # KEYCTL_GET_KEYRING_ID of the user keyring
    "add_key": '248, "isl-no-such-type", "isl", "x", 1, -3',  # unknown key type: ENODEV past seccomp
    "request_key": '249, "user", "isl-no-such-key", 0, 0',  # ENOKEY past seccomp
    "userfaultfd": "323, 1",  # UFFD_USER_MODE_ONLY: allowed to unprivileged callers
    "perf_event_open": "298, 0, 0, -1, -1, 0",  # NULL attr: EFAULT past seccomp
    "unshare_newuser": "272, 0x10000000",  # CLONE_NEWUSER
    "clone_newuser": "56, 0x10000000 | 17, 0, 0, 0, 0",  # CLONE_NEWUSER | SIGCHLD
    "socket_vsock": "41, 40, 1, 0",  # AF_VSOCK, SOCK_STREAM
    "socket_alg": "41, 38, 5, 0",  # AF_ALG, SOCK_SEQPACKET
    "personality": "135, 0x0040000",  # ADDR_NO_RANDOMIZE
    "bpf": "321, 0, 0, 0",
    "kexec_load": "246, 0, 0, 0, 0",
    "kexec_file_load": "320, -1, -1, 0, 0, 0",
    "reboot": "169, 0, 0, 0, 0",  # bad magic: EINVAL if it ever got that far
    "open_by_handle_at": "304, -1, 0, 0",
    "mount": '165, "none", "/tmp", "tmpfs", 0, 0',
    "umount2": '166, "/proc", 2',
    "pivot_root": '155, "/", "/"',
    "setns": "308, -1, 0",
    "init_module": "175, 0, 0, 0",
    "finit_module": "313, -1, 0, 0",
    "delete_module": '176, "isl-none", 0',
    "acct": "163, 0",
    "swapon": '167, "/isl-none", 0',
    "settimeofday": "164, 0, 0",
    "clock_settime": "227, 0, 0",
    "iopl": "172, 3",
    "ioperm": "173, 0, 1, 1",
    "quotactl": "179, 0, 0, 0, 0",
    "syslog": "103, 10, 0, 0",  # SYSLOG_ACTION_SIZE_BUFFER
    "lookup_dcookie": "212, 0, 0, 0",
}
# Probes that the kernel lets through in an unconfined container here (so seccomp alone stops them).
# (Measured on kernel 6.18: the others fail with EPERM for want of a capability, or ENOSYS.)
KERNEL_WOULD_ALLOW = ("keyctl", "add_key", "request_key", "userfaultfd", "perf_event_open",
                      "unshare_newuser", "clone_newuser", "socket_vsock", "socket_alg", "personality",
                      "bpf", "open_by_handle_at", "setns", "clock_settime", "quotactl")
KERNEL_MAY_REFUSE = 3  # of the 15 (see test_docker_blocked_syscalls_return_eperm)


def probe_script() -> str:
    """A perl program: each probe in a forked child (a namespace change cannot leak into the next);
    prints 'name ok' or 'name <errno>'. (The arguments are copied into variables: perl passes strings
    as pointers and refuses read-only literals.)"""
    lines = ["$| = 1;"]
    for name, args in PROBES.items():
        lines.append(
            f"{{ my $pid = fork; if ($pid == 0) {{ my ($n, @a) = ({args}); $! = 0; my $r = syscall($n, @a); "
            f"if ($r == 0 && '{name}' eq 'clone_newuser') {{ exit 0 }} "
            f"print '{name} ', ($r == -1 ? $! + 0 : 'ok'), \"\\n\"; exit 0 }} waitpid($pid, 0); }}")
    return "\n".join(lines)


def run_probes(image, profile: str, userns: bool = False) -> dict[str, str]:
    with Container(InstanceSpec(seccomp=profile, userns=userns), [image.rootfs]) as box:
        box.start()
        result = box.exec(["perl", "-e", probe_script()], timeout=60)
    assert result.ok, result.stderr
    found = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert set(found) == set(PROBES), result.stdout
    return found


@pytest.fixture(params=[False, True], ids=["plain", "userns"])
def box(request, image, require_root):
    with Container(InstanceSpec(hostname="isllock", userns=request.param), [image.rootfs]) as container:
        container.start()
        yield container


# ---- 1. seccomp ----------------------------------------------------------------------------------
def test_seccomp_filter_and_no_new_privs_in_pid1_and_exec(image, require_root):
    with Container(InstanceSpec(), [image.rootfs], ["grep", "-E", "^(Seccomp|NoNewPrivs):",
                                                   "/proc/self/status"], init=False) as c:
        c.start()
        assert c.wait(timeout=30) == 0
    with Container(InstanceSpec(), [image.rootfs]) as box:
        box.start()
        status = box.exec(["grep", "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status"]).stdout.split()
        assert status == ["NoNewPrivs:", "1", "Seccomp:", "2"]
        host_pid1 = Path(f"/proc/{box.pid}/status").read_text()
        assert "\nSeccomp:\t2\n" in host_pid1, "the container's pid 1 runs without the filter"
        assert "\nNoNewPrivs:\t1\n" in host_pid1


def test_docker_blocked_syscalls_return_eperm(image, require_root):
    confined = run_probes(image, "default")
    unconfined = run_probes(image, "unconfined")
    eperm = str(errno.EPERM)
    blocked = {name: got for name, got in confined.items() if got != eperm}
    assert not blocked, f"not EPERM under Docker's default profile: {blocked}"
    # The probes mean something only if the kernel itself lets most of them through without the filter.
    # Kernels differ in what they refuse a root without CAP_SYS_ADMIN: Debian's 6.1 (the cgroup v2 guest)
    # already refuses bpf and open_by_handle_at, 6.18 does not; so a few refusals are allowed, and named.
    let_through = {name: unconfined[name] for name in KERNEL_WOULD_ALLOW}
    refused_by_kernel = sorted(name for name, got in let_through.items() if got == eperm)
    assert len(refused_by_kernel) <= KERNEL_MAY_REFUSE, (
        f"these probes no longer show the kernel allowing the call without the filter: {let_through}")
    print("refused by this kernel even unconfined:", refused_by_kernel or "none")
    print("unconfined results (errno or ok):", unconfined)


def test_docker_blocked_syscalls_return_eperm_in_a_user_namespace(image, require_root):
    confined = run_probes(image, "default", userns=True)
    blocked = {name: got for name, got in confined.items() if got != str(errno.EPERM)}
    assert not blocked, f"not EPERM under Docker's default profile with a user namespace: {blocked}"


def test_seccomp_recorded_in_metadata_and_switchable(image, require_root):
    from runtime.container.platform import ContainerPlatform

    platform_ = ContainerPlatform(image)
    instance = platform_.create(InstanceSpec())
    try:
        meta = instance.metadata()
        assert str(meta["seccomp"]).startswith("docker-default (moby/profiles seccomp v")
    finally:
        instance.destroy()
    instance = platform_.create(InstanceSpec(seccomp="unconfined"))
    try:
        assert instance.metadata()["seccomp"] == "unconfined"
        status = instance.exec(["grep", "^Seccomp:", "/proc/self/status"]).stdout.split()
        assert status == ["Seccomp:", "0"]
    finally:
        instance.destroy()


# ---- 2. lifting one's own limits -------------------------------------------------------------------
def _host_limits(pid: int) -> dict[str, str]:
    """The container's memory, pids and cpu limits as the host sees them (v1 or v2 layout)."""
    found = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for ctrl in controllers.split(",") if controllers else [""]:
            base = Path("/sys/fs/cgroup") / ctrl if ctrl else Path("/sys/fs/cgroup")
            for name in ("memory.limit_in_bytes", "memory.max", "pids.max", "cpu.cfs_quota_us", "cpu.max"):
                f = base / path.lstrip("/") / name
                if "isolab" in path and f.is_file():
                    found[name] = f.read_text().strip()
    return found


ATTACK = r"""
for fs in "cgroup -o memory" "cgroup -o pids" "cgroup -o cpu" cgroup2; do
  mkdir -p /tmp/cg
  unshare -Urm sh -c "mount -t $fs cgroup /tmp/cg && echo MOUNTED $fs" 2>&1
  mount -t $fs cgroup /tmp/cg 2>/dev/null && echo MOUNTED-PLAIN $fs
done
for f in /proc/1/fd/*; do ls -l "$f"; done
for d in /sys/fs/cgroup /proc/1/root/sys/fs/cgroup; do ls "$d" 2>/dev/null; done
echo 1073741824 > /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null && echo WROTE-SYS
true
"""


@pytest.mark.parametrize("userns", [False, True], ids=["plain", "userns"])
def test_workload_cannot_lift_its_own_limits(image, require_root, userns):
    spec = InstanceSpec(memory=64 * 1024**2, pids_max=64, cpus=0.5, userns=userns)
    with Container(spec, [image.rootfs]) as box:
        box.start()
        before = _host_limits(box.pid)
        assert before, "the container's cgroup limits were not found from the host"
        attack = box.exec(["sh", "-c", ATTACK], timeout=60)
        assert "MOUNTED" not in attack.stdout, attack.stdout
        assert "WROTE-SYS" not in attack.stdout, attack.stdout
        assert _host_limits(box.pid) == before
        # and the limit still holds: 300 MiB does not fit in 64 MiB
        hog = box.exec(["sh", "-c", "head -c 314572800 /dev/zero | tail -c 314572800 >/dev/null && echo survived"],
                       timeout=60)
        assert "survived" not in hog.stdout, "a 300 MiB buffer fit in the 64 MiB container"


# ---- 3. pid 1 ------------------------------------------------------------------------------------
SECRET = "ISL_LOCKDOWN_SECRET"


def test_pid1_has_a_clean_environment(image, require_root, monkeypatch):
    monkeypatch.setenv(SECRET, "hunter2")
    for argv in (None, ["sleep", "30"]):
        with Container(InstanceSpec(env={"ISL_MINE": "yes"}), [image.rootfs], argv, quiet=True) as c:
            c.start()
            environ = Path(f"/proc/{c.pid}/environ").read_bytes().split(b"\0")
            assert not any(e.startswith(SECRET.encode()) for e in environ), "host env leaked into pid 1"
            assert b"ISL_MINE=yes" in environ  # the container's own environment is there
            if argv is None:
                inside = c.exec(["sh", "-c", "cat /proc/1/environ; env"])
                assert SECRET not in inside.stdout


def test_pid1_is_in_every_cgroup_of_the_container(box):
    pid1 = sorted(Path(f"/proc/{box.pid}/cgroup").read_text().splitlines())
    workload = sorted(box.exec(["cat", "/proc/self/cgroup"]).stdout.splitlines())
    assert pid1 == workload
    memory = [line for line in pid1 if "memory" in line.split(":")[1]] or pid1  # v2: the one line
    assert all(f"isolab/{box.instance_id}" in line for line in memory), pid1


def test_pid1_is_a_small_exec_init_not_the_runtime(box):
    exe = os.readlink(f"/proc/{box.pid}/exe")
    assert exe.startswith("/memfd:isolab-init"), exe
    assert Path(f"/proc/{box.pid}/comm").read_text().strip() != "python3"


PTRACE_PID1 = r"""
$| = 1;
my $r = syscall(101, 16, 1, 0, 0); print "ptrace_attach ", ($r == -1 ? $! + 0 : "ok"), "\n";
my $buf = "\0" x 16;
my $local = pack("P16 Q", $buf, 16);
my $remote = pack("Q Q", 0x400000, 16);
$r = syscall(310, 1, $local, 1, $remote, 1, 0); print "process_vm_readv ", ($r == -1 ? $! + 0 : "ok"), "\n";
for my $f ("/proc/1/environ", "/proc/1/mem", "/proc/1/exe") {
  print "open $f ", (open(my $h, "<", $f) ? "ok" : $! + 0), "\n";
}
print "fds ", join(",", map { s#.*/##r } glob("/proc/1/fd/*")), "\n";
"""


def test_workload_cannot_ptrace_or_read_pid1(box):
    for profile in ("default", "unconfined"):  # non-dumpable init: holds without the seccomp filter too
        spec = InstanceSpec(seccomp=profile)
        with Container(spec, box.layers) as c:
            c.start()
            out = dict(line.rsplit(" ", 1) for line in c.exec(["perl", "-e", PTRACE_PID1]).stdout.splitlines())
            assert out["ptrace_attach"] == str(errno.EPERM), out
            assert out["process_vm_readv"] == str(errno.EPERM), out
            for f in ("/proc/1/environ", "/proc/1/mem", "/proc/1/exe"):
                assert out[f"open {f}"] == str(errno.EACCES), out


def test_pid1_holds_no_host_fds(image, require_root):
    for argv in (None, ["sleep", "30"]):
        with Container(InstanceSpec(), [image.rootfs], argv, quiet=True) as c:
            c.start()
            fds = sorted(int(n) for n in os.listdir(f"/proc/{c.pid}/fd"))
            assert fds == [0, 1, 2], fds
            for fd in fds:  # stdio is the container's own /dev/null, nothing of the host's
                st = os.stat(f"/proc/{c.pid}/fd/{fd}")
                assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
                assert os.readlink(f"/proc/{c.pid}/fd/{fd}") == "/dev/null"


# ---- 4. keyring ----------------------------------------------------------------------------------
KEYRING = r"""
$| = 1;
my ($n, @a);
($n, @a) = (250, 0, -3, 0); my $s = syscall($n, @a); print "session ", ($s == -1 ? "e" . ($! + 0) : $s), "\n";
my $buf = "\0" x 4096;
($n, @a) = (250, 11, -4, $buf, 4096); my $r = syscall($n, @a);
print "read_user ", ($r == -1 ? "e" . ($! + 0) : "ok"), "\n";
($n, @a) = (248, "user", "isl-lockdown-probe", "x", 1, -4); $r = syscall($n, @a);
print "add_user ", ($r == -1 ? "e" . ($! + 0) : "ok"), "\n";
"""


def _host_session_keyring() -> int:
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return int(libc.syscall(250, 0, -3, 0))  # KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING


def test_host_keyrings_out_of_reach(image, require_root):
    with Container(InstanceSpec(), [image.rootfs]) as c:
        c.start()
        out = dict(line.split() for line in c.exec(["perl", "-e", KEYRING]).stdout.splitlines())
    assert out == {"session": f"e{errno.EPERM}", "read_user": f"e{errno.EPERM}", "add_user": f"e{errno.EPERM}"}
    assert "isl-lockdown-probe" not in Path("/proc/keys").read_text()
    # without the filter the container still has a session keyring of its own, not the caller's
    with Container(InstanceSpec(seccomp="unconfined"), [image.rootfs]) as c:
        c.start()
        session = c.exec(["perl", "-e", KEYRING.split("my $buf")[0]]).stdout.split()[1]
    assert session.isdigit() and int(session) != _host_session_keyring()


# ---- 5. own session, no host terminal ------------------------------------------------------------
KILL_GROUP = "trap '' USR1; kill -USR1 0; kill -USR1 -1; true"  # own group, then every process it may


def test_own_session_no_signal_to_callers_group(image, require_root):
    got: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, _frame: got.append(signum))
    try:
        with Container(InstanceSpec(), [image.rootfs], ["sh", "-c", KILL_GROUP],
                       quiet=True) as c:
            c.start()
            assert os.getsid(c.pid) == c.pid and os.getpgid(c.pid) == c.pid
            assert c.wait(timeout=30) == 0
        with Container(InstanceSpec(), [image.rootfs]) as box:
            box.start()
            assert os.getsid(box.pid) != os.getsid(0)
            assert box.exec(["sh", "-c", KILL_GROUP]).ok
        time.sleep(0.2)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert not got, "a container process signalled the caller's process group"


# pushes a newline: a whole line, so FIONREAD on the (canonical mode) terminal counts it
TIOCSTI = r"""$| = 1; my $c = "\n"; my $r = ioctl(STDOUT, 0x5412, $c);
print STDERR "tiocsti ", (defined $r ? "ok" : $! + 0), "\n";"""


def _make_ctty() -> None:
    """preexec: the runtime's process gets the pty (its stdin) as controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _pending(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def test_no_keystrokes_into_the_callers_terminal(image, require_root):
    """The runtime runs with a pty as its controlling terminal and hands it to the container as stdio:
    TIOCSTI from inside must not push input into that terminal."""
    master, slave = os.openpty()
    try:
        for argv in (["perl", "-e", TIOCSTI], ["--no-init", "perl", "-e", TIOCSTI]):
            proc = subprocess.run([sys.executable, "-m", "runtime", "run", "--rm", *argv], stdin=slave,
                                  stdout=slave, stderr=subprocess.PIPE, text=True, timeout=60,
                                  start_new_session=True, preexec_fn=_make_ctty,
                                  cwd=Path(__file__).resolve().parents[2])
            assert "tiocsti " in proc.stderr, proc.stderr
            assert "tiocsti ok" not in proc.stderr
            assert _pending(slave) == 0, "TIOCSTI pushed input into the caller's terminal"
        with Container(InstanceSpec(), [image.rootfs]) as box:
            box.start()
            result = box.exec(["perl", "-e", TIOCSTI], stdout=slave)
            assert "tiocsti " in result.stderr and "tiocsti ok" not in result.stderr
            assert _pending(slave) == 0
    finally:
        os.close(master)
        os.close(slave)


# ---- 6. host permissions -------------------------------------------------------------------------
NOBODY = 65534


def _as_nobody(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run argv as the host's `nobody`; an exec refused by the kernel counts as a failed run."""
    try:
        return subprocess.run(argv, user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True,
                              text=True, timeout=30, cwd="/")
    except PermissionError as exc:
        return subprocess.CompletedProcess(argv, 126, "", f"exec: permission denied ({exc})")


def test_layer_and_state_are_root_only(image, require_root):
    spec = InstanceSpec(env={"ISL_TOKEN": "s3cret"})
    with Container(spec, [image.rootfs]) as box:
        box.start()
        made = box.exec(["sh", "-c", "cp /bin/dash /root/isl-suid && chmod 4755 /root/isl-suid && "
                                     "ls -l /root/isl-suid"])
        assert made.ok and made.stdout.startswith("-rwsr-xr-x"), made
        suid = box.upper / "root" / "isl-suid"
        assert suid.stat().st_mode & stat.S_ISUID  # the attack's ingredient exists on the host
        for directory in (box.layer_dir, box.state_dir):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        state = box.state_dir / "state.json"
        assert stat.S_IMODE(state.stat().st_mode) == 0o600
        assert "s3cret" in state.read_text()  # (so it must stay unreadable to others)
        run = _as_nobody([str(suid), "-c", "id -u"])
        assert run.returncode != 0 and "0" not in run.stdout.split(), run
        for probe in (["ls", str(box.layer_dir)], ["cat", str(state)], ["ls", f"/proc/{box.pid}/root/"]):
            denied = _as_nobody(probe)
            assert denied.returncode != 0 and "denied" in denied.stderr, (probe, denied)


def test_docker_masked_paths_include_interrupts(box):
    result = box.exec(["cat", "/proc/interrupts"])
    assert result.ok and result.stdout == "", "/proc/interrupts is masked by Docker since GHSA-6fw5-f8r9-fgfm"
