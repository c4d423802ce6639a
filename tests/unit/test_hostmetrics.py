"""Host readings used by the footprint scenario, on this very process."""

import os
import subprocess

from scenarios import hostmetrics


def test_pss_of_this_process_is_positive():
    assert hostmetrics.pss_bytes([os.getpid()]) > 1 << 20
    assert hostmetrics.pss_bytes([2**22 + 12345]) == 0  # no such process: counted as gone


def test_descendants_include_children():
    child = subprocess.Popen(["sleep", "5"])
    try:
        found = hostmetrics.descendants([os.getpid()])
        assert found[0] == os.getpid() and child.pid in found
    finally:
        child.kill()
        child.wait()


def test_meminfo():
    assert hostmetrics.meminfo_bytes("MemTotal") > 0
    assert hostmetrics.meminfo_bytes("NoSuchField") == 0
