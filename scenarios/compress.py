"""Parallel compression: `xz -T<threads>` throughput (input MB/s), standing in for PXZ (Felter et al. 2015).

`prepare` makes the input once per instance: the first `size_mib` MiB of a name-sorted tar of the image's
/usr/lib and /usr/share (every platform runs the same image, so every platform compresses the same bytes;
its sha256 goes into the raw output). Each repetition compresses it to /dev/null at `level` with
`threads` threads ("all": every cpu the instance has) in blocks of `block_mib` MiB and times the command
inside the instance (`date +%s%N` before and after). Not a default scenario: study profiles and
`--scenario compress` select it.
"""

from __future__ import annotations

from runtime.platform import Instance
from scenarios.base import DAY_S, Range, RawSink, Sample, ScenarioError, check, require_tools

NAME = "compress"
DESCRIPTION = "xz -T<threads> compression throughput (input MB/s) of a fixed slice of the image's /usr"
TOOLS = ("xz", "tar", "head", "date", "nproc", "sha256sum", "stat", "rm")
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "xz_compress_throughput": ("MB/s", ("block_mib", "level", "size_mib", "threads")),
}
RANGES: dict[str, Range] = {
    "xz_compress_throughput": Range("higher", 1e5, "100 GB/s of xz: far above any CPU"),
}
INPUT = "isolab-xz-input.tar"

PROFILES: dict[str, dict[str, object]] = {
    # block_mib: xz's --block-size (0: its default, three times the dictionary: 24 MiB at level 6, so an
    # input below 48 MiB would keep a second thread idle); PXZ splits its input into blocks too
    "quick": {"size_mib": 16, "level": 6, "threads": "all", "block_mib": 4},
    "full": {"size_mib": 256, "level": 6, "threads": "all", "block_mib": 0},
}


def _input(instance: Instance) -> str:
    return f"{instance.scratch_dir.rstrip('/')}/{INPUT}"


def _threads(instance: Instance, params: dict[str, object]) -> int:
    if params["threads"] == "all":
        return int(check(instance.exec(["nproc"], timeout=30), instance).stdout.strip())
    return int(params["threads"])  # type: ignore[call-overload]


def prepare(instance: Instance, params: dict[str, object]) -> None:
    require_tools(instance, TOOLS)
    size = int(params["size_mib"]) * 2**20  # type: ignore[call-overload]
    path = _input(instance)
    script = ('tar --sort=name -cf - -C / usr/lib usr/share 2>/dev/null | head -c "$2" > "$1"; '
              'stat -c %s "$1"')
    made = check(instance.exec(["sh", "-c", script, "sh", path, str(size)], timeout=1800), instance)
    if made.stdout.strip() != str(size):
        raise ScenarioError(f"compress: the input on {instance.platform} has {made.stdout.strip()} bytes, "
                            f"not {size} (is the image's /usr smaller than size_mib?)")


def run(instance: Instance, params: dict[str, object], raw: RawSink) -> list[Sample]:
    path, threads, level = _input(instance), _threads(instance, params), int(params["level"])  # type: ignore[call-overload]
    block = int(params.get("block_mib") or 0)  # type: ignore[call-overload]
    script = ('sha256sum "$1"; a=$(date +%s%N); xz -T"$2" -"$3" $4 -c "$1" > /dev/null || exit 9; '
              'b=$(date +%s%N); echo "elapsed_ns=$((b - a))"')
    result = instance.exec(["sh", "-c", script, "sh", path, str(threads), str(level),
                            f"--block-size={block}MiB" if block else ""], timeout=DAY_S / 24)
    raw(f"xz-T{threads}.txt", result.stdout + result.stderr)
    check(result, instance)
    lines = [line for line in result.stdout.splitlines() if line.startswith("elapsed_ns=")]
    try:
        elapsed_s = int(lines[-1].split("=", 1)[1]) / 1e9
    except (IndexError, ValueError) as exc:
        raise ScenarioError(f"compress: no elapsed time in the output on {instance.platform}") from exc
    if elapsed_s <= 0:
        raise ScenarioError(f"compress: elapsed time {elapsed_s} s on {instance.platform} is not a measurement")
    size_mib = int(params["size_mib"])  # type: ignore[call-overload]
    meta = {"threads": threads, "level": level, "size_mib": size_mib, "block_mib": block}
    return [Sample("xz_compress_throughput", size_mib * 2**20 / 1e6 / elapsed_s, "MB/s", meta)]


def cleanup(instance: Instance, params: dict[str, object]) -> None:
    instance.exec(["rm", "-f", _input(instance)], timeout=60)
