"""The lxc platform for real: LXC 5 containers of the shared image through lxc-start/lxc-attach; limits read
back from the cgroup, a spec it cannot honour refused up front, nothing left after a failed start, a destroy
or a killed run, and no lxcbr0, lxc-net or firewall rule of LXC's own. Skips only when LXC is not installed
(the reason printed)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import state
from runtime.errors import ExecTimeout, InstanceError, PlatformUnavailable, SpecError
from runtime.lxc.platform import lock_dir
from runtime.naming import CGROUP_PARENT, SCRATCH_ROOT, STATE_ROOT
from runtime.platform import load_platform
from runtime.spec import InstanceSpec

CGROUP = Path("/sys/fs/cgroup")
# LXC's common.conf drops these (capability numbers), a privileged container keeps every other one
LXC_DROPPED = {"sys_module": 16, "sys_rawio": 17, "sys_time": 25, "mac_override": 32, "mac_admin": 33}


@pytest.fixture(scope="module")
def lxc(image):
    platform = load_platform("lxc", image=image)
    try:
        platform.check_available()
    except PlatformUnavailable as exc:
        pytest.skip(str(exc))
    return platform


def token(instance_id: str) -> str:
    return instance_id.rsplit("-", 1)[-1]


def traces(instance_id: str) -> list[str]:
    """What an instance may leave on the host: state and layer dirs, cgroups (its own and LXC's monitor's),
    mounts, LXC's lock dir, LXC processes (the monitor names the instance's lxcpath)."""
    found = [str(p) for p in (STATE_ROOT / instance_id, SCRATCH_ROOT / instance_id,
                              lock_dir(STATE_ROOT / instance_id)) if p.exists()]
    found += [str(p) for name in (instance_id, f"lxcmon-{token(instance_id)}")
              for p in CGROUP.glob(f"*/{CGROUP_PARENT}/{name}")]
    found += [line.split()[4] for line in open("/proc/self/mountinfo") if instance_id in line.split()[4]]
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"{STATE_ROOT}/{instance_id}" in cmdline:
            found.append(f"process {pid}: {cmdline}")
    return found


def dead(pid: int) -> bool:
    """Gone, or a zombie waiting for the host's pid 1 (its parent after LXC's monitor exited) to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def lxc_dirs() -> set[str]:
    return {p.name for p in state.instances(STATE_ROOT, "lxc")}


def new_dead_dirs(before: set[str]) -> set[str]:
    return {n for n in lxc_dirs() - before if not state.is_live(STATE_ROOT / n)}


def lxc_network_objects() -> list[str]:
    """What Debian's lxc-net makes when it runs: the bridge lxcbr0, its nft table `lxc`, its dnsmasq."""
    found = []
    if Path("/sys/class/net/lxcbr0").exists():
        found.append("link lxcbr0")
    ruleset = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True).stdout
    for item in json.loads(ruleset or '{"nftables": []}')["nftables"]:
        table = item.get("table")
        if table and table.get("name") == "lxc":
            found.append(f"nft table {table['family']} lxc")
    if "lxcbr0" in ruleset:
        found.append("an nft rule names lxcbr0")
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"dnsmasq") and b"lxc" in cmdline:
            found.append(f"dnsmasq {pid}")
    return found


def test_create_exec_files_destroy(lxc, tmp_path):
    with lxc.create(InstanceSpec(hostname="lxc-probe", env={"ISL_PROBE": "1"})) as instance:
        assert instance.platform == "lxc" and instance.instance_id.startswith("lxc-")
        out = instance.exec(["sh", "-c", "hostname; echo $ISL_PROBE $EXTRA; cat /etc/debian_version"],
                            env={"EXTRA": "x"})
        assert out.ok, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == "lxc-probe" and lines[1] == "1 x" and lines[2].startswith("12")
        assert instance.exec(["sh", "-c", "exit 7"]).returncode == 7
        assert instance.exec(["no-such-command"]).returncode != 0
        assert int(instance.exec(["cat", "/sys/class/net/lo/flags"]).stdout, 16) & 1  # lo is up
        assert instance.exec(["ls", "/sys/class/net"]).stdout.split() == ["lo"]  # network "none"
        assert instance.exec(["sh", "-c", "echo w > /etc/isl-probe"]).ok  # a writable layer ...
        assert not (lxc.image.rootfs / "etc/isl-probe").exists()  # ... over the untouched shared image
        (tmp_path / "in").write_text("payload")
        instance.put_file(tmp_path / "in", "/tmp/in")
        assert instance.exec(["cat", "/tmp/in"]).stdout == "payload"
        instance.exec(["sh", "-c", "echo back > /tmp/out"])
        instance.get_file("/tmp/out", tmp_path / "out")
        assert (tmp_path / "out").read_text() == "back\n"
        assert instance.disk_usage_bytes() > 0
        pids = instance.host_pids()
        assert len(pids) == 1 and Path(f"/proc/{pids[0]}/cmdline").read_bytes().split(b"\0")[0] == b"sleep"
        cgroups = Path(f"/proc/{pids[0]}/cgroup").read_text().splitlines()
        assert any(line.endswith(f":/{CGROUP_PARENT}/{instance.instance_id}/inner") for line in cgroups)
        assert state.owner_of(STATE_ROOT / instance.instance_id) == state.me()
        instance_id = instance.instance_id
    assert dead(pids[0])
    assert traces(instance_id) == []
    instance.destroy()  # idempotent


def test_limits_and_lockdown_are_applied(lxc):
    spec = InstanceSpec(cpus=0.5, cpuset="0", memory=96 * 2**20, pids_max=48, io_write_bps=2**20)
    with lxc.create(spec) as instance:
        name = f"{CGROUP_PARENT}/{instance.instance_id}"

        def read(controller: str, file: str) -> str:
            return (CGROUP / controller / name / file).read_text().strip()

        assert read("cpu", "cpu.cfs_quota_us") == "50000"
        assert read("cpu", "cpu.cfs_period_us") == "100000"
        assert read("cpuset", "cpuset.cpus") == "0"
        assert read("memory", "memory.limit_in_bytes") == str(96 * 2**20)
        assert read("pids", "pids.max") == "48"
        assert read("blkio", "blkio.throttle.write_bps_device").endswith(f" {2**20}")
        assert instance.ignored_limits() == {}
        # v1's blk-throttle does not reach child cgroups: the throttle is on `inner` too, and holds
        assert read("blkio", "inner/blkio.throttle.write_bps_device").endswith(f" {2**20}")
        wrote = instance.exec(["dd", "if=/dev/zero", "of=/var/tmp/throttled", "bs=256k", "count=8", "oflag=direct"])
        assert wrote.ok, wrote.stderr
        assert wrote.duration_s > 1.0, wrote.stderr  # 2 MiB under 1 MiB/s (unthrottled: well under 0.2 s)
        status = instance.exec(["cat", "/proc/self/status"]).stdout
        fields = dict(line.split(":", 1) for line in status.splitlines())
        assert fields["Seccomp"].strip() == "2"  # LXC's common.seccomp
        bounding = int(fields["CapBnd"], 16)
        assert all(not bounding & (1 << bit) for bit in LXC_DROPPED.values())
        assert bounding & (1 << 21)  # CAP_SYS_ADMIN stays: LXC's privileged container, as shipped
        # root inside mounts the memory cgroup and sees only its own (inner) cgroup: the limit is above it
        inside = instance.exec(["sh", "-c", "mkdir -p /tmp/cg && mount -t cgroup -o memory none /tmp/cg && "
                                "echo 9223372036854771712 > /tmp/cg/memory.limit_in_bytes; "
                                "cat /tmp/cg/memory.limit_in_bytes"])
        assert inside.ok, inside.stderr
        assert read("memory", "memory.limit_in_bytes") == str(96 * 2**20)
        assert instance.exec(["ls", "/sys/fs/cgroup"]).stdout.strip() == ""  # nothing auto-mounted


def test_unconfined_spec_has_no_filter(lxc):
    with lxc.create(InstanceSpec(seccomp="unconfined")) as instance:
        status = instance.exec(["grep", "^Seccomp:", "/proc/self/status"]).stdout
        assert status.split()[1] == "0"


def test_a_spec_it_cannot_honour_is_refused_before_anything_is_made(lxc, monkeypatch):
    import runtime.network.nat as nat

    before = lxc_dirs()
    with pytest.raises(SpecError, match=r"lxc: InstanceSpec\.userns is not supported"):
        lxc.create(InstanceSpec(userns=True))
    monkeypatch.setattr(nat, "nat_unavailable", lambda: "no DNAT here (test)")
    assert "nat" not in lxc.network_modes
    with pytest.raises(SpecError, match="lxc: network mode 'nat' is not available here"):
        lxc.create(InstanceSpec(network="nat"))
    assert new_dead_dirs(before) == set() and lxc_dirs() - before == set()


def test_a_failed_start_leaves_nothing(lxc):
    before = lxc_dirs()
    missing_cpu = os.cpu_count() + 60  # LXC fails writing cpuset.cpus
    with pytest.raises(InstanceError, match=r"lxc-start isl[0-9a-f]{8} failed .*cpuset"):
        lxc.create(InstanceSpec(cpuset=str(missing_cpu), memory=64 * 2**20))
    made = lxc_dirs() - before
    assert {n for n in made if not state.is_live(STATE_ROOT / n)} == set()
    mounts = [point for line in open("/proc/self/mountinfo")
              if (point := line.split()[4]).startswith(f"{STATE_ROOT}/lxc-")
              and not state.is_live(STATE_ROOT / Path(point).relative_to(STATE_ROOT).parts[0])]
    cgroups = [str(p) for pattern in ("lxc-*", "lxcmon-*") for p in CGROUP.glob(f"*/{CGROUP_PARENT}/{pattern}")
               if not state.token_live(token(p.name))]
    assert mounts == [] and cgroups == []
    assert not [p for p in state.instances(SCRATCH_ROOT, "lxc") if not (STATE_ROOT / p.name).exists()]
    locks = lock_dir(STATE_ROOT)
    assert not [p for p in (locks.glob("lxc-*") if locks.is_dir() else []) if not state.token_live(token(p.name))]


def test_networks_and_no_lxc_net(lxc):
    assert lxc_network_objects() == []
    with lxc.create(InstanceSpec(network="bridge", bandwidth=50 * 10**6)) as instance:
        address = instance.address
        assert address and instance.ignored_limits() == {}
        assert f" {address}/" in instance.exec(["ip", "-o", "-4", "addr", "show", "eth0"]).stdout
        gateway = instance.network.bridge.gateway  # the host's end of the suite bridge
        with socket.create_server((gateway, 0)) as server:
            server.settimeout(20)
            port = server.getsockname()[1]
            sent = instance.exec(["bash", "-c", "exec 3<>/dev/tcp/$0/$1 && echo hello-host >&3",
                                  gateway, str(port)], timeout=20)
            assert sent.ok, sent.stderr
            conn, peer = server.accept()
            with conn:
                assert conn.recv(64) == b"hello-host\n" and peer[0] == address
        host_link = f"isl{token(instance.instance_id)}"
        assert "tbf" in subprocess.run(["tc", "qdisc", "show", "dev", host_link], capture_output=True,
                                       text=True).stdout
        assert lxc_network_objects() == []
    assert not Path(f"/sys/class/net/{host_link}").exists()
    with lxc.create(InstanceSpec(network="host")) as instance:
        pid = instance.host_pids()[0]
        assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
        assert instance.address is None
    assert lxc_network_objects() == []
    env = lxc.environment()
    assert "isolab never starts lxc-net" in env["lxc_net"] and "lxcbr0 present: False" in env["lxc_net"]


def test_quiesce_freezes_and_wake_thaws(lxc):
    with lxc.create(InstanceSpec()) as instance:
        assert "freezer" in instance.quiesce()
        freezer = CGROUP / "freezer" / CGROUP_PARENT / instance.instance_id / "inner" / "freezer.state"
        assert freezer.read_text().strip() == "FROZEN"
        instance.wake()
        assert freezer.read_text().strip() == "THAWED"
        assert instance.exec(["true"]).ok


def test_exec_timeout_kills_the_command(lxc):
    with lxc.create(InstanceSpec()) as instance:
        with pytest.raises(ExecTimeout, match="did not finish in 1 s"):
            instance.exec(["sh", "-c", "sleep 300; true"], timeout=1)
        procs = instance.exec(["ps", "-eo", "stat=,args="]).stdout.splitlines()
        assert not [p for p in procs if "sleep 300" in p and not p.lstrip().startswith("Z")], procs


def test_volume_is_a_host_directory_past_the_overlay(lxc, tmp_path):
    with lxc.create(InstanceSpec(volume=True)) as instance:
        assert instance.exec(["sh", "-c", "echo v > /mnt/data"]).ok
        assert instance.disk_usage_bytes() < 64 * 1024  # not in the writable layer
        (tmp_path / "in").write_text("to-volume")
        instance.put_file(tmp_path / "in", "/mnt/in")
        assert instance.exec(["cat", "/mnt/in"]).stdout == "to-volume"
        instance.get_file("/mnt/data", tmp_path / "out")
        assert (tmp_path / "out").read_text() == "v\n"
        instance_id = instance.instance_id
    assert traces(instance_id) == []


CHILD = """
import sys, time
from runtime.image.build import ensure_image
from runtime.platform import load_platform
from runtime.spec import InstanceSpec
instance = load_platform("lxc", image=ensure_image()).create(InstanceSpec(memory=64 << 20))
print(instance.instance_id, flush=True)
time.sleep(600)
"""


def test_cleanup_sweeps_the_container_of_a_killed_run(lxc):
    from runtime.sweep import sweep

    repo = Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        instance_id = child.stdout.readline().strip()
        assert instance_id.startswith("lxc-"), instance_id
        pid = int(state.read(STATE_ROOT / instance_id)["pid"])
    finally:
        child.kill()
        child.wait()
    assert not dead(pid) and traces(instance_id)  # kill -9 left the container running
    sweep(vms=False)
    lxc.cleanup_leftovers()
    assert dead(pid)
    assert traces(instance_id) == []
