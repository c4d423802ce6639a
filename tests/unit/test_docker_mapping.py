"""The docker platform's pure parts: InstanceSpec -> Docker's create arguments, the exec stream's frames,
and the archive checks of file transfer (no dockerd needed)."""

from __future__ import annotations

import io
import socket
import struct
import tarfile
import time

import pytest

from runtime.docker import archive, daemon, hostconfig, streams
from runtime.errors import InstanceError, SpecError
from runtime.linux.transfer import TransferError
from runtime.spec import InstanceSpec

CPUS = [0, 1]


def args_for(spec: InstanceSpec, **kw):
    options = {"host_cpus": CPUS, "io_device": "/dev/vda", "swap_accounting": True, **kw}
    return hostconfig.create_args(spec, **options)


def test_limits_map_onto_dockers_options():
    spec = InstanceSpec(cpus=0.5, cpuset="0-1", cpu_shares=512, memory=96 * 2**20, pids_max=48,
                        io_read_bps=2**20, io_write_iops=100, hostname="h", env={"A": "1"})
    args, ignored = args_for(spec)
    assert ignored == {}
    assert args["nano_cpus"] == 500_000_000 and args["cpuset_cpus"] == "0,1" and args["cpu_shares"] == 512
    assert args["mem_limit"] == 96 * 2**20 and args["memswap_limit"] == 96 * 2**20  # no swap, as our spec means
    assert args["pids_limit"] == 48
    assert args["device_read_bps"] == [{"Path": "/dev/vda", "Rate": 2**20}]
    assert args["device_write_iops"] == [{"Path": "/dev/vda", "Rate": 100}]
    assert args["hostname"] == "h" and args["environment"] == {"A": "1"} and args["network_mode"] == "none"
    assert "security_opt" not in args  # Docker's default seccomp profile stays


def test_what_cannot_be_applied_here_is_listed_as_ignored():
    spec = InstanceSpec(memory=64 * 2**20, memory_swap=128 * 2**20, io_write_bps=2**20, bandwidth=10**8,
                        disk_quota=2**30)
    args, ignored = args_for(spec, io_device=None, swap_accounting=False)
    assert ignored == {"memory_swap": 128 * 2**20, "io_write_bps": 2**20, "bandwidth": 10**8, "disk_quota": 2**30}
    assert "memswap_limit" not in args and "device_write_bps" not in args


def test_network_modes_and_seccomp_and_volume(tmp_path):
    assert args_for(InstanceSpec(network="host"))[0]["network_mode"] == "host"
    # bridge and nat: Docker makes no network; ours wires a veth afterwards (and applies the bandwidth)
    args, ignored = args_for(InstanceSpec(network="bridge", bandwidth=10**8))
    assert args["network_mode"] == "none" and ignored == {}
    assert args_for(InstanceSpec(seccomp="unconfined"))[0]["security_opt"] == ["seccomp=unconfined"]
    mounts = args_for(InstanceSpec(volume=True), volume=tmp_path)[0]["mounts"]
    assert mounts == [{"Type": "bind", "Source": str(tmp_path), "Target": "/mnt", "ReadOnly": False}]


@pytest.mark.parametrize(("spec", "message"), [
    (InstanceSpec(cpus=4), r"cpus 4 is outside what Docker accepts on this host \(0.01 to 2"),
    (InstanceSpec(cpus=0.001), r"cpus 0.001 is outside"),
    (InstanceSpec(cpuset="1-3"), r"cpuset '1-3' names CPU\(s\) 2,3 this host does not have"),
    (InstanceSpec(memory=2**20), r"memory 1048576 bytes is below Docker's minimum of 6 MiB"),
    (InstanceSpec(memory_swap=2**30), r"memory_swap needs memory"),
    (InstanceSpec(memory=2**30, memory_swap=2**29), r"memory_swap .* is below memory"),
    (InstanceSpec(cpu_shares=1), r"cpu_shares 1 is below Docker's minimum of 2"),
])
def test_a_spec_docker_refuses_is_one_clear_spec_error(spec, message):
    with pytest.raises(SpecError, match=rf"^docker: {message}"):
        args_for(spec)


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", kind, len(payload)) + payload


def test_demux_sorts_frames_split_anywhere():
    data = frame(1, b"out1 ") + frame(2, b"err") + frame(1, b"out2") + frame(1, b"")
    for cut in range(1, len(data)):
        demux = streams.Demux()
        demux.feed(data[:cut])
        demux.feed(data[cut:])
        demux.finish()
        assert (bytes(demux.out), bytes(demux.err)) == (b"out1 out2", b"err")


def test_demux_refuses_a_cut_or_foreign_stream():
    demux = streams.Demux()
    demux.feed(frame(1, b"abcdef")[:-2])
    with pytest.raises(InstanceError, match="ended inside a frame"):
        demux.finish()
    with pytest.raises(InstanceError, match="unexpected stream id 72"):
        streams.Demux().feed(b"HTTP/1.1 200 OK\r\n")


def test_read_until_stops_at_the_deadline_and_at_the_end():
    left, right = socket.socketpair()
    with left, right:
        left.sendall(frame(1, b"partial"))
        demux = streams.Demux()
        began = time.monotonic()
        assert streams.read_until(right, time.monotonic() + 0.3, demux) is False
        assert 0.25 < time.monotonic() - began < 2 and bytes(demux.out) == b"partial"
        left.sendall(frame(2, b"bye"))
        left.shutdown(socket.SHUT_WR)
        assert streams.read_until(right, time.monotonic() + 5, demux) is True
        assert bytes(demux.err) == b"bye"


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None]) -> list[bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    return [raw[i:i + 1000] for i in range(0, len(raw), 1000)]


def test_extract_accepts_exactly_one_regular_file(tmp_path):
    out = tmp_path / "out"
    archive.extract_single_file(tar_of((tarfile.TarInfo("f"), b"data")), "f", out, "t")
    assert out.read_bytes() == b"data"
    link = tarfile.TarInfo("f")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    fifo = tarfile.TarInfo("f")
    fifo.type = tarfile.FIFOTYPE
    for chunks, message in [
        (tar_of((link, None)), "it is a link inside the instance"),
        (tar_of((fifo, None)), "it is a FIFO"),
        (tar_of((tarfile.TarInfo("f"), b"a"), (tarfile.TarInfo("g"), b"b")), "holds 2 entries"),
        (tar_of((tarfile.TarInfo("../f"), b"a")), "entry is '../f', not 'f'"),
        ([b"not a tar" * 100], "unreadable archive"),
    ]:
        with pytest.raises(TransferError, match=message):
            archive.extract_single_file(chunks, "f", tmp_path / "refused", "t")
        assert not (tmp_path / "refused").exists()


def test_file_archive_holds_one_member_named_as_asked(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"x" * 5000)
    src.chmod(0o750)
    with archive.file_archive(src, "name") as data, tarfile.open(fileobj=data) as tar:
        (member,) = tar.getmembers()
        assert member.name == "name" and member.isreg() and member.size == 5000 and member.mode == 0o750
    with pytest.raises(TransferError, match="not a regular file on the host"):
        archive.file_archive(tmp_path, "dir")


def test_paths_and_go_modes():
    assert archive.split("tmp/../etc/x", "t") == ("/etc", "x")
    for bad in ("", "/", "/tmp/.."):
        with pytest.raises(TransferError, match="does not name a file"):
            archive.split(bad, "t")
    assert archive.go_mode_kind(0o644) is None
    assert archive.go_mode_kind((1 << 27) | 0o777) == "a symbolic link"
    assert archive.go_mode_kind((1 << 31) | 0o755) == "a directory"


def test_dockerd_is_told_to_leave_the_host_network_alone():
    argv = daemon.argv("/usr/sbin/dockerd")
    for flag in ("--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
                 "--bridge=none", "--userland-proxy=false", "--exec-opt=native.cgroupdriver=cgroupfs",
                 f"--cgroup-parent=/{daemon.CGROUP}", f"--exec-root={daemon.EXEC_ROOT}",
                 f"--config-file={daemon.CONFIG}"):
        assert flag in argv
    assert daemon.CGROUP.startswith("isolab/") and str(daemon.EXEC_ROOT).startswith("/run/isolab")
    assert "/etc/docker" not in daemon.config()["deprecated-key-path"]


class FakeImage:
    def __init__(self, image_id: str, tags: list[str]) -> None:
        self.id, self.tags = image_id, tags


class FakeImages:
    def __init__(self, images: list[FakeImage]) -> None:
        self.images, self.removed = images, []

    def list(self, **_filters):
        return self.images

    def remove(self, ref, noprune=False):
        self.removed.append(ref)


class FakeClient:
    def __init__(self, images: list[FakeImage]) -> None:
        self.images = FakeImages(images)


def test_only_images_of_hashes_gone_from_the_cache_are_removed():
    from runtime.docker import image

    client = FakeClient([FakeImage("sha256:a", ["isolab/rootfs:aaaa"]), FakeImage("sha256:b", ["isolab/rootfs:bbbb"]),
                         FakeImage("sha256:c", []), FakeImage("sha256:d", ["isolab/rootfs:dddd", "other:x"])])
    removed = image.remove_stale(client, cached={"aaaa", "dddd"})
    assert client.images.removed == ["isolab/rootfs:bbbb", "sha256:c"]  # a gone hash, an untagged import
    assert removed == ["docker image isolab/rootfs:bbbb", "docker image sha256:c"]


def test_describe_does_not_start_the_daemon(monkeypatch):
    from runtime.platform import ROLE_REFERENCE, load_platform

    def refuse(*_a, **_k):
        raise AssertionError("describe() started dockerd")

    monkeypatch.setattr(daemon, "ensure_running", refuse)
    info = load_platform("docker", image=None).describe()
    assert info.kind == "container" and info.role == ROLE_REFERENCE and info.mechanism.startswith("dockerd ")
