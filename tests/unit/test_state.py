"""runtime.state: owner records that survive pid reuse, atomic root-only state files, the suite's locks."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import threading
import time

import pytest

from runtime import state


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "LOCK_DIR", tmp_path / "locks")
    monkeypatch.setattr(state, "ensure_root",
                        lambda root=tmp_path, mode=0o700: root.mkdir(mode=mode, exist_ok=True))
    return tmp_path / "run"


def test_start_time_is_field_22_even_with_a_hostile_command_name(tmp_path):
    # a command name with spaces and ')' must not shift the fields
    script = tmp_path / "a b) c"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)
    proc = subprocess.Popen(["sh", "-c", f"exec -a x '{script}'"])
    try:
        start = state.start_time(proc.pid)
        fields = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()
        assert start == int(fields[19]) and start > 0
    finally:
        proc.kill()
        proc.wait()
    assert state.start_time(proc.pid) is None or state.start_time(proc.pid) != start


def test_owner_alive_only_with_the_same_start_time():
    me = state.me()
    assert me.pid == os.getpid() and me.alive()
    assert not state.Owner(me.pid, me.start + 1).alive()  # same pid, other process: a reused pid
    assert not state.Owner(2**22 + 12345, 1).alive()  # above pid_max: never a process
    assert state.Owner.from_dict({"pid": 5}) is None and state.Owner.from_dict("x") is None


def test_signal_owner_refuses_a_reused_pid():
    proc = subprocess.Popen(["sleep", "30"])
    try:
        real = state.Owner.of(proc.pid)
        assert real is not None
        assert not state.signal_owner(state.Owner(proc.pid, real.start - 1), signal.SIGKILL)
        assert proc.poll() is None  # not signalled
        assert state.signal_owner(real, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not state.signal_owner(real, signal.SIGKILL)  # gone


def test_claim_records_the_owner_atomically_root_only(root):
    instance_id, path = state.create("ct", root)
    assert path == root / instance_id and instance_id.startswith("ct-")
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    record = path / state.STATE_FILE
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert state.owner_of(path) == state.me() and state.is_live(path)
    state.update(path, status="running")
    assert state.read(path)["status"] == "running" and state.owner_of(path) == state.me()
    assert [p.name for p in path.iterdir()] == [state.STATE_FILE]  # no temp file left
    with pytest.raises(FileExistsError):
        state.claim(path, "ct")
    assert state.instances(root, "ct") == [path] and state.instances(root, "vm") == []
    assert state.token_live(instance_id.split("-")[1], (root,))


def test_dead_or_missing_owner_is_not_live(root):
    _, path = state.create("nat", root)
    state.update(path, owner={"pid": 2**22 + 1, "start": 1})
    assert not state.is_live(path)
    (path / state.STATE_FILE).unlink()
    assert state.is_live(path)  # being created: a young dir without a record
    old = time.time() - state.YOUNG_S - 5
    os.utime(path, (old, old))
    assert not state.is_live(path)


def test_locked_excludes_threads_and_survives_removal_of_its_file(root):
    inside, overlap = [0], []

    def worker() -> None:
        for _ in range(50):
            with state.locked("t"):
                inside[0] += 1
                if inside[0] > 1:
                    overlap.append(True)
                time.sleep(0.0005)
                if inside[0] == 1 and len(overlap) == 0:
                    state.drop_lock("t")  # the holder may remove the file: later lockers make a new one
                inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlap
    assert state.drop_idle_locks() in ([], [str(state.LOCK_DIR / "t.lock")])
