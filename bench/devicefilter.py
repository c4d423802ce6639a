"""What the cgroup v2 device filter adds to a container start: cgroup mkdir+rmdir with and without
attaching the BPF device filter, and loading the program (once per process), interleaved run by run
with our container's `/bin/true` start-to-exit.

    sudo python -m bench.devicefilter --runs 300 [--docs docs/benchmarks.md]

Runs on any host with a cgroup2 mount (/sys/fs/cgroup on v2, /sys/fs/cgroup/unified on a hybrid one);
the container start uses whichever cgroup backend the host has. Rewrites only the
"## cgroup v2 device filter cost" section of the docs page when --docs is given.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import stats
from bench.stats import Summary, summarize
from runtime.container.cgroups import cgroup_version
from runtime.container.cgroups.devices import attach_device_filter, filter_program
from runtime.container.container import Container
from runtime.linux import bpf
from runtime.naming import CGROUP_PARENT
from runtime.spec import InstanceSpec

SECTION = "## cgroup v2 device filter cost"


def cgroup2_mount() -> Path:
    with open("/proc/self/mountinfo") as info:
        for line in info:
            left, _, right = line.partition(" - ")
            if right.split()[:1] == ["cgroup2"]:
                return Path(left.split()[4])
    raise SystemExit("no cgroup2 hierarchy is mounted on this host")


def cgroup_runner(parent: Path, with_filter: bool) -> Callable[[], None]:
    def run() -> None:
        path = parent / f"devbench-{secrets.token_hex(4)}"
        path.mkdir()
        try:
            if with_filter:
                attach_device_filter(path)
        finally:
            path.rmdir()
    return run


def load_runner() -> Callable[[], None]:
    code = filter_program().assemble()

    def run() -> None:
        os.close(bpf.prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, code))
    return run


def container_runner(rootfs: Path) -> Callable[[], None]:
    def run() -> None:
        with Container(InstanceSpec(), [rootfs], ["/bin/true"], init=False, quiet=True) as c:
            c.start()
            if (code := c.wait()) != 0:
                raise RuntimeError(f"/bin/true exited {code} in our container")
    return run


def measure(runners: dict[str, Callable[[], None]], warmup: int, runs: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for i in range(warmup + runs):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run()
            if i >= warmup:
                samples[name].append((time.perf_counter() - t0) * 1e3)
    return samples


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def render(summaries: dict[str, Summary], mount: Path, command: str, loads: tuple[str, str]) -> str:
    plain, filtered, start = (summaries[k] for k in ("cgroup", "cgroup+filter", "container start"))
    cost = filtered.median - plain.median
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()} (kernel "
        f"{platform.release()}, {os.cpu_count()} cores, container cgroup v{cgroup_version()}; cgroup2 at "
        f"{mount}), interleaved run by run. `cgroup`: mkdir + rmdir of a cgroup2 directory; `cgroup+filter`: "
        "the same plus attaching the BPF device filter (what the v2 backend adds to each start); `filter load`: "
        "loading the program (verifier and JIT), which the runtime does once per process and keeps; "
        "`container start`: our runtime's `/bin/true`, start request to exit and removal, in the same run. "
        f"Interval of the median: {plain.interval.label}. Host load average (1/5/15 min) before: {loads[0]}, "
        f"after: {loads[1]} (other jobs share the 2 cores: the container start median moves with them).",
        "",
        "| what | n | median (ms) | interval of median (ms, level) | mean (ms) | stdev (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in summaries.items():
        level = stats.format_level(s.interval.level)
        lines.append(f"| {name} | {s.n} | {s.median:.3f} | {s.ci_low:.3f}–{s.ci_high:.3f} ({level}) | {s.mean:.3f} | "
                     f"{s.stdev:.3f} |")
    lines += [
        "",
        f"The filter adds {cost:.3f} ms (difference of medians) to making a cgroup, "
        f"{100 * cost / start.median:.2f} % of the container start median measured in this run "
        "(an upper bound: the runtime makes the cgroup while the child mounts its root, so the two overlap); "
        f"the first container of a process also pays the load, {summaries['filter load'].median:.3f} ms.",
        "",
        "Command:", "", "```", command, "```", "",
    ]
    return "\n".join(lines)


def update_docs(path: Path, body: str) -> None:
    text = path.read_text()
    pattern = re.compile(rf"({re.escape(SECTION)}[^\n]*\n)(.*?)(?=^## |\Z)", re.S | re.M)
    if not pattern.search(text):
        text = text.rstrip("\n") + f"\n\n{SECTION}\n"
    path.write_text(pattern.sub(lambda m: m.group(1) + "\n" + body + "\n", text, count=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.devicefilter")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--docs", type=Path, help="rewrite the device-filter section of this markdown file")
    args = parser.parse_args(argv)
    from runtime.image.build import ensure_image

    mount = cgroup2_mount()
    parent = mount / CGROUP_PARENT
    parent.mkdir(exist_ok=True)
    runners = {"cgroup": cgroup_runner(parent, False), "cgroup+filter": cgroup_runner(parent, True),
               "filter load": load_runner(),
               "container start": container_runner(ensure_image().rootfs)}
    load_before = load_average()
    try:
        samples = measure(runners, args.warmup, args.runs)
    finally:
        try:
            parent.rmdir()
        except OSError:
            pass  # other instances live there
    summaries = {name: summarize(values) for name, values in samples.items()}
    command = "sudo python -m bench.devicefilter " + " ".join(argv if argv is not None else sys.argv[1:])
    body = render(summaries, mount, command, (load_before, load_average()))
    print(body)
    if args.docs:
        update_docs(args.docs, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
