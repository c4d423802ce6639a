"""The opt-in scenarios of the study profiles (hpcc, compress) for real on the native platform, shrunk, and
the felter2015 fio job shape (8 threads on one file) through the real tool: the samples carry the paper's
variant keys and pass the sanity layer; nothing is left behind."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import sanity
from runtime.errors import PlatformUnavailable
from runtime.native import NativePlatform
from scenarios import base, compress, disk, hpcc

ROOT = Path(__file__).resolve().parents[2]


def run_scenario(image, module, overrides):
    params = {**module.PROFILES["quick"], **overrides}
    raws: dict[str, str] = {}
    with NativePlatform(image).create(base.spec_for(module, params)) as instance:
        module.prepare(instance, params)
        samples = module.run(instance, params, lambda name, text: raws.__setitem__(name, text))
        module.cleanup(instance, params)
        sanity.check_repetition(module, samples)
        leftovers = sorted(p.name for p in instance.scratch.iterdir())
        if instance.volume is not None:
            leftovers += sorted(f"volume/{p.name}" for p in instance.volume.iterdir())
    return samples, raws, leftovers


def by_metric(samples):
    out: dict[str, list] = {}
    for sample in samples:
        out.setdefault(sample.metric, []).append(sample)
    return out


def test_hpcc_and_compress_shrunk(image):
    samples, raws, leftovers = run_scenario(image, hpcc, {"n": 500})
    metrics = by_metric(samples)
    assert {s.metadata["kernel"] for s in metrics["stream_bandwidth"]} == set(hpcc.STREAM_KERNELS)
    assert metrics["hpl_gflops"][0].unit == "GFLOPS" and metrics["randomaccess_gups"][0].unit == "GUP/s"
    assert "hpccoutf.txt" in raws and leftovers == []
    samples, raws, leftovers = run_scenario(image, compress, {"size_mib": 2, "block_mib": 1})
    assert [s.metadata["size_mib"] for s in samples] == [2] and samples[0].unit == "MB/s"
    assert leftovers == []


def test_fio_job_with_numjobs_and_thread(image):
    job = {"name": "randread", "rw": "randread", "bs": "4K", "iodepth": 16, "numjobs": 8}
    samples, _raws, leftovers = run_scenario(image, disk, {"storage": ["volume"], "storage_jobs": {}, "iozone": False,
                                                           "file_size": "32M", "runtime_s": 1, "thread": True,
                                                           "jobs": [job]})
    iops = by_metric(samples)["fio_iops"]
    assert [(s.metadata["numjobs"], s.metadata["iodepth"], s.metadata["bs"]) for s in iops] == [(8, 16, "4k")]
    assert leftovers == []


@pytest.mark.parametrize("order", ["interleaved", "sequential"])
def test_study_skips_its_cpu_bound_cells_on_an_emulated_vm(image, tmp_path, order):
    """felter2015 does not run hpcc or compress on an emulated VM: the cell is skipped with the reason, before
    any guest boots, in either order."""
    from runtime.vm.platform import VmPlatform

    vm = VmPlatform(image)
    try:
        vm.check_available()
    except PlatformUnavailable as exc:
        pytest.skip(f"no VM platform here: {exc}")
    if not vm.describe().emulated:
        pytest.skip("the VM runs under KVM here: the emulated skip does not apply")
    env = {**os.environ, "ISOLAB_RESULTS_DIR": str(tmp_path / "results"),
           "ISOLAB_REPORTS_DIR": str(tmp_path / "reports"), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--profile", "felter2015", "--platform", "vm",
                           "--scenario", "compress", "--order", order, "--no-report"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = next((tmp_path / "results").iterdir())
    outcomes = [json.loads(line) for line in (run_dir / "cells.jsonl").read_text().splitlines()]
    assert [(o["platform"], o["scenario"], o["status"]) for o in outcomes] == [("vm", "compress", "skipped")]
    assert outcomes[0]["reason"].startswith("not testable here (emulated): vm: TCG")
    assert not (run_dir / "samples.jsonl").exists() or not (run_dir / "samples.jsonl").read_text().strip()
