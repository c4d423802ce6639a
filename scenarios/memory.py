"""Memory bandwidth and random-access rate: sysbench memory (sequential and random) and stress-ng stream.

Why these tools (all in bookworm's sysbench 1.0.20 and stress-ng 0.15.06):
- sequential bandwidth: `sysbench memory --memory-access-mode=seq` streams 8-byte loads/stores through a
  buffer of `--memory-block-size` per event; the block is set well above the last-level cache (128 MiB
  quick, 256 MiB full) so the figure is DRAM bandwidth, not cache bandwidth (sysbench's default 1 KiB is).
- STREAM-style bandwidth: stress-ng's `stream` stressor (copy/scale/add/triad) reports read and write
  MB/s; its arrays are sized from `--stream-l3-size`, pinned here so every platform moves the same arrays
  whatever cache size the (virtual) CPU claims. It only reports rates after ~5 s of running.
- random access (GUPS-like): `sysbench memory --memory-access-mode=rnd` does block/8 loads or stores of one
  8-byte word at uniformly random offsets in the block per event, so with a block far above the LLC nearly
  every access misses cache and TLB. accesses/s = MiB/s * 2^20 / 8, reported as M accesses/s. stress-ng's
  `randlist` (linked-list shuffles) reports only bogo-ops and `memrate` is sequential, so neither gives a rate.
"""

from __future__ import annotations

from runtime.platform import Instance
from runtime.spec import InstanceSpec, parse_size
from scenarios.base import MEMORY_BUS_MB_S, MEMORY_BUS_WHY, Range, RawSink, Sample, ScenarioError, check, require_tools
from scenarios.parsers import ParseError, stressng, sysbench

NAME = "memory"
DESCRIPTION = "sysbench memory seq/rnd bandwidth, random-access rate (GUPS-like), stress-ng stream MB/s"
TOOLS = ("sysbench", "stress-ng", "nproc", "cat", "rm")
#: What this scenario emits: metric -> (unit, metadata keys that make up its variant). Claims and reports
#: check against this; tests check it against the code below.
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sysbench_memory_bandwidth": ("MiB/s", ("access", "block", "op", "threads")),
    "memory_random_access_rate": ("M accesses/s", ("access", "block", "op", "threads", "word_bytes")),
    "stressng_stream_read_bandwidth": ("MB/s", ("l3_size", "threads")),
    "stressng_stream_write_bandwidth": ("MB/s", ("l3_size", "threads")),
    "stressng_stream_flops": ("Mflop/s", ("l3_size", "threads")),
}

WORD_BYTES = 8  # sysbench memory accesses size_t words on 64-bit builds

RANGES: dict[str, Range] = {
    "sysbench_memory_bandwidth": Range("higher", MEMORY_BUS_MB_S * 1e6 / 2**20, MEMORY_BUS_WHY),
    "memory_random_access_rate": Range("higher", MEMORY_BUS_MB_S / WORD_BYTES,
                                        f"{MEMORY_BUS_WHY}, in {WORD_BYTES}-byte words"),
    "stressng_stream_read_bandwidth": Range("higher", MEMORY_BUS_MB_S, MEMORY_BUS_WHY),
    "stressng_stream_write_bandwidth": Range("higher", MEMORY_BUS_MB_S, MEMORY_BUS_WHY),
    "stressng_stream_flops": Range("higher", 1e8, "100 Tflop/s: above any CPU"),
}

PROFILES: dict[str, dict[str, object]] = {
    "quick": {
        "seconds": 2, "threads": ["1"], "operations": ["read", "write"],
        "seq_block": "128M", "rnd_block": "128M",
        "stream_seconds": 8, "stream_l3_size": "16M",  # 3 arrays of 4 x 16 MiB: fits the VM default 1 GiB
        "instance_memory": None,
    },
    "full": {
        "seconds": 20, "threads": ["1", "all"], "operations": ["read", "write"],
        "seq_block": "256M", "rnd_block": "256M",
        "stream_seconds": 30, "stream_l3_size": "32M",  # 128 MiB arrays, 384 MiB per instance
        "instance_memory": "4G",
    },
}


def instance_spec(params: dict[str, object]) -> InstanceSpec:
    """Enough memory for the buffers (a VM gets this much RAM; a container this limit)."""
    memory = params.get("instance_memory")
    return InstanceSpec(memory=parse_size(str(memory), "instance_memory") if memory else None)


def prepare(instance: Instance, params: dict[str, object]) -> None:
    require_tools(instance, TOOLS)


def _thread_counts(instance: Instance, params: dict[str, object]) -> list[int]:
    cpus = int(check(instance.exec(["nproc"], timeout=30), instance).stdout.strip())
    return sorted({cpus if t == "all" else int(t) for t in params["threads"]})  # type: ignore[attr-defined]


def _sysbench(instance: Instance, raw: RawSink, threads: int, mode: str, oper: str, block: str,
              seconds: int) -> dict[str, float]:
    result = instance.exec(
        ["sysbench", "memory", f"--threads={threads}", f"--time={seconds}", f"--memory-block-size={block}",
         "--memory-total-size=1000T", f"--memory-access-mode={mode}", f"--memory-oper={oper}", "run"],
        timeout=seconds * 10 + 120)
    raw(f"sysbench-memory-{mode}-{oper}-t{threads}.txt", result.stdout + result.stderr)
    try:
        figures = sysbench.memory(result.stdout + result.stderr, seconds)
    except ParseError as exc:
        raise ScenarioError(f"sysbench memory {mode} {oper} on {instance.platform}: {exc}") from exc
    check(result, instance)
    return figures


def run(instance: Instance, params: dict[str, object], raw: RawSink) -> list[Sample]:
    seconds = int(params["seconds"])  # type: ignore[arg-type]
    samples: list[Sample] = []
    for threads in _thread_counts(instance, params):
        for oper in params["operations"]:  # type: ignore[attr-defined]
            block = str(params["seq_block"])
            figures = _sysbench(instance, raw, threads, "seq", oper, block, seconds)
            samples.append(Sample("sysbench_memory_bandwidth", figures["mib_per_second"], "MiB/s",
                                  {"access": "seq", "op": oper, "block": block, "threads": threads}))
            block = str(params["rnd_block"])
            figures = _sysbench(instance, raw, threads, "rnd", oper, block, seconds)
            meta = {"access": "rnd", "op": oper, "block": block, "threads": threads}
            samples.append(Sample("sysbench_memory_bandwidth", figures["mib_per_second"], "MiB/s", meta))
            rate = figures["mib_per_second"] * 2**20 / WORD_BYTES / 1e6
            samples.append(Sample("memory_random_access_rate", rate, "M accesses/s",
                                  {**meta, "word_bytes": WORD_BYTES}))
        samples += _stream(instance, params, raw, threads)
    return samples


def _stream(instance: Instance, params: dict[str, object], raw: RawSink, threads: int) -> list[Sample]:
    seconds = int(params["stream_seconds"])  # type: ignore[arg-type]
    l3 = str(params["stream_l3_size"])
    out = f"{instance.scratch_dir}/stress-ng-stream.yaml"
    result = instance.exec(
        ["stress-ng", "--stream", str(threads), "--stream-l3-size", l3, "-t", str(seconds), "--metrics-brief",
         "--temp-path", instance.scratch_dir, "--yaml", out], timeout=seconds * 10 + 120)
    check(result, instance)
    text = check(instance.exec(["cat", out], timeout=30), instance).stdout
    raw(f"stress-ng-stream-t{threads}.yaml", text)
    try:
        rates = stressng.stream_rates(text, seconds, result.stdout + result.stderr)
    except ParseError as exc:
        raise ScenarioError(f"stress-ng stream on {instance.platform}: {exc}") from exc
    meta = {"l3_size": l3, "threads": threads}
    samples = [Sample("stressng_stream_read_bandwidth", rates["read_mb_per_s"], "MB/s", meta),
               Sample("stressng_stream_write_bandwidth", rates["write_mb_per_s"], "MB/s", meta)]
    if "mflop_per_s" in rates:
        samples.append(Sample("stressng_stream_flops", rates["mflop_per_s"], "Mflop/s", meta))
    return samples


def cleanup(instance: Instance, params: dict[str, object]) -> None:
    instance.exec(["rm", "-f", f"{instance.scratch_dir}/stress-ng-stream.yaml"], timeout=30)
