"""The visibility audit for real, on native and in our container: every probe gives the answer the
kernel guarantees (native shares everything with the host; the container shares only the kernel and,
without a user namespace, root's uid), and the host markers are gone afterwards."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime import state
from runtime.container.platform import ContainerPlatform, ContainerUsernsPlatform
from runtime.naming import STATE_ROOT
from runtime.native import NativePlatform
from scenarios import isolation_visibility as visibility
from scenarios.hostmarkers import PROBE_PREFIX, sweep_leftovers

PARAMS = visibility.PROFILES["quick"]
# Answers that depend on how the host kernel was built or on the host's own policy (a sandbox may
# refuse even root its disk; a kernel may lack /proc/kcore or module support): exposed or n/a.
HOST_DEPENDENT = {"kcore_readable", "sysrq_trigger_writable", "block_device", "module_loading"}

NATIVE_NOT_APPLICABLE = {"memory_total", "cpu_total"}  # native enforces no limits
CONTAINER_EXPOSED = {"same_kernel", "root_is_host_root", "memory_total", "cpu_total"}
USERNS_EXPOSED = CONTAINER_EXPOSED - {"root_is_host_root"}  # root inside is host uid 100000


def audit(platform, image) -> dict[str, dict]:
    raws: dict[str, str] = {}
    with platform(image).create(visibility.instance_spec(PARAMS)) as instance:
        samples = visibility.run(instance, PARAMS, lambda name, text: raws.__setitem__(name, text))
    evidence = {e["question"]: e for e in json.loads(raws["visibility.json"])}
    assert set(evidence) == set(visibility.QUESTIONS)
    for sample in samples:  # a sample for every answered question, 1 = exposed
        if sample.metric == "exposed":
            answer = evidence[sample.metadata["question"]]["answer"]
            assert sample.value == (1.0 if answer == "exposed" else 0.0)
    return evidence


def no_markers_left() -> bool:
    return not list(STATE_ROOT.glob(f"{PROBE_PREFIX}*")) and f"{PROBE_PREFIX}{os.getpid()}" not in \
        Path("/proc/sysvipc/msg").read_text()


def test_native_sees_everything_of_the_host(image, require_root):
    evidence = audit(NativePlatform, image)
    for question, e in evidence.items():
        if question in NATIVE_NOT_APPLICABLE:
            expected = {"n/a"}
        elif question in HOST_DEPENDENT:
            expected = {"exposed", "n/a"}
        else:
            expected = {"exposed"}
        assert e["answer"] in expected, f"native {question}: {e['answer']} ({e['why']}); {e['stdout']!r}"
    assert no_markers_left()


@pytest.mark.parametrize("platform", [ContainerPlatform, ContainerUsernsPlatform], ids=["plain", "userns"])
def test_container_sees_only_the_kernel(image, require_root, platform):
    evidence = audit(platform, image)
    exposed = USERNS_EXPOSED if platform.userns else CONTAINER_EXPOSED
    for question, e in evidence.items():
        if question in exposed:
            expected = {"exposed"}
        elif question in HOST_DEPENDENT:
            expected = {"isolated", "n/a"}
        else:
            expected = {"isolated"}
        assert e["answer"] in expected, f"container {question}: {e['answer']} ({e['why']}); {e['stdout']!r}"
    assert no_markers_left()


def marker_alive(pid: int, token: str) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(token.encode())
    except OSError:
        return False


def test_markers_of_a_killed_run_are_swept(require_root):
    child = subprocess.Popen(
        [sys.executable, "-c",
         "from scenarios.hostmarkers import HostMarkers; import time; m = HostMarkers().create(); "
         "print(m.token, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    token = child.stdout.readline().strip()
    assert token.startswith(PROBE_PREFIX)
    assert (STATE_ROOT / token / "mnt").is_mount()
    marker_pid = state.read(STATE_ROOT / token)["pid"]
    assert str(STATE_ROOT / token) not in sweep_leftovers()  # owner alive: spared
    assert (STATE_ROOT / token).exists()
    child.send_signal(signal.SIGKILL)
    child.wait()
    removed = sweep_leftovers()
    assert str(STATE_ROOT / token) in removed
    assert not (STATE_ROOT / token).exists()
    deadline = time.monotonic() + 10  # SIGKILL is asynchronous: wait until the marker is gone (or a zombie)
    while time.monotonic() < deadline and marker_alive(marker_pid, token):
        time.sleep(0.05)
    assert not marker_alive(marker_pid, token)
    assert token not in Path("/proc/self/mountinfo").read_text()
