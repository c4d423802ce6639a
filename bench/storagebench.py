"""What each storage driver costs: time to make an instance's root (the first from an image, then the tenth),
the first write to a large file of the image (copy-up), disk usage per instance, and commit time.

    python -m bench.storagebench [--reps 3] [--instances 10] [--drivers overlay,btrfs,vfs]
                                              [--docs docs/benchmarks.md]

One repetition per driver: a cold start (the btrfs pool torn down, nothing imported), then `--instances`
roots made one after another (storage driver's prepare(), timed: the first and the last are reported);
then a container on the driver writes one byte into the image's largest file (timed inside the container
with `date +%s%N` around `dd conv=notrunc`, then once more on the same file: the second write is the
baseline without copy-up); its disk usage is read fresh and after that write (the driver's own figure:
st_blocks of the writable dir, or btrfs' exclusive extents); then it makes a fixed change set (the
storage test's, plus 16 MiB of new data) and `commit` is timed. Repetitions are the unit (n = --reps);
each figure is the median with the order statistic interval of its n values and its real level.
Unavailable drivers are listed with their reason. The btrfs pool is the benchmark's own
(/var/lib/isolab/storage-bench-<pid>), so other processes using the shared pool cannot keep it warm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import stats
from runtime import state
from runtime.container.container import Container
from runtime.container.layers import LayerStore
from runtime.container.storage import DRIVER_NAMES, get_driver
from runtime.container.storage.btrfs import BtrfsDriver
from runtime.image.build import ensure_image
from runtime.naming import new_instance_id, scratch_dir, state_dir
from runtime.spec import InstanceSpec

SECTION = "## Storage drivers"
BIG_FILE = "/usr/lib/x86_64-linux-gnu/libicudata.so.72.1"  # the image's largest shared library (31 MB)
CHANGES = ("echo added > /etc/isl-new && echo changed > /etc/hostname && rm /etc/issue"
           " && rm -rf /etc/default && mkdir /etc/default && echo only > /etc/default/isl"
           " && head -c 16777216 /dev/urandom > /opt/isl-blob")
WRITE = (f"s=$(date +%s%N); dd if=/dev/zero of={BIG_FILE} bs=1 count=1 conv=notrunc status=none; "
         "e=$(date +%s%N); echo $((e - s))")


def cold(driver_name: str) -> bool:
    """Nothing of the driver's cached state left: the btrfs pool is released and torn down. False when
    another process still holds the pool (its imported image then stays: the first root is not cold)."""
    driver = get_driver(driver_name)
    if isinstance(driver, BtrfsDriver):
        driver.pool.release()
        return not driver.pool.mnt.exists()
    return True


def make_roots(driver_name: str, layers: list[Path], count: int) -> list[float]:
    """Seconds of prepare() for `count` roots made one after another (all removed afterwards). Each has a
    state dir of this process (runtime.state), so a `cleanup` beside the benchmark spares them and one after
    a kill removes them."""
    driver = get_driver(driver_name)
    made, times = [], []
    try:
        for _ in range(count):
            instance_id = new_instance_id("sb")
            state.claim(state_dir(instance_id), "storage-bench")
            made.append(instance_id)
            layer_dir = scratch_dir(instance_id)
            layer_dir.mkdir(mode=0o700, parents=True)
            root = driver.layout(instance_id, layers, layer_dir)
            started = time.perf_counter()
            driver.prepare(root)
            times.append(time.perf_counter() - started)
    finally:
        for instance_id in made:
            driver.remove(driver.layout(instance_id, layers, scratch_dir(instance_id)))
            shutil.rmtree(scratch_dir(instance_id), ignore_errors=True)
            shutil.rmtree(state_dir(instance_id), ignore_errors=True)
    return times


def one_instance(driver_name: str, layers: list[Path], store: LayerStore) -> dict[str, float]:
    figures: dict[str, float] = {}
    with Container(InstanceSpec(storage_driver=driver_name), layers) as box:
        box.start()
        figures["usage_fresh_mib"] = box.disk_usage_bytes() / 2**20
        first = box.exec(["sh", "-c", WRITE])
        second = box.exec(["sh", "-c", WRITE])
        if not (first.ok and second.ok):
            raise RuntimeError(f"write failed: {first.stderr_tail()} {second.stderr_tail()}")
        figures["first_write_ms"] = int(first.stdout.strip()) / 1e6
        figures["second_write_ms"] = int(second.stdout.strip()) / 1e6
        figures["usage_after_write_mib"] = box.disk_usage_bytes() / 2**20
        if not box.exec(["sh", "-c", CHANGES]).ok:
            raise RuntimeError("the change set failed")
        started = time.perf_counter()
        store.commit(box.write_layer, "base", f"storagebench-{secrets.token_hex(4)}")
        figures["commit_s"] = time.perf_counter() - started
    return figures


def measure(drivers: list[str], reps: int, instances: int) -> tuple[dict[str, dict[str, list[float]]], dict[str, str]]:
    image = ensure_image()
    layers = [image.rootfs]
    results: dict[str, dict[str, list[float]]] = {}
    unavailable: dict[str, str] = {}
    for name in drivers:
        reason = get_driver(name).unavailable()
        if reason is not None:
            unavailable[name] = reason
            continue
        results[name] = {}
    with tempfile.TemporaryDirectory(prefix="isolab-storagebench-", dir="/var/tmp") as tmp:
        store = LayerStore(image.rootfs, root=Path(tmp) / "layers")
        for rep in range(reps):
            for name in results:
                if not cold(name):
                    print(f"warning: {name}: another process holds the pool; the first root is not cold", flush=True)
                times = make_roots(name, layers, instances)
                figures = {"create_first_ms": 1000 * times[0], "create_last_ms": 1000 * times[-1],
                           **one_instance(name, layers, store)}
                for key, value in figures.items():
                    results[name].setdefault(key, []).append(value)
                print(f"rep {rep + 1}/{reps} {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()),
                      flush=True)
                cold(name)
    return results, unavailable


COLUMNS = (("create_first_ms", "root made, first from the image (ms)"), ("create_last_ms", "root made, #N (ms)"),
           ("first_write_ms", "first write to a 31 MB image file (ms)"),
           ("second_write_ms", "second write, same file (ms)"),
           ("usage_fresh_mib", "disk usage, fresh (MiB)"),
           ("usage_after_write_mib", "disk usage after the write (MiB)"),
           ("commit_s", "commit, 16 MiB change set (s)"))


def cell(values: list[float]) -> str:
    summary = stats.summarize(values)
    interval = summary.interval
    digits = 3 if summary.median < 10 else 1
    return (f"{summary.median:.{digits}f} [{interval.low:.{digits}f}–{interval.high:.{digits}f}, "
            f"{stats.format_level(interval.level)}]")


def table(results: dict[str, dict[str, list[float]]], unavailable: dict[str, str], instances: int) -> str:
    columns = [(k, t.replace("#N", f"#{instances}")) for k, t in COLUMNS]
    lines = ["| driver | " + " | ".join(title for _, title in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for name, figures in results.items():
        lines.append(f"| {name} | " + " | ".join(cell(figures[key]) for key, _ in columns) + " |")
    for name, reason in unavailable.items():
        lines.append(f"| {name} | unavailable: {reason} |" + " |" * (len(columns) - 1))
    return "\n".join(lines)


def section(text: str, command: str, reps: int) -> str:
    host = f"{platform.node()}, kernel {platform.release()}, {os.cpu_count()} cores"
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (f"{SECTION}\n\nCommand: `{command}`; date: {date}; host: {host}; n = {reps} repetitions per driver "
            "(each: a cold start, then its instances), median [interval of the median, its real level "
            "(order statistics)].\n\n" + text + "\n")


def write_docs(path: Path, body: str) -> None:
    old = path.read_text() if path.exists() else ""
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _m: body + "\n", old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + body
    path.write_text(new)


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storagebench", description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--drivers", default=",".join(DRIVER_NAMES))
    parser.add_argument("--docs", type=Path)
    parser.add_argument("--json", type=Path, help="also write the raw values here")
    args = parser.parse_args(argv)
    drivers = [d.strip() for d in args.drivers.split(",") if d.strip()]
    # a btrfs pool of its own, so that a cold start is cold while other processes use the shared pool
    # (`cleanup` sweeps it if this process is killed)
    os.environ.setdefault("ISOLAB_STORAGE_DIR", f"/var/lib/isolab/storage-bench-{os.getpid()}")
    for name in drivers:
        get_driver(name)
    signal.signal(signal.SIGTERM, _interrupted)  # clean up as on Ctrl-C
    results, unavailable = measure(drivers, args.reps, args.instances)
    text = table(results, unavailable, args.instances)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "unavailable": unavailable}, indent=2))
    if args.docs:
        command = "python -m bench.storagebench " + " ".join(sys.argv[1:] if argv is None else argv)
        write_docs(args.docs, section(text, command.strip(), args.reps))
    subprocess.run(["sync"], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
