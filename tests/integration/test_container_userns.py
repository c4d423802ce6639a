"""Real (root) checks of the container's user namespace (InstanceSpec(userns=True), issue 10 section 4):
root inside is an unprivileged host uid, files it makes belong to that uid on the host, the image (idmapped
layers) appears root-owned inside and stays untouched on the host, and nothing is left behind.

Other container tests run with userns too (parametrised "userns"): test_container_isolation.py (every test),
test_container_lockdown.py (the `box` tests, the limit-lifting attack, Docker's blocked syscalls),
test_device_policy.py (every container test), test_container_limits.py (memory OOM, fork bomb),
test_file_transfer.py and test_volumes.py (the container volume).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.container.container import Container
from runtime.container.layers import LayerStore
from runtime.container.platform import ContainerUsernsPlatform
from runtime.container.userns import SUITE_MAPPING
from runtime.naming import SCRATCH_ROOT, STATE_ROOT
from runtime.spec import InstanceSpec

ROOT = Path(__file__).resolve().parents[2]
HOST_ROOT = SUITE_MAPPING.first


def _status_ids(pid: int) -> tuple[list[int], list[int]]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    uid = next(line for line in lines if line.startswith("Uid:")).split()[1:]
    gid = next(line for line in lines if line.startswith("Gid:")).split()[1:]
    return [int(x) for x in uid], [int(x) for x in gid]


@pytest.fixture
def box(image, require_root):
    with Container(InstanceSpec(userns=True, hostname="islusr"), [image.rootfs]) as container:
        container.start()
        yield container


def test_root_inside_is_the_mapped_uid_on_the_host(box):
    assert _status_ids(box.pid) == ([HOST_ROOT] * 4, [HOST_ROOT] * 4)  # pid 1, seen from the host
    assert box.exec(["id", "-u"]).stdout.strip() == "0"
    assert box.exec(["cat", "/proc/self/uid_map"]).stdout.split() == ["0", str(HOST_ROOT), "65536"]
    # an exec'd process (Popen's pid is its host pid), once it runs the command
    proc = box.popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{proc.pid}/comm").read_text().strip() != "sleep" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _status_ids(proc.pid) == ([HOST_ROOT] * 4, [HOST_ROOT] * 4)
        assert Path(f"/proc/{proc.pid}/uid_map").read_text().split() == ["0", str(HOST_ROOT), "65536"]
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_files_made_inside_belong_to_the_mapped_uid_on_the_host(box):
    script = ("echo data > /root/made && mkdir /srv/dir && chown 1000:1000 /srv/dir && "
              "cp /bin/true /tmp/suid && chmod 4755 /tmp/suid && echo x >> /etc/hostname")
    result = box.exec(["sh", "-c", script])
    assert result.ok, result.stderr
    made = (box.upper / "root" / "made").stat()
    assert (made.st_uid, made.st_gid) == (HOST_ROOT, HOST_ROOT)
    directory = (box.upper / "srv" / "dir").stat()
    assert (directory.st_uid, directory.st_gid) == (HOST_ROOT + 1000, HOST_ROOT + 1000)
    suid = (box.upper / "tmp" / "suid").stat()  # a setuid-"root" file is setuid to an unprivileged uid
    assert suid.st_uid == HOST_ROOT and suid.st_mode & 0o4000
    copied_up = (box.upper / "etc" / "hostname").stat()  # copy-up of an image file keeps the mapped owner
    assert copied_up.st_uid == HOST_ROOT
    top = box.upper.stat()  # the container's / is the mapped root's
    assert top.st_uid == HOST_ROOT


def test_image_files_appear_root_owned_inside_and_stay_untouched(box, image):
    listing = box.exec(["stat", "-c", "%u:%g %n", "/", "/etc/passwd", "/usr/bin/perl", "/root"]).stdout
    assert [line.split()[0] for line in listing.splitlines()] == ["0:0"] * 4, listing
    assert "nobody" not in box.exec(["ls", "-l", "/etc"]).stdout
    host = (image.rootfs / "etc" / "passwd").stat()
    assert (host.st_uid, host.st_gid) == (0, 0)  # idmapped, not chowned
    # root inside may not write what an unmapped host user owns (it only appears as nobody)
    assert box.exec(["sh", "-c", "stat -c %u /dev/null"]).stdout.strip() == "65534"


def test_mapping_recorded_in_state_and_metadata(image, require_root):
    platform = ContainerUsernsPlatform(image)
    info = platform.describe()
    assert info.name == "container-userns" and "user namespace" in info.mechanism
    with platform.create(InstanceSpec()) as instance:  # forced on whatever the spec says
        assert instance.spec.userns and instance.platform == "container-userns"
        assert instance.metadata()["userns"] == "uid/gid 0-65535 -> 100000-165535"
        record = (STATE_ROOT / instance.instance_id / "state.json").read_text()
        assert '"userns": "uid/gid 0-65535 -> 100000-165535"' in record
        assert (STATE_ROOT / instance.instance_id).stat().st_mode & 0o777 == 0o700  # still root-only
        assert (SCRATCH_ROOT / instance.instance_id).stat().st_mode & 0o777 == 0o700
        instance_id = instance.instance_id
    assert not (STATE_ROOT / instance_id).exists() and not (SCRATCH_ROOT / instance_id).exists()
    assert instance_id not in Path("/proc/self/mounts").read_text()


def test_committed_layer_with_a_deletion_works_under_idmapped_layers(image, require_root, tmp_path):
    store = LayerStore(image.rootfs, root=tmp_path / "layers")
    with Container(InstanceSpec(), [image.rootfs]) as first:
        first.start()
        assert first.exec(["sh", "-c", "rm -r /etc/apt && mkdir /opt/layer && echo v1 > /opt/layer/f"]).ok
        first.stop()
        store.commit(first.upper, "base", "isl-userns-test")
    with Container(InstanceSpec(userns=True), store.resolve("isl-userns-test")) as second:
        second.start()
        out = second.exec(["sh", "-c", "test -e /etc/apt && echo present; stat -c %u /opt/layer/f; "
                                       "cat /opt/layer/f"]).stdout.split()
        assert out == ["0", "v1"], out  # the whiteout holds; the committed file is root's inside


def test_cli_run_userns(image, require_root):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "runtime", "run", "--rm", "--userns", "--",
                           "sh", "-c", "cat /proc/self/uid_map; id -u; exit 3"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.split() == ["0", str(HOST_ROOT), "65536", "0"]


def test_commit_of_a_userns_container_gives_image_ids(image, require_root, tmp_path):
    from runtime.container import userns

    store = LayerStore(image.rootfs, root=tmp_path / "layers")
    with Container(InstanceSpec(userns=True), [image.rootfs]) as box:
        box.start()
        script = ("mkdir /opt/app && echo x > /opt/app/f && chown 1000:1000 /opt/app/f && "
                  "cp /bin/true /opt/app/suid && chmod 4755 /opt/app/suid && rm /etc/issue")
        assert box.exec(["sh", "-c", script]).ok
        box.stop()
        layer = store.commit(box.upper, "base", "isl-userns-commit",
                             fix_ids=lambda top: userns.unshift_tree(top, SUITE_MAPPING))
    owners = {p.name: (p.lstat().st_uid, p.lstat().st_gid) for p in (layer.path / "opt" / "app").iterdir()}
    assert owners == {"f": (1000, 1000), "suid": (0, 0)}
    assert (layer.path / "opt" / "app" / "suid").stat().st_mode & 0o4000  # the mode survives the chown
    assert (layer.path / "opt").stat().st_uid == 0
    with Container(InstanceSpec(), store.resolve("isl-userns-commit")) as plain:  # an ordinary layer now
        plain.start()
        out = plain.exec(["sh", "-c", "stat -c %u /opt/app/f /opt/app/suid; test -e /etc/issue || echo gone"])
        assert out.stdout.split() == ["1000", "0", "gone"]


def test_cli_exec_and_commit_of_a_userns_container(image, require_root, tmp_path):
    """Another runtime process (the CLI) joins the user namespace to exec, and commits with image ids."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runtime", *args], capture_output=True, text=True,
                              env=env, timeout=120)

    cidfile = tmp_path / "cid"
    runner = subprocess.Popen([sys.executable, "-m", "runtime", "run", "--userns", "--cidfile", str(cidfile), "--",
                               "sh", "-c", "echo hi > /root/note; sleep 60"], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    name = f"isl-userns-cli-{os.getpid()}"
    cid = ""
    try:
        for _ in range(200):
            if cidfile.exists() and (cid := cidfile.read_text().strip()) and cid in cli("ps", "-q").stdout:
                break
            time.sleep(0.05)
        probe = cli("exec", cid, "--", "sh", "-c", "cat /proc/self/uid_map; id -u; test -f /root/note && exit 4")
        assert probe.returncode == 4, probe.stderr
        assert probe.stdout.split() == ["0", str(HOST_ROOT), "65536", "0"]
        assert cli("kill", "-s", "TERM", cid).returncode == 0
        runner.wait(timeout=20)
        committed = cli("commit", cid, name)
        assert committed.returncode == 0, committed.stderr
        with Container(InstanceSpec(), LayerStore(image.rootfs).resolve(name)) as plain:
            plain.start()
            assert plain.exec(["stat", "-c", "%u", "/root/note"]).stdout.strip() == "0"
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        if cid:
            cli("rm", cid)
        cli("rmi", name)


def test_chowned_copy_fallback(image, require_root, tmp_path, monkeypatch):
    """Where a layer cannot be idmapped the helper uses a chowned copy beside it (forced here for one small
    layer: this kernel has idmapped mounts); the image below stays idmapped."""
    from runtime.container import userns

    layer = tmp_path / "layer"
    (layer / "opt" / "tool").mkdir(parents=True)
    (layer / "opt" / "tool" / "conf").write_text("v1\n")
    os.chown(layer / "opt" / "tool" / "conf", 1000, 1000)
    (layer / "opt" / "tool" / "suid").write_text("#!/bin/sh\n")
    os.chmod(layer / "opt" / "tool" / "suid", 0o4755)
    monkeypatch.setenv(userns.FORCE_COPY_ENV, str(layer))
    platform = ContainerUsernsPlatform(image, layers=[layer])
    with platform.create(InstanceSpec()) as instance:
        assert instance.metadata()["userns_layers"] == "chowned copies + idmapped mounts"
        out = instance.exec(["stat", "-c", "%u:%g %a %n", "/opt/tool", "/opt/tool/conf", "/opt/tool/suid",
                             "/etc/passwd"]).stdout.splitlines()
        assert [line.split()[0] for line in out] == ["0:0", "1000:1000", "0:0", "0:0"], out
        assert out[2].split()[1] == "4755"  # the mode survives the chown
    copy = userns.copy_path(layer)
    assert copy.is_dir() and (copy / "opt" / "tool" / "conf").stat().st_uid == HOST_ROOT + 1000
    assert copy.parent.stat().st_mode & 0o777 == 0o700  # setuid files of the copy: root-only
    assert (layer / "opt" / "tool" / "conf").stat().st_uid == 1000  # the layer itself is untouched
    assert userns.chowned_copy(layer) == copy  # cached: the next start reuses it


@pytest.mark.parametrize("network", ["host", "bridge"])
def test_exec_in_a_userns_container_on_each_network(image, require_root, network):
    """A host-network container shares the host's netns, which belongs to the initial user namespace: exec
    must not try to join it after entering the container's user namespace (EPERM: every exec failed with
    'Exception occurred in preexec_fn', found by the network scenario on container-userns)."""
    from runtime.container.platform import ContainerUsernsPlatform

    with ContainerUsernsPlatform(image=image).create(InstanceSpec(network=network)) as instance:
        result = instance.exec(["sh", "-c", "id -u; cat /proc/self/uid_map"])
        assert result.ok, result
        uid, mapping = result.stdout.split("\n", 1)
        assert uid.strip() == "0" and not mapping.split()[:2] == ["0", "0"]  # root inside, not host root
