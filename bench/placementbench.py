"""Where the native baseline runs, measured: sysbench cpu with the host's own threads in the root cgroup (the
baseline before this change), in a cgroup of its own without limits (the baseline now), and in our
container, interleaved round by round in a random order.

    python -m bench.placementbench [--rounds 10] [--seconds 4] [--threads 2] [--hogs 0]

On an idle host the three agree. When other processes compete for the cores, the kernel shares CPU between
the root cgroup's tasks one by one and gives each child cgroup one group's weight: a workload in the root
cgroup of a host without systemd then gets more CPU than the same workload in any instance's cgroup, and a
container looks slower than native for reasons of placement. Ratios are paired within rounds (each round's
value ÷ that round's value in the root cgroup), with the order-statistic interval of the median at its real
level. `--hogs N` adds a controlled contention: N busy loops in the root cgroup for the whole measurement
(the situation of a host whose other processes are not in cgroups of their own). Prints a Markdown table
for docs/benchmarks.md with the host's load average before and after.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import time
from collections.abc import Callable

from bench import stats
from runtime.container.platform import ContainerPlatform
from runtime.image.build import ensure_image
from runtime.native import NativeInstance, NativePlatform
from runtime.spec import InstanceSpec
from scenarios.parsers import sysbench


def _sysbench_argv(threads: int, seconds: int) -> list[str]:
    return ["sysbench", "cpu", f"--threads={threads}", f"--time={seconds}", "--cpu-max-prime=10000", "run"]


def _in_root_cgroup(instance: NativeInstance, argv: list[str]) -> str:
    """The baseline as it ran before: chrooted into the instance's root, left in the harness's (root) cgroup."""
    def chroot() -> None:
        os.chroot(instance.root)
        os.chdir("/")

    proc = subprocess.run(argv, capture_output=True, text=True, preexec_fn=chroot, timeout=600,
                          env={"PATH": "/usr/bin:/bin"})
    return proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.placementbench", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hogs", type=int, default=0, help="busy loops in the root cgroup meanwhile")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds < 1 or args.threads < 1 or args.hogs < 0:
        parser.error("--rounds, --seconds and --threads must be at least 1, --hogs at least 0")
    image = ensure_image()
    command = _sysbench_argv(args.threads, args.seconds)
    load_before = open("/proc/loadavg").read().split()[:3]
    values: dict[str, dict[int, float]] = {"root cgroup": {}, "own cgroup": {}, "container": {}}
    hogs = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(args.hogs)]
    try:
        _measure(image, command, args.rounds, args.seconds, values)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    load_after = open("/proc/loadavg").read().split()[:3]
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.uname().nodename}, "
          f"{os.cpu_count()} cpus, load average before {' '.join(load_before)}, after {' '.join(load_after)}; "
          f"`{' '.join(command)}`, n = {args.rounds} rounds, interleaved in random order, "
          f"{args.hogs} busy loop(s) in the root cgroup meanwhile\n")
    print("| placement | median events/s [interval] | ÷ root cgroup, paired [interval] |")
    print("|---|---|---|")
    for arm, by_round in values.items():
        summary = stats.median_interval(list(by_round.values()))
        median = statistics.median(by_round.values())
        paired = stats.paired_ratio(by_round, values["root cgroup"])
        print(f"| {arm} | {median:.1f} [{summary.low:.1f}–{summary.high:.1f}] ({summary.label}) | "
              f"{paired.point:.3f} [{paired.interval.low:.3f}–{paired.interval.high:.3f}] "
              f"({paired.interval.label}) |")
    same_footing = stats.paired_ratio(values["container"], values["own cgroup"])
    print(f"\ncontainer ÷ own cgroup, paired: {same_footing.point:.3f} [{same_footing.interval.low:.3f}–"
          f"{same_footing.interval.high:.3f}] ({same_footing.interval.label})")
    return 0


def _measure(image: object, command: list[str], rounds: int, seconds: int,
             values: dict[str, dict[int, float]]) -> None:
    with NativePlatform(image).create(InstanceSpec()) as native, \
            ContainerPlatform(image=image).create(InstanceSpec()) as container:  # type: ignore[arg-type]
        arms: dict[str, Callable[[], str]] = {
            "root cgroup": lambda: _in_root_cgroup(native, command),
            "own cgroup": lambda: native.exec(command).stdout,
            "container": lambda: container.exec(command).stdout,
        }
        rng = random.Random(15)
        for round_no in range(1, rounds + 1):
            order = list(arms)
            rng.shuffle(order)
            for arm in order:
                figures = sysbench.parse(arms[arm](), seconds)
                values[arm][round_no] = figures["events_per_second"]
            print(f"round {round_no}: " + ", ".join(f"{a} {values[a][round_no]:.1f}" for a in arms), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
