"""Boot benchmark: libvirt VM vs raw qemu-system-x86_64, same kernel, initramfs, disk and markers.

    python -m runtime.vm.bootbench --runs 20 [--accel auto|kvm|tcg] [--json out.json]

Each run boots a fresh qcow2 overlay of the shared ext4 image. Both sides are timed from the moment
the driver starts working (libvirt: before defineXML; raw: before exec of qemu) to ISOLAB-INIT on the
serial console (boot-to-init) and to the first guest-ping answer (boot-to-agent-ready). Runs are
interleaved (libvirt, raw, libvirt, ...) so that drift on a shared host hits both alike. The
difference is libvirt's own overhead: XML, cgroups, QMP setup, virtlogd, agent plumbing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runtime.errors import IsolabError
from runtime.image.build import ensure_image
from runtime.image.store import Image
from runtime.spec import InstanceSpec
from runtime.vm.accel import AccelChoice
from runtime.vm.bootwatch import MARKER_INIT, MARKER_KERNEL, BootFailed, SerialWatch
from runtime.vm.domain_xml import BASE_CMDLINE

BENCH_SPEC = InstanceSpec(cpus=1, memory=512 * 1024**2, hostname="islboot")


def raw_qemu_boot(image: Image, accel: AccelChoice, workdir: Path, machine: str = "q35",
                  timeout: float = 90.0) -> dict[str, float]:
    """Boot once with qemu-system-x86_64 directly; seconds from exec to each marker and to agent ready."""
    overlay = workdir / "overlay.qcow2"
    serial = workdir / "serial.log"
    agent_sock = workdir / "qga.sock"
    for path in (overlay, serial, agent_sock):
        path.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.ext4), str(overlay)],
                   check=True, timeout=60)
    memory_mib = (BENCH_SPEC.memory or 0) // 1024**2
    cpu = ["-cpu", "host"] if accel.accel == "kvm" else ["-cpu", "max"]
    argv = ["qemu-system-x86_64", "-machine", f"{machine},accel={accel.accel}", *cpu, "-m", str(memory_mib),
            "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(image.vmlinux), "-initrd", str(image.initramfs),
            "-append", f"{BASE_CMDLINE} isolab.hostname={BENCH_SPEC.hostname}",
            "-drive", f"file={overlay},if=none,id=vda,format=qcow2,cache=none,aio=native,discard=unmap",
            "-device", "virtio-blk-pci,drive=vda",
            "-serial", f"file:{serial}",
            "-chardev", f"socket,id=qga,path={agent_sock},server=on,wait=off",
            "-device", "virtio-serial-pci", "-device", "virtserialport,chardev=qga,name=org.qemu.guest_agent.0"]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        watch = SerialWatch(serial)

        def alive() -> str | None:
            return None if proc.poll() is None else f"qemu exited {proc.returncode}"

        kernel = watch.wait_for(MARKER_KERNEL, deadline, alive, "raw qemu")
        init = watch.wait_for(MARKER_INIT, deadline, alive, "raw qemu")
        agent = _raw_agent_ready(agent_sock, deadline)
        return {"kernel": kernel - started, "init": init - started, "agent": agent - started}
    finally:
        proc.kill()
        proc.wait(timeout=30)


def _raw_agent_ready(path: Path, deadline: float) -> float:
    while not path.exists():
        if time.monotonic() > deadline:
            raise BootFailed(f"raw qemu: agent socket {path} never appeared")
        time.sleep(0.005)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        sock.settimeout(0.02)
        while time.monotonic() < deadline:
            sock.sendall(b'{"execute":"guest-ping"}\n')
            try:
                if b'"return"' in sock.recv(4096):
                    return time.perf_counter()
            except TimeoutError:
                pass
    raise BootFailed("raw qemu: guest agent did not answer before the timeout")


def libvirt_boot(vm_platform: object) -> dict[str, float]:
    """Boot once through VmPlatform; seconds from defineXML to each marker and to agent ready."""
    instance = vm_platform.create(BENCH_SPEC)  # type: ignore[attr-defined]
    try:
        phases = instance.start_phases.phases
        kernel = phases["define"] + phases["qemu_up"] + phases["kernel"]
        return {"qemu_up": phases["define"] + phases["qemu_up"], "kernel": kernel,
                "init": kernel + phases["init"], "agent": instance.start_phases.total}
    finally:
        instance.destroy()


def summarize(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = statistics.quantiles(ordered, n=100, method="inclusive")[98] if len(ordered) > 1 else ordered[0]
    return {"n": len(ordered), "median": statistics.median(ordered), "p99": p99, "min": ordered[0],
            "max": ordered[-1], "mean": statistics.fmean(ordered)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    parser.add_argument("--json", type=Path, help="write raw timings and summaries here")
    parser.add_argument("--machine", default="q35", help="QEMU machine type for both sides (default q35)")
    args = parser.parse_args(argv)
    from runtime.vm.platform import VmPlatform

    image = ensure_image()
    vm_platform = VmPlatform(image, accel=args.accel, machine=args.machine)
    vm_platform.check_available()
    vm_platform.cleanup_leftovers()
    env = vm_platform.environment()
    print(f"ACCELERATOR: {env['accelerator'].upper()} ({env['accelerator_reason']})")
    print(f"qemu {env.get('qemu_version')}, libvirt {env.get('libvirt_version')}, guest kernel "
          f"{image.kernel_version}, host {platform.node()} {os.cpu_count()} CPUs; spec: 1 vcpu, 512 MiB, "
          f"machine {args.machine}")
    samples: dict[str, dict[str, list[float]]] = {"libvirt": {}, "raw": {}}
    failures: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="isolab-bootbench-", dir="/var/tmp"))
    try:
        for run in range(args.runs):
            for side in ("libvirt", "raw"):
                try:
                    result = libvirt_boot(vm_platform) if side == "libvirt" else \
                        raw_qemu_boot(image, vm_platform.accel, workdir, args.machine)
                except IsolabError as exc:
                    failures.append(f"run {run + 1} {side}: {exc}")
                    print(f"run {run + 1} {side} FAILED: {exc}", file=sys.stderr)
                    continue
                for key, value in result.items():
                    samples[side].setdefault(key, []).append(value)
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {side: {k: summarize(v) for k, v in data.items()} for side, data in samples.items()}
    print(f"\n{'metric':<22}{'libvirt median':>15}{'p99':>8}{'raw median':>12}{'p99':>8}{'overhead':>10}")
    for metric, label in (("kernel", "boot-to-kernel-done"), ("init", "boot-to-init"),
                          ("agent", "boot-to-agent-ready")):
        lv, raw = summary["libvirt"][metric], summary["raw"][metric]
        overhead = (lv["median"] / raw["median"] - 1) * 100
        print(f"{label:<22}{lv['median']:>13.3f} s{lv['p99']:>7.3f}{raw['median']:>10.3f} s{raw['p99']:>7.3f}"
              f"{overhead:>9.1f}%")
    n_lv, n_raw = summary["libvirt"]["agent"]["n"], summary["raw"]["agent"]["n"]
    print(f"(n = {n_lv} libvirt, {n_raw} raw; libvirt define+qemu_up median "
          f"{summary['libvirt']['qemu_up']['median']:.3f} s; failed boots: {len(failures)})")
    for failure in failures:
        print(f"  failed: {failure}")
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "runs": args.runs, "samples": samples,
                                         "summary": summary, "failures": failures,
                                         "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
