"""Harness overhead: the cpu scenario's sysbench figure through the harness vs the same command run directly.

    python -m bench.overhead --runs 5

Direct: `chroot <image rootfs> sysbench cpu ...` from this process, no harness. Through the
harness: the native × cpu cell via pytest + pytest-benchmark (execute()), with the same sysbench
parameters. Batches run direct, harness, direct (to expose drift); the table gives median, the
interval of the median at its real level (bench.stats) and n of each, and the relative difference of the medians.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench import stats
from bench.config import RunConfig
from bench.results import RunStore
from bench.runner import execute
from runtime.image.build import ensure_image
from runtime.image.store import Image
from scenarios import cpu
from scenarios.parsers import sysbench


def direct(rootfs: Path, runs: int) -> list[float]:
    params = cpu.PROFILES["quick"]
    values = []
    for _ in range(runs):
        out = subprocess.run(["chroot", str(rootfs), "sysbench", "cpu", "--threads=1", f"--time={params['seconds']}",
                              f"--cpu-max-prime={params['sysbench_max_prime']}", "run"],
                             capture_output=True, text=True, check=True).stdout
        values.append(sysbench.parse(out)["events_per_second"])
    return values


def through_harness(runs: int, image: Image) -> list[float]:
    root = Path(tempfile.mkdtemp(prefix="isolab-overhead-"))
    try:
        store = RunStore.create(root)
        config = RunConfig(platforms=("native",), scenarios=("cpu",), repetitions=runs, max_repetitions=runs)
        store.write_run_info({"run_id": store.run_id, "config": config.to_dict(), "status": "new"})
        execute(config, image, lambda _msg: None, resume=store)
        return [s.value for s in store.samples()
                if s.metric == "sysbench_cpu_events_per_s" and s.variant == "threads=1"]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    image = ensure_image()
    batches = {"direct (1st)": direct(image.rootfs, args.runs), "harness": through_harness(args.runs, image),
               "direct (2nd)": direct(image.rootfs, args.runs)}
    both_direct = batches["direct (1st)"] + batches["direct (2nd)"]
    print(f"sysbench cpu, 1 thread, {cpu.PROFILES['quick']['seconds']} s per run, events/s")
    print(f"{'batch':<14} {'n':>3} {'median':>10} {'interval of the median':>22} {'CV':>7}")
    for name, values in [*batches.items(), ("direct (all)", both_direct)]:
        s = stats.summarize(values)
        print(f"{name:<14} {s.n:>3} {s.median:>10.1f} {s.ci_low:>10.1f} – {s.ci_high:<9.1f} {100 * s.cv:>6.2f}%"
              f"  ({s.interval.label})")
    change = stats.ratio(batches["harness"], both_direct)
    iv = change.interval
    print(f"harness ÷ direct = {change.point:.4f} [{iv.low:.4f}–{iv.high:.4f}, {iv.label}] "
          f"(difference {100 * (change.point - 1):+.2f}%; target |difference| ≤ 1%)")


if __name__ == "__main__":
    main()
