"""Real (root) lifecycle: the harness contract, the CLI, bad input, and cleanup after a SIGKILLed runtime."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runtime.container.cgroups import cgroup_version, make_cgroup
from runtime.container.cgroups.sweep import cgroup_parents
from runtime.container.container import Container
from runtime.container.platform import ContainerPlatform
from runtime.errors import ImageError, InstanceError, SpecError
from runtime.naming import SCRATCH_ROOT, STATE_ROOT
from runtime.network.bridge import remove_bridge_if_unused
from runtime.spec import InstanceSpec, parse_size
from runtime.sweep import sweep as cleanup

REPO = Path(__file__).resolve().parents[2]


def _ours() -> set[str]:
    """Every container/network object on the host (the things `cleanup` owns) that no *other* live process
    owns (another run or another test session may create containers at the same time: such objects,
    recorded as theirs in runtime.state, neither count as our leak nor must cleanup remove them)."""
    from runtime import state

    def foreign(item: str) -> bool:
        token = re.search(r"(?:ct|peer)-([0-9a-f]{8})|isl([0-9a-f]{8})", item)
        if token is None:
            return False
        key = token.group(1) or token.group(2)
        # (a dir without a readable record is being made or removed by its owner right now: not ours)
        return any(state.is_live(p) and state.owner_pid(p) != os.getpid() for p in STATE_ROOT.glob(f"*-{key}"))

    return {item for item in _all_objects() if not foreign(item)}


def _all_objects() -> set[str]:
    found = [line for line in open("/proc/self/mounts") if "isolab/ct-" in line]
    for root in (STATE_ROOT, SCRATCH_ROOT):
        if root.is_dir():
            found += [str(p) for p in root.iterdir() if p.name.startswith(("ct-", "peer-"))]
    found += [str(p) for parent in cgroup_parents() for p in parent.glob("ct-*")]  # v1 or v2 layout
    found += [p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith("isl")]
    netns = Path("/run/netns")
    if netns.is_dir():
        found += [p.name for p in netns.iterdir() if p.name.startswith("isl")]
    return set(found)


def _owner_alive(path: Path) -> bool:
    from runtime import state

    return state.is_live(path)


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtime", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def test_platform_contract(image, require_root, tmp_path):
    before = _ours()
    platform = ContainerPlatform(image)
    platform.check_available()
    assert platform.environment()["cgroup_version"] == cgroup_version() in (1, 2)
    with platform.create(InstanceSpec(network="bridge", cpus=1, io_write_bps=10_000_000)) as inst:
        assert inst.platform == "container" and inst.scratch_dir == "/tmp"
        assert inst.address and inst.address.startswith("10.213.0.")
        assert set(inst.start_phases.phases) == {"cgroup", "namespaces", "mounts", "network", "exec"}
        local = tmp_path / "in.txt"
        local.write_text("payload")
        inst.put_file(local, "/tmp/in.txt")
        assert inst.exec(["cat", "/tmp/in.txt"]).stdout == "payload"
        inst.get_file("/etc/os-release", tmp_path / "os-release")
        assert "debian" in (tmp_path / "os-release").read_text().lower()
        assert inst.disk_usage_bytes() > 0
        assert inst.ignored_limits() == {}  # the scratch disk is a real block device here
        missing = inst.exec(["isl-missing"])
        assert missing.returncode == 127 and "not found" in missing.stderr
    remove_bridge_if_unused()
    assert _ours() <= before


@pytest.mark.parametrize("case", ["missing-layer", "bad-memory", "bad-network", "missing-command"])
def test_bad_input_one_error_nothing_left(image, require_root, case):
    before = _ours()
    if case == "missing-layer":
        with pytest.raises(ImageError, match="/nonexistent/layer"):
            Container(InstanceSpec(), [image.rootfs, Path("/nonexistent/layer")], ["true"]).start()
    elif case == "bad-memory":
        with pytest.raises(SpecError, match="-5"):
            InstanceSpec(memory=parse_size("-5", "--memory"))
    elif case == "bad-network":
        with pytest.raises(SpecError, match="unknown network mode 'wifi'"):
            InstanceSpec(network="wifi")
    else:
        with pytest.raises(InstanceError, match="command not found in the image: isl-nope"):
            Container(InstanceSpec(network="bridge"), [image.rootfs], ["isl-nope"]).start()
        remove_bridge_if_unused()
    assert _ours() <= before


def test_cli_run_streams_and_passes_exit_codes(image, require_root):
    before = _ours()
    done = _cli("run", "--rm", "--hostname", "clibox", "--", "sh", "-c", "hostname; echo oops >&2; exit 7")
    assert (done.returncode, done.stdout, done.stderr) == (7, "clibox\n", "oops\n")
    killed = _cli("run", "--rm", "--", "sh", "-c", "kill -KILL $$")
    assert killed.returncode == 137
    bad_inputs = ((["--memory", "-5"], "invalid --memory"), (["--net", "wifi"], "unknown network mode"),
                  (["--image", "isl-none"], "image 'isl-none' not found"))
    for args, needle in bad_inputs:
        bad = _cli("run", *args, "--", "true")
        assert bad.returncode == 125 and len(bad.stderr.strip().splitlines()) == 1 and needle in bad.stderr
    nocmd = _cli("run", "--rm", "--", "isl-nope")
    assert nocmd.returncode == 127 and "command not found in the image: isl-nope" in nocmd.stderr
    assert _ours() <= before


def test_cli_ps_exec_kill_diff_rm(image, require_root, tmp_path):
    before = _ours()
    cidfile = tmp_path / "cid"
    runner = subprocess.Popen([sys.executable, "-m", "runtime", "run", "--cidfile", str(cidfile), "--",
                               "sh", "-c", "echo hi > /root/note; sleep 60"], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            if cidfile.exists() and cidfile.read_text().strip() in _cli("ps", "-q").stdout:
                break
            time.sleep(0.05)
        cid = cidfile.read_text().strip()
        assert _cli("exec", cid, "--", "sh", "-c", "test -f /root/note && exit 4").returncode == 4
        assert _cli("exec", cid, "--", "isl-nope").returncode == 127
        assert _cli("kill", "-s", "TERM", cid).returncode == 0
        assert runner.wait(timeout=20) == 128 + signal.SIGTERM
        assert cid in _cli("ps", "-a").stdout
        assert "A /root/note" in _cli("diff", cid).stdout
        assert _cli("rm", cid).returncode == 0
        assert cid not in _cli("ps", "-a").stdout
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        if cidfile.exists() and cidfile.read_text().strip():  # a kept container: cleanup spares it by design
            _cli("rm", cidfile.read_text().strip())
        cleanup()
    assert _ours() <= before


SLOW_START = textwrap.dedent("""
    import sys, time
    from runtime.container.container import Container
    from runtime.image.build import ensure_image
    from runtime.spec import InstanceSpec
    userns = sys.argv[1] == "started-userns"
    c = Container(InstanceSpec(network="bridge", memory=64 << 20, userns=userns), [ensure_image().rootfs])
    c.create()
    print("created", c.instance_id, flush=True)
    if sys.argv[1].startswith("started"):
        c.start()
        print(sys.argv[1], flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("when", ["created", "started", "started-userns"])
def test_cleanup_after_sigkilled_runtime(image, require_root, when):
    before = _ours()
    proc = subprocess.Popen([sys.executable, "-c", SLOW_START, when], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = [proc.stdout.readline() for _ in range(2 if when.startswith("started") else 1)]  # type: ignore[union-attr]
        assert lines[-1].startswith(when), proc.stderr.read() if proc.stderr else ""
        instance_id = lines[0].split()[1]
        assert (STATE_ROOT / instance_id).exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = _ours() - before
    assert left, "the killed runtime should have left something to clean"
    if when.startswith("started"):
        assert any(p.exists() and p.read_text().split() for p in make_cgroup(instance_id).procs_files())
    result = _cli("cleanup")
    assert result.returncode == 0, result.stderr
    assert instance_id in result.stdout
    assert not (_ours() & left)
    assert not any(p.exists() for p in make_cgroup(instance_id).paths())


def test_init_forwards_signals_and_passes_status(image, require_root):
    with Container(InstanceSpec(), [image.rootfs], ["sh", "-c", "trap 'exit 42' TERM; sleep 30 & wait"]) as c:
        c.start()
        time.sleep(0.2)
        c.kill(signal.SIGTERM)
        assert c.wait(timeout=10) == 42
    with Container(InstanceSpec(), [image.rootfs], ["sleep", "30"]) as c:
        c.start()
        c.kill(signal.SIGTERM)  # forwarded by the init: sleep dies of it, init exits 128+15
        assert c.wait(timeout=10) == 128 + signal.SIGTERM


def test_cli_commit_images_rmi(image, require_root, tmp_path):
    before = _ours()
    cidfile = tmp_path / "cid"
    done = _cli("run", "--cidfile", str(cidfile), "--", "sh", "-c", "echo layered > /srv/isl-layer")
    assert done.returncode == 0, done.stderr
    cid = cidfile.read_text().strip()
    name = f"isltest-{cid[3:]}"
    try:
        committed = _cli("commit", "-m", "test", cid, name)
        assert committed.returncode == 0 and committed.stdout.strip() == name, committed.stderr
        assert name in _cli("images").stdout
        child = _cli("run", "--rm", "--image", name, "--", "cat", "/srv/isl-layer")
        assert child.stdout == "layered\n"
        assert _cli("commit", cid, name).returncode == 125  # exists already: one clear error
    finally:
        assert _cli("rm", cid).returncode == 0
        _cli("rmi", name)
    assert name not in _cli("images").stdout
    assert _ours() <= before


def test_zz_host_left_clean(require_root):
    """Runs last in this module: no container of a dead runtime remains, no container mount on the host.
    (Containers of a harness running at the same time may exist; native's nat-* mounts are not ours.)"""
    from runtime import state
    from runtime.network.bridge import _entry_alive

    assert "isolab/ct-" not in open("/proc/self/mounts").read()
    if STATE_ROOT.is_dir():
        assert all(_owner_alive(p) or state.is_kept(p) for p in STATE_ROOT.glob("ct-*"))
    live = {p.name for p in STATE_ROOT.glob("ct-*")} if STATE_ROOT.is_dir() else set()
    assert {p.name for parent in cgroup_parents() for p in parent.glob("ct-*")} <= live
    for book in (STATE_ROOT / "net").glob("*.json") if (STATE_ROOT / "net").is_dir() else []:
        for entry in json.loads(book.read_text() or "{}").values():  # only running processes hold addresses
            assert _entry_alive(entry)
