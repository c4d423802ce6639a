"""The docker platform for real: the suite's own dockerd (started by the platform), the shared image imported
as isolab/rootfs:<hash>, limits read back from Docker's inspect and from the cgroup, a spec Docker cannot
honour refused before anything is made, no leftovers after a failed start or a crashed run's containers,
and the host's firewall, routing and forwarding unchanged by dockerd and its containers.
Skips only when docker.io or the Docker SDK is not installed (the reason printed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime import state
from runtime.container.hardening import DEFAULT_CAP_MASK
from runtime.docker import daemon
from runtime.docker import image as docker_image
from runtime.errors import ExecTimeout, InstanceError, PlatformUnavailable, SpecError
from runtime.linux.transfer import TransferError
from runtime.naming import SCRATCH_ROOT, STATE_ROOT
from runtime.platform import load_platform
from runtime.spec import InstanceSpec

CGROUP = Path("/sys/fs/cgroup")
REPO = Path(__file__).resolve().parents[2]


def host_network_state() -> dict[str, object]:
    """The host's firewall, routing and forwarding, minus the suite's own objects (`isl…` links and their
    routes, nftables tables `isolab*`), which other test sessions on this host may make at the same time."""
    def run(*argv: str) -> str:
        if shutil.which(argv[0]) is None:
            return f"({argv[0]} not installed)"
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout

    tables = [t for t in run("nft", "list", "tables").splitlines() if t.strip() and " isolab" not in t]
    return {
        "nft tables": sorted(tables),
        "nft rules": [run("nft", "list", *t.split()) for t in sorted(tables)],
        "iptables": [x for x in run("iptables-save").splitlines() if not x.startswith("#")],
        "ip6tables": [x for x in run("ip6tables-save").splitlines() if not x.startswith("#")],
        "routes": [r for r in run("ip", "route", "show", "table", "all").splitlines() if "dev isl" not in r],
        "rules": run("ip", "rule").splitlines(),
        "links": sorted(p.name for p in Path("/sys/class/net").iterdir() if not p.name.startswith("isl")),
        "forwarding": {p.parent.name: p.read_text().strip()
                       for p in Path("/proc/sys/net/ipv4/conf").glob("*/forwarding")
                       if not p.parent.name.startswith("isl")},
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
    }


@pytest.fixture(scope="module")
def before_docker(require_root):
    """The host's network state before this module's dockerd (if none ran already)."""
    return host_network_state(), daemon.running_pid() is None


@pytest.fixture(scope="module")
def docker_platform(before_docker, image):
    platform = load_platform("docker", image=image)
    try:
        platform.check_available()
    except PlatformUnavailable as exc:
        if "not installed" in str(exc) or "SDK for Python is missing" in str(exc):
            pytest.skip(str(exc))
        raise  # installed but unable to start: a failure, not a skip
    return platform


def our_containers(platform) -> list[str]:
    return [c.name for c in platform.client().containers.list(all=True, filters={"label": "org.isolab.instance"})]


def traces(platform, instance_id: str, container_id: str | None) -> list[str]:
    """What one instance may leave: its container, state and scratch dirs, its cgroups, its mounts."""
    found = [f"container {n}" for n in our_containers(platform) if instance_id in n]
    found += [str(p) for p in (STATE_ROOT / instance_id, SCRATCH_ROOT / instance_id) if p.exists()]
    if container_id:
        found += [str(p) for p in CGROUP.glob(f"*/{daemon.CGROUP}/{container_id}")]
        found += [line.split()[4] for line in open("/proc/self/mountinfo") if container_id[:12] in line]
    found += [line.split()[4] for line in open("/proc/self/mountinfo") if instance_id in line]
    return found


def test_create_exec_files_destroy(docker_platform, tmp_path):
    with docker_platform.create(InstanceSpec(hostname="dk-probe", env={"ISL_PROBE": "1"})) as instance:
        assert instance.platform == "docker" and instance.instance_id.startswith("docker-")
        out = instance.exec(["sh", "-c", "hostname; echo $ISL_PROBE $EXTRA; cat /etc/debian_version; echo e >&2"],
                            env={"EXTRA": "x"})
        assert out.ok, out.stderr
        lines = out.stdout.splitlines()
        assert lines[:2] == ["dk-probe", "1 x"] and lines[2].startswith("12") and out.stderr == "e\n"
        assert instance.exec(["sh", "-c", "exit 7"]).returncode == 7
        assert instance.exec(["ls", "/sys/class/net"]).stdout.split() == ["lo"]  # network "none"
        # the container's root is the imported shared image, its writes stay in its own layer
        attrs = instance.container.attrs
        assert attrs["Config"]["Image"] == docker_image.tag_for(docker_platform.image)
        assert instance.exec(["sh", "-c", "echo w > /etc/isl-probe"]).ok
        assert not (docker_platform.image.rootfs / "etc/isl-probe").exists()
        assert instance.disk_usage_bytes() > 0
        # files both ways
        (tmp_path / "in").write_text("payload")
        instance.put_file(tmp_path / "in", "/tmp/in")
        assert instance.exec(["cat", "/tmp/in"]).stdout == "payload"
        instance.exec(["sh", "-c", "echo back > /tmp/out; ln -s /tmp/out /tmp/link"])
        instance.get_file("/tmp/link", tmp_path / "out")  # a symlink inside is followed inside
        assert (tmp_path / "out").read_text() == "back\n"
        # a timeout kills what the command started
        with pytest.raises(ExecTimeout, match="did not finish in 1 s"):
            instance.exec(["sh", "-c", "sleep 300 & sleep 301"], timeout=1)
        assert "sleep 30" not in instance.exec(["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"]).stdout
        # pid 1 on the host, in isolab/docker/<container id>
        pids = instance.host_pids()
        init = pids[-1]
        assert Path(f"/proc/{init}/cmdline").read_bytes().split(b"\0")[0] == b"sleep"
        assert f"/{daemon.CGROUP}/{instance.container_id}" in Path(f"/proc/{init}/cgroup").read_text()
        assert state.owner_of(STATE_ROOT / instance.instance_id) == state.me()
        assert instance.quiesce() == "cgroup freezer (docker pause)"
        assert instance.container.client.containers.get(instance.container_id).status == "paused"
        instance.wake()
        assert instance.exec(["true"]).ok
        instance_id, container_id = instance.instance_id, instance.container_id
        instance.quiesce()  # destroyed while paused: must still go
    assert not Path(f"/proc/{init}").exists() or "Z" in Path(f"/proc/{init}/stat").read_text().split()[2]
    assert traces(docker_platform, instance_id, container_id) == []
    instance.destroy()  # idempotent


def test_file_transfer_refuses_symlink_games(docker_platform, tmp_path):
    marker = f"isl-escape-{os.getpid()}"
    (tmp_path / "in").write_text("inside")
    with docker_platform.create(InstanceSpec()) as instance:
        instance.exec(["sh", "-c", f"ln -s / /tmp/up; ln -s /tmp/{marker} /tmp/victim; mkfifo /tmp/fifo; "
                                   f"ln -s ../../../../../../../../tmp /tmp/dots"])
        instance.put_file(tmp_path / "in", f"/tmp/up/../../../tmp/{marker}-a")  # resolved inside the root
        instance.put_file(tmp_path / "in", f"/tmp/dots/{marker}-b")
        instance.put_file(tmp_path / "in", "/tmp/victim")  # replaces the link, never writes through it
        listing = instance.exec(["sh", "-c", "ls /tmp; test -L /tmp/victim || echo replaced"]).stdout
        assert f"{marker}-a" in listing and f"{marker}-b" in listing and "replaced" in listing
        assert not any(Path("/tmp").glob(f"{marker}*"))  # nothing landed on the host
        with pytest.raises(TransferError, match="it is a FIFO inside the instance"):
            instance.get_file("/tmp/fifo", tmp_path / "fifo")
        with pytest.raises(TransferError, match="it is a directory"):
            instance.get_file("/etc", tmp_path / "etc")
        with pytest.raises(TransferError, match=r"No such container:path|no such file|not find"):
            instance.get_file("/nonexistent", tmp_path / "none")
        assert not (tmp_path / "fifo").exists() and not (tmp_path / "etc").exists()


def test_limits_are_applied_and_read_back(docker_platform):
    spec = InstanceSpec(cpus=0.5, cpuset="0", cpu_shares=512, memory=96 * 2**20, pids_max=48,
                        io_write_bps=2**20, volume=True)
    with docker_platform.create(spec) as instance:
        host = instance.client.api.inspect_container(instance.container_id)["HostConfig"]
        assert host["NanoCpus"] == 500_000_000 and host["CpusetCpus"] == "0" and host["CpuShares"] == 512
        assert host["Memory"] == 96 * 2**20 and host["MemorySwap"] == 96 * 2**20 and host["PidsLimit"] == 48
        assert [d["Rate"] for d in host["BlkioDeviceWriteBps"]] == [2**20]
        assert host["NetworkMode"] == "none" and host["SecurityOpt"] is None  # Docker's default seccomp

        def read(controller: str, file: str) -> str:
            return (CGROUP / controller / daemon.CGROUP / instance.container_id / file).read_text().strip()

        assert read("cpu", "cpu.cfs_quota_us") == "50000" and read("cpu", "cpu.cfs_period_us") == "100000"
        assert read("cpu", "cpu.shares") == "512"
        assert read("cpuset", "cpuset.cpus") == "0"
        assert read("memory", "memory.limit_in_bytes") == str(96 * 2**20)
        assert read("memory", "memory.memsw.limit_in_bytes") == str(96 * 2**20)
        assert read("pids", "pids.max") == "48"
        assert read("blkio", "blkio.throttle.write_bps_device").endswith(f" {2**20}")
        assert instance.ignored_limits() == {}
        status = dict(line.split(":", 1) for line in instance.exec(["cat", "/proc/self/status"]).stdout.splitlines())
        assert status["Seccomp"].strip() == "2" and int(status["CapBnd"], 16) == DEFAULT_CAP_MASK
        # the volume: a host directory of the instance at /mnt
        assert instance.exec(["sh", "-c", "echo v > /mnt/v"]).ok
        assert (SCRATCH_ROOT / instance.instance_id / "volume" / "v").read_text() == "v\n"


def test_a_spec_docker_cannot_honour_is_refused_before_anything_is_made(docker_platform):
    before_dirs = {p.name for p in state.instances(STATE_ROOT, "docker")}
    before = our_containers(docker_platform)
    for spec, message in [(InstanceSpec(cpus=64), r"docker: cpus 64 is outside what Docker accepts"),
                          (InstanceSpec(cpuset="0-63"), r"docker: cpuset '0-63' names CPU\(s\)"),
                          (InstanceSpec(memory=2**20), r"docker: memory 1048576 bytes is below")]:
        with pytest.raises(SpecError, match=message):
            docker_platform.create(spec)
    assert our_containers(docker_platform) == before
    new = {p.name for p in state.instances(STATE_ROOT, "docker")} - before_dirs
    assert {n for n in new if not state.is_live(STATE_ROOT / n)} == set()


def test_no_leftovers_after_a_failed_start(docker_platform, monkeypatch):
    """A start that fails after Docker made and started the container (here: wiring its network)."""
    from runtime.container.netsetup import ContainerNetwork

    made: dict[str, str] = {}

    def fail_attach(self, pid):
        made["pid"] = str(pid)
        made["cgroup"] = Path(f"/proc/{pid}/cgroup").read_text()
        raise InstanceError("injected: network wiring failed")

    monkeypatch.setattr(ContainerNetwork, "attach", fail_attach)
    before_dirs = {p.name for p in state.instances(STATE_ROOT, "docker")}
    with pytest.raises(InstanceError, match="injected: network wiring failed"):
        docker_platform.create(InstanceSpec(network="bridge"))
    assert made, "the container never started: the test did not test a failed start"
    container_id = made["cgroup"].split(f"/{daemon.CGROUP}/", 1)[1].split()[0]
    new = {p.name for p in state.instances(STATE_ROOT, "docker")} - before_dirs
    instance_id = next(iter(new), "docker-none")
    assert traces(docker_platform, instance_id, container_id) == []
    assert not any(p.name == f"isl{instance_id[-8:]}" for p in Path("/sys/class/net").iterdir())
    client = docker_platform.client()
    assert {n.name for n in client.networks.list()} <= {"none", "host"}  # Docker made no network
    images = client.images.list(all=True, filters={"label": docker_image.LABEL_IMAGE})
    ours = [t for i in images for t in i.tags or [i.id]]
    assert docker_image.tag_for(docker_platform.image) in ours
    cached = docker_image.cached_digests()
    assert [t for t in ours if not t.startswith("isolab/rootfs:") or t.split(":")[1] not in cached] == []


def test_cleanup_removes_a_crashed_runs_containers(docker_platform):
    client = docker_platform.client()
    tag = docker_image.tag_for(docker_platform.image)
    dead = client.containers.create(tag, ["sleep", "infinity"], name="isolab-docker-deadbeef", network_mode="none",
                                    labels={"org.isolab.instance": "docker-deadbeef"})
    dead.start()
    there = "isolab-docker-deadbeef" in our_containers(docker_platform)  # (another session's cleanup may be first)
    removed = docker_platform.cleanup_leftovers()
    assert not there or "docker container isolab-docker-deadbeef" in removed
    assert "isolab-docker-deadbeef" not in our_containers(docker_platform)
    assert daemon.answers()  # this process still uses the daemon: cleanup left it running


KILLED_RUN = """
import sys, time
from runtime.image.store import ImageStore
from runtime.platform import load_platform
from runtime.spec import InstanceSpec
platform = load_platform("docker", image=ImageStore().require(sys.argv[1]))
instance = platform.create(InstanceSpec(volume=True))
instance.quiesce()  # killed while paused, as an interleaved run may be
print(instance.instance_id, instance.container_id, flush=True)
time.sleep(600)
"""


def test_a_killed_runs_instance_is_swept(docker_platform):
    """kill -9 of a run that holds a paused container: the sweep and cleanup_leftovers remove all of it."""
    from runtime.sweep import sweep

    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, docker_platform.image.digest], text=True,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        line = proc.stdout.readline().split()
        assert len(line) == 2, "the run did not start its instance"
    finally:
        proc.kill()
        proc.wait()
    instance_id, container_id = line
    assert (STATE_ROOT / instance_id).is_dir() and f"isolab-{instance_id}" in our_containers(docker_platform)
    sweep(vms=False)
    there = f"isolab-{instance_id}" in our_containers(docker_platform)  # (another session's cleanup may be first)
    removed = docker_platform.cleanup_leftovers()
    assert not there or f"docker container isolab-{instance_id}" in removed
    assert traces(docker_platform, instance_id, container_id) == []
    assert daemon.answers()  # this process still uses it


def test_bridge_network_and_the_host_firewall_untouched(docker_platform, before_docker):
    """Last in this module: a bridge instance, then this process stops using dockerd; the host's firewall,
    routes, links and forwarding are as they were before (dockerd included, when this module started it)."""
    with docker_platform.create(InstanceSpec(network="bridge", bandwidth=50 * 10**6)) as instance:
        assert instance.address and instance.ignored_limits() == {}
        inside = instance.exec(["ip", "-o", "-4", "addr", "show", "eth0"]).stdout
        assert f" {instance.address}/" in inside
    if "nat" in docker_platform.network_modes:  # published through the suite's own DNAT table
        with docker_platform.create(InstanceSpec(network="nat")) as instance:
            assert instance.published_address and instance.address
            assert instance.exec(["ls", "/sys/class/net"]).stdout.split() == ["eth0", "lo"]
    with docker_platform.create(InstanceSpec(network="host")) as instance:
        assert set(instance.exec(["ls", "/sys/class/net"]).stdout.split()) == set(os.listdir("/sys/class/net"))
    baseline, started_here = before_docker
    daemon.release_user()  # stops dockerd unless another process uses it (or another cleanup stops it first)
    deadline = time.monotonic() + 30
    while daemon.running_pid() is None and daemon._anything_there() and time.monotonic() < deadline:
        time.sleep(0.2)  # (a stop by another process is under way)
    if started_here and daemon.running_pid() is None:
        assert not daemon.EXEC_ROOT.exists()
        assert not any(daemon.EXEC_ROOT.as_posix() in line or f"{daemon.DATA_ROOT}" in line.split()[4]
                       for line in open("/proc/self/mountinfo"))
        assert not list(CGROUP.glob(f"*/{daemon.CGROUP}"))
    assert host_network_state() == baseline
    docker_platform._client = None  # (the daemon may be gone: a later user starts it again)
