"""The crun and runc platforms for real: an OCI bundle of the shared image, driven through the runtime's CLI;
limits read back from the cgroup, a spec they cannot honour refused up front, nothing left after a failed
start or a destroy. Skips only when the runtime binary is not installed (the reason printed)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import state
from runtime.container.hardening import DEFAULT_CAP_MASK
from runtime.errors import ExecTimeout, InstanceError, PlatformUnavailable, SpecError
from runtime.naming import CGROUP_PARENT, SCRATCH_ROOT, STATE_ROOT
from runtime.platform import load_platform
from runtime.spec import InstanceSpec

CGROUP = Path("/sys/fs/cgroup")


@pytest.fixture(params=["crun", "runc"])
def oci(request, image):
    platform = load_platform(request.param, image=image)
    try:
        platform.check_available()
    except PlatformUnavailable as exc:
        pytest.skip(str(exc))
    return platform


def traces(instance_id: str) -> list[str]:
    """What an instance may leave on the host: state and layer dirs, cgroups, mounts."""
    found = [str(p) for p in (STATE_ROOT / instance_id, SCRATCH_ROOT / instance_id) if p.exists()]
    found += [str(p) for p in CGROUP.glob(f"*/{CGROUP_PARENT}/{instance_id}")]
    found += [line.split()[4] for line in open("/proc/self/mountinfo") if instance_id in line.split()[4]]
    return found


def dead(pid: int) -> bool:
    """Gone, or a zombie waiting for the host's pid 1 (its parent after the runtime exited) to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def kind_dirs(kind: str) -> set[str]:
    return {p.name for p in state.instances(STATE_ROOT, kind)}


def test_create_exec_files_destroy(oci, tmp_path):
    with oci.create(InstanceSpec(hostname="oci-probe", env={"ISL_PROBE": "1"})) as instance:
        assert instance.platform == oci.name and instance.instance_id.startswith(f"{oci.name}-")
        out = instance.exec(["sh", "-c", "hostname; echo $ISL_PROBE $EXTRA; cat /etc/debian_version"],
                            env={"EXTRA": "x"})
        assert out.ok, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == "oci-probe" and lines[1] == "1 x" and lines[2].startswith("12")
        assert instance.exec(["sh", "-c", "exit 7"]).returncode == 7
        assert int(instance.exec(["cat", "/sys/class/net/lo/flags"]).stdout, 16) & 1  # lo is up
        assert instance.exec(["ls", "/sys/class/net"]).stdout.split() == ["lo"]  # network "none"
        # a writable layer over the read-only shared image; the image itself is untouched
        assert instance.exec(["sh", "-c", "echo w > /etc/isl-probe"]).ok
        assert not (oci.image.rootfs / "etc/isl-probe").exists()
        (tmp_path / "in").write_text("payload")
        instance.put_file(tmp_path / "in", "/tmp/in")
        assert instance.exec(["cat", "/tmp/in"]).stdout == "payload"
        instance.exec(["sh", "-c", "echo back > /tmp/out"])
        instance.get_file("/tmp/out", tmp_path / "out")
        assert (tmp_path / "out").read_text() == "back\n"
        pids = instance.host_pids()
        assert len(pids) == 1 and os.path.exists(f"/proc/{pids[0]}")
        assert Path(f"/proc/{pids[0]}/cmdline").read_bytes().split(b"\0")[0] == b"sleep"
        assert any(f"{CGROUP_PARENT}/{instance.instance_id}" in line
                   for line in Path(f"/proc/{pids[0]}/cgroup").read_text().splitlines())
        assert state.owner_of(STATE_ROOT / instance.instance_id) == state.me()
        instance_id = instance.instance_id
    assert dead(pids[0])
    assert traces(instance_id) == []
    instance.destroy()  # idempotent


def test_limits_and_lockdown_are_applied(oci):
    spec = InstanceSpec(cpus=0.5, cpuset="0", memory=96 * 2**20, pids_max=48, io_write_bps=2**20)
    with oci.create(spec) as instance:
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
        status = instance.exec(["cat", "/proc/self/status"]).stdout
        fields = dict(line.split(":", 1) for line in status.splitlines())
        assert fields["Seccomp"].strip() == "2"  # Docker's default profile, as a filter
        assert int(fields["CapBnd"], 16) == DEFAULT_CAP_MASK
        assert fields["NoNewPrivs"].strip() == "1"
        assert not instance.exec(["cat", "/proc/kcore"]).stdout  # masked
        assert not instance.exec(["sh", "-c", "echo 1 > /proc/sys/kernel/domainname"]).ok  # read-only
        assert instance.exec(["unshare", "--user", "true"]).returncode != 0  # seccomp: no namespaces


def test_unconfined_spec_has_no_filter(oci):
    with oci.create(InstanceSpec(seccomp="unconfined")) as instance:
        status = instance.exec(["grep", "^Seccomp:", "/proc/self/status"]).stdout
        assert status.split()[1] == "0"


def test_a_spec_it_cannot_honour_is_refused_before_anything_is_made(oci, monkeypatch):
    import runtime.network.nat as nat

    monkeypatch.setattr(nat, "nat_unavailable", lambda: "no DNAT here (test)")
    assert "nat" not in oci.network_modes
    before = kind_dirs(oci.name)
    with pytest.raises(SpecError, match=rf"{oci.name}: network mode 'nat' is not available here"):
        oci.create(InstanceSpec(network="nat"))
    assert {n for n in kind_dirs(oci.name) - before if not state.is_live(STATE_ROOT / n)} == set()


def test_bridge_network_with_bandwidth_and_host_network(oci):
    with oci.create(InstanceSpec(network="bridge", bandwidth=50 * 10**6)) as instance:
        address = instance.address
        assert address and instance.ignored_limits() == {}
        inside = instance.exec(["ip", "-o", "-4", "addr", "show", "eth0"]).stdout
        assert f" {address}/" in inside
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
        host_link = f"isl{instance.instance_id.rsplit('-', 1)[-1]}"
        assert Path(f"/sys/class/net/{host_link}").exists()
        assert "tbf" in subprocess.run(["tc", "qdisc", "show", "dev", host_link], capture_output=True,
                                       text=True).stdout
    assert not Path(f"/sys/class/net/{host_link}").exists()
    with oci.create(InstanceSpec(network="host")) as instance:
        pid = instance.host_pids()[0]
        assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
        assert instance.ignored_limits() == {} and instance.address is None


def test_a_failed_start_leaves_nothing(oci):
    before = kind_dirs(oci.name)
    missing_cpu = os.cpu_count() + 60  # the runtime fails writing cpuset.cpus
    with pytest.raises(InstanceError, match=rf"{oci.name} create failed"):
        oci.create(InstanceSpec(cpuset=str(missing_cpu), memory=64 * 2**20))
    assert {n for n in kind_dirs(oci.name) - before if not state.is_live(STATE_ROOT / n)} == set()
    made = [point for line in open("/proc/self/mountinfo")
            if (point := line.split()[4]).startswith(f"{STATE_ROOT}/{oci.name}-")
            and not state.is_live(STATE_ROOT / Path(point).relative_to(STATE_ROOT).parts[0])]
    cgroups = [p for p in CGROUP.glob(f"*/{CGROUP_PARENT}/{oci.name}-*")
               if p.name not in before and not state.is_live(STATE_ROOT / p.name)]
    assert made == [] and cgroups == []
    assert not [p for p in state.instances(SCRATCH_ROOT, oci.name) if p.name not in before]


def test_quiesce_freezes_and_wake_thaws(oci):
    with oci.create(InstanceSpec()) as instance:
        assert "freezer" in instance.quiesce()
        pid = instance.host_pids()[0]
        assert Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] in ("D", "S")
        freezer = CGROUP / "freezer" / CGROUP_PARENT / instance.instance_id / "freezer.state"
        assert freezer.read_text().strip() == "FROZEN"
        instance.wake()
        assert freezer.read_text().strip() == "THAWED"
        assert instance.exec(["true"]).ok


CHILD = """
import sys, time
from runtime.image.build import ensure_image
from runtime.platform import load_platform
from runtime.spec import InstanceSpec
instance = load_platform(sys.argv[1], image=ensure_image()).create(InstanceSpec(memory=64 << 20))
print(instance.instance_id, flush=True)
time.sleep(600)
"""


def test_cleanup_sweeps_the_container_of_a_killed_run(oci):
    from runtime.sweep import sweep

    repo = Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", CHILD, oci.name], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        instance_id = child.stdout.readline().strip()
        assert instance_id.startswith(f"{oci.name}-"), instance_id
        pid = int(state.read(STATE_ROOT / instance_id)["pid"])
    finally:
        child.kill()
        child.wait()
    assert not dead(pid) and traces(instance_id)  # kill -9 left the container running
    sweep(vms=False)
    oci.cleanup_leftovers()
    assert dead(pid)
    assert traces(instance_id) == []


def test_exec_timeout_kills_the_command(oci):
    with oci.create(InstanceSpec()) as instance:
        with pytest.raises(ExecTimeout, match="did not finish in 1 s"):
            instance.exec(["sleep", "300"], timeout=1)
        # only pid 1 (`sleep infinity`) still sleeps; the killed one is at most a zombie (its parent outside)
        procs = instance.exec(["ps", "-eo", "stat=,comm="]).stdout.split("\n")
        assert [p for p in procs if p.split()[1:] == ["sleep"] and not p.startswith("Z")] == [procs[0]]


def test_volume_is_a_host_directory_past_the_overlay(oci, tmp_path):
    with oci.create(InstanceSpec(volume=True)) as instance:
        assert instance.exec(["sh", "-c", "echo v > /mnt/data"]).ok
        assert instance.disk_usage_bytes() < 64 * 1024  # not in the writable layer
        (tmp_path / "in").write_text("to-volume")
        instance.put_file(tmp_path / "in", "/mnt/in")
        assert instance.exec(["cat", "/mnt/in"]).stdout == "to-volume"
        instance.get_file("/mnt/data", tmp_path / "out")
        assert (tmp_path / "out").read_text() == "v\n"
        instance_id = instance.instance_id
    assert traces(instance_id) == []
