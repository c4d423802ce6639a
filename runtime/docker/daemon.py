"""The suite's own dockerd: started on demand, shared by concurrent runs, stopped when its last user exits.

No systemd and nothing of the host's Docker: dockerd runs with its own data root (DATA_ROOT, the image
and container store; kept between runs like the image cache), its own exec root, pidfile and API socket
under /run/isolab/docker (EXEC_ROOT, removed when it stops), a config file of ours (the host's
/etc/docker/daemon.json is never read; the daemon's key.json lives in the data root, not in /etc/docker)
and flags that leave the host's firewall, routing and forwarding alone: no iptables/ip6tables rules, no
masquerade, no IP forwarding, no default bridge, no userland proxy. Containers get no network from Docker
(`none` or `host`); the platform wires bridge and nat itself (runtime.container.netsetup). Cgroups: the
cgroupfs driver with the parent `isolab/docker`, so every container's cgroup is `isolab/docker/<id>`.

Who may stop it: every process that uses the daemon holds a shared flock on the lock file `docker-users`
(runtime.state's lock dir) for its lifetime; the kernel drops it when that process dies, even by SIGKILL.
A process stops the daemon only while it can take that lock exclusively (nobody else uses it): each user
does so at its exit (atexit), and `python -m bench cleanup` does it for users that died. So a run leaves
no dockerd behind, and two runs at once share one daemon without stopping it under each other.

EXEC_ROOT carries a state record naming dockerd itself as its owner (runtime.state), so that tools that
look for mounts of dead runs under /run/isolab see its mounts as a live instance's while it runs.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from runtime import state
from runtime.container.cgroups.base import kill_procs, rmdir_retry, thaw
from runtime.errors import PlatformUnavailable
from runtime.linux import syscalls as sc
from runtime.linux.process import kill_matching, process_cmdline
from runtime.naming import CGROUP_PARENT, STATE_ROOT

DATA_ROOT = Path(os.environ.get("ISOLAB_DOCKER_DIR", "/var/lib/isolab/docker"))
EXEC_ROOT = STATE_ROOT / "docker"
SOCKET = EXEC_ROOT / "docker.sock"
PIDFILE = EXEC_ROOT / "dockerd.pid"
CONFIG = EXEC_ROOT / "daemon.json"
LOG = EXEC_ROOT / "dockerd.log"
#: The cgroup parent of every container (cgroupfs driver): `isolab/docker/<container id>`.
CGROUP = f"{CGROUP_PARENT}/docker"
BASE_URL = f"unix://{SOCKET}"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
USERS_LOCK = "docker-users"
DAEMON_LOCK = "docker-daemon"
#: Flags that keep dockerd off the host's firewall, routing and forwarding, as a list for env.json.
NETWORK_FLAGS = ("--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
                 "--bridge=none", "--userland-proxy=false")


def binary() -> str | None:
    return shutil.which("dockerd") or (
        "/usr/sbin/dockerd" if os.access("/usr/sbin/dockerd", os.X_OK) else None)


def binary_version() -> str:
    """The installed dockerd's version ('20.10.24+dfsg1') without starting it; '?' when unknown."""
    dockerd = binary()
    if dockerd is None:
        return "? (not installed)"
    try:
        out = subprocess.run([dockerd, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    match = re.search(r"version ([^,\s]+)", out)
    return match.group(1) if match else "?"


def argv(dockerd: str) -> list[str]:
    """dockerd's command line (each option one token, so that its exec root can be matched in /proc)."""
    return [dockerd, f"--config-file={CONFIG}", f"--data-root={DATA_ROOT}", f"--exec-root={EXEC_ROOT}",
            f"--pidfile={PIDFILE}", f"--host={BASE_URL}", *NETWORK_FLAGS, "--storage-driver=overlay2",
            "--exec-opt=native.cgroupdriver=cgroupfs", f"--cgroup-parent=/{CGROUP}",
            "--shutdown-timeout=2", "--log-level=warn"]


def config() -> dict[str, Any]:
    """daemon.json: only what has no flag (the trust key out of /etc/docker)."""
    return {"deprecated-key-path": str(DATA_ROOT / "key.json")}


def _ours(pid: int) -> bool:
    cmd = process_cmdline(pid)
    return bool(cmd) and os.path.basename(cmd[0]) == "dockerd" and f"--exec-root={EXEC_ROOT}" in cmd


def _zombie_or_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def running_pid() -> int | None:
    """The pid of the suite's dockerd if one runs (its pidfile, checked against its command line)."""
    try:
        pid = int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        pid = 0
    if pid <= 0:  # between start and the daemon writing its pidfile: the owner record has it
        owner = state.owner_of(EXEC_ROOT)
        pid = owner.pid if owner is not None and owner.alive() else 0
    return pid if pid > 0 and _ours(pid) and not _zombie_or_gone(pid) else None


def client(timeout: float = 120.0) -> Any:
    """A Docker SDK client on the suite's socket (no environment variables, no ~/.docker)."""
    import docker

    return docker.DockerClient(base_url=BASE_URL, timeout=int(timeout), version="auto")


def answers(timeout: float = 30.0) -> bool:
    """Whether the suite's dockerd runs and answers a ping within `timeout` (long: the host may be loaded)."""
    if running_pid() is None or not SOCKET.exists():
        return False
    try:
        c = client(timeout=timeout)
        try:
            return bool(c.ping())
        finally:
            c.close()
    except Exception:
        return False


# ---- users ----------------------------------------------------------------------------------------

_USER: dict[str, int] = {}  # "fd" -> the shared lock's fd, "pid" -> the process that holds it


def _open_lock(name: str) -> tuple[int, Path]:
    path = state.LOCK_DIR / f"{name}.lock"
    while True:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600), path
        except FileNotFoundError:
            state.ensure_root()
            state.LOCK_DIR.mkdir(mode=0o700, exist_ok=True)


def _flock_current(name: str, how: int) -> int | None:
    """An fd holding flock `how` on the lock file at its path now (a cleanup may replace an idle one);
    None when LOCK_NB was asked and the lock is taken."""
    while True:
        fd, path = _open_lock(name)
        try:
            fcntl.flock(fd, how)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def register_user() -> None:
    """Count this process as a user of the daemon until it exits (shared lock; see the module docstring)."""
    if _USER.get("pid") == os.getpid():
        return
    fd = _flock_current(USERS_LOCK, fcntl.LOCK_SH)
    assert fd is not None
    first = "pid" not in _USER
    _USER.update(fd=fd, pid=os.getpid())
    if first:
        atexit.register(_at_exit)


def release_user() -> list[str]:
    """Stop being a user; stop the daemon if nobody else uses it. Returns what was stopped."""
    if _USER.get("pid") != os.getpid():
        return []  # (a forked child inherits the record but is no user of its own)
    os.close(_USER.pop("fd"))
    _USER.pop("pid")
    return stop_if_unused()


def _at_exit() -> None:
    try:
        release_user()
    except Exception as exc:  # at exit: say it, never raise
        print(f"docker: could not stop the suite's dockerd at exit: {exc}")


# ---- start ----------------------------------------------------------------------------------------

def ensure_running(timeout: float = START_TIMEOUT_S) -> None:
    """Register as a user and make sure the suite's dockerd answers; PlatformUnavailable with the reason
    (and nothing left behind) when it cannot start."""
    dockerd = binary()
    if dockerd is None:
        raise PlatformUnavailable("docker: dockerd is not installed (Debian package docker.io; "
                                  "`python -m bench setup` installs it)")
    register_user()
    with state.locked(DAEMON_LOCK):
        if answers():
            return
        if running_pid() is not None:  # started by someone else, not answering yet
            if _wait_answer(timeout, None):
                return
            raise PlatformUnavailable(f"docker: the suite's dockerd (pid {running_pid()}) does not answer on "
                                      f"{SOCKET} after {timeout:g} s: {_log_tail()}")
        _stop_locked()  # what a killed daemon left (containerd, shims, mounts, the exec root)
        _start(dockerd, timeout)


def _start(dockerd: str, timeout: float) -> None:
    state.ensure_root()
    EXEC_ROOT.mkdir(mode=0o700, exist_ok=True)
    DATA_ROOT.mkdir(mode=0o710, parents=True, exist_ok=True)
    CONFIG.write_text(json.dumps(config()))
    with open(LOG, "ab") as log:
        proc = subprocess.Popen(argv(dockerd), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)
    owner = state.Owner.of(proc.pid)
    if owner is not None:
        state.write_json(EXEC_ROOT / state.STATE_FILE, {
            "id": "docker", "kind": "dockerd", "created": time.time(), "owner": owner.to_dict(),
            "owner_pid": owner.pid, "started_by": state.me().to_dict()})
    _STARTED.append(proc)
    if _wait_answer(timeout, proc):
        return
    reason = (f"exited with status {proc.returncode}" if proc.poll() is not None
              else f"does not answer on {SOCKET} after {timeout:g} s")
    tail = _log_tail()
    _stop_locked()
    raise PlatformUnavailable(f"docker: dockerd {reason}: {tail}")


_STARTED: list[subprocess.Popen[bytes]] = []  # daemons this process started (to reap them)


def _wait_answer(timeout: float, proc: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if answers(timeout=max(1.0, min(30.0, deadline - time.monotonic()))):
            return True
        time.sleep(0.05)
    return False


def _log_tail(lines: int = 3) -> str:
    try:
        text = LOG.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


# ---- stop -----------------------------------------------------------------------------------------

def stop_if_unused() -> list[str]:
    """Stop the suite's dockerd and remove what it made at run time (exec root, mounts, cgroups) when no
    process uses it; returns what was stopped or removed ([] when someone uses it)."""
    if not _anything_there() and not (state.LOCK_DIR / f"{USERS_LOCK}.lock").exists():
        return []  # (no lock files made for nothing: cleanup leaves none behind)
    fd = _flock_current(USERS_LOCK, fcntl.LOCK_EX | fcntl.LOCK_NB)
    if fd is None:
        return []
    try:
        done: list[str] = []
        if _anything_there():
            with state.locked(DAEMON_LOCK):
                done = _stop_locked()
                state.drop_lock(DAEMON_LOCK)
        state.drop_lock(USERS_LOCK)  # (held exclusively: a user waiting for it opens the file anew)
        state.remove_empty_dirs(state.LOCK_DIR)
        return done
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _anything_there() -> bool:
    """Whether a dockerd of ours, its exec root, its cgroups or mounts under its roots exist."""
    return (running_pid() is not None or EXEC_ROOT.exists() or any(Path("/sys/fs/cgroup").glob(f"*/{CGROUP}"))
            or bool(sc.mounts_under(EXEC_ROOT)) or bool(sc.mounts_under(DATA_ROOT)))


def _stop_locked() -> list[str]:
    done: list[str] = []
    pid = running_pid()
    if pid is not None:
        owner = state.Owner.of(pid)
        if owner is not None and state.signal_owner(owner, signal.SIGTERM):
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while not _zombie_or_gone(pid) and time.monotonic() < deadline:
                _reap()
                time.sleep(0.05)
            if not _zombie_or_gone(pid):
                state.signal_owner(owner, signal.SIGKILL)
            done.append(f"dockerd {pid} stopped")
    _reap()
    marker = f"{EXEC_ROOT}/"
    done += kill_matching(lambda p: "uses the suite's docker exec root"
                          if any(marker in arg or arg.endswith(f"={EXEC_ROOT}") for arg in process_cmdline(p))
                          else None)
    done += remove_cgroups()
    done += [f"mount {m}" for m in sc.detach_all_under(EXEC_ROOT) + sc.detach_all_under(DATA_ROOT)]
    if EXEC_ROOT.exists():
        shutil.rmtree(EXEC_ROOT, ignore_errors=True)
        done.append(str(EXEC_ROOT))
    return done


def _reap() -> None:
    for proc in list(_STARTED):
        if proc.poll() is not None:
            _STARTED.remove(proc)


def remove_cgroups() -> list[str]:
    """Kill what still runs in `isolab/docker/*` (every v1 hierarchy, or the v2 tree) and remove those
    cgroups and `isolab/docker` itself; only called with no dockerd running."""
    removed = []
    for parent in sorted(Path("/sys/fs/cgroup").glob(f"*/{CGROUP}")) + sorted(Path("/sys/fs/cgroup").glob(CGROUP)):
        if not parent.is_dir():
            continue
        for child in sorted(p for p in parent.iterdir() if p.is_dir()):
            thaw(child)
            kill_procs(child / "cgroup.procs", timeout=2.0)
            if rmdir_retry(child, timeout=2.0):
                removed.append(f"cgroup {child}")
        if rmdir_retry(parent, timeout=0.5):
            removed.append(f"cgroup {parent}")
    return removed
