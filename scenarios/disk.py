"""Disk I/O: fio (IOPS, MB/s, completion latency p50/p99/p99.9) and an iozone throughput table.

fio jobs are data (PROFILES["..."]["jobs"]): sequential read/write with 1 MiB blocks, random read/write
with 4 KiB blocks at queue depth 32, and a 70/30 random mix, each time-based on one file laid out once in
`prepare`. Every job uses O_DIRECT (--direct=1) and libaio so the page cache does not decide the result.
iozone (-I, O_DIRECT too) gives the classic write/rewrite/read/reread/random table in MB/s.
Storage targets (params["storage"], each sample says which in metadata `storage`):
  cow     the instance's own copy-on-write disk: params["target_dir"], default its scratch_dir (the
          container's overlay writable layer, the VM's qcow2 overlay, the host disk for native)
  volume  the data volume of InstanceSpec(volume=True) at /mnt, past the copy-on-write root (a bind-mounted
          host directory for container and native, a raw virtio disk for the VM)
`instance_spec` asks for the volume when the profile lists it. iozone runs on the first target only.
params["storage_jobs"] may restrict the fio jobs of a target by name. The quick profile runs 3 s jobs, all
five on cow and only the 4 KiB random read and write on volume (where the copy-on-write layer's per-IO cost
shows; 1 MiB sequential IO is bandwidth-bound), so it takes about as long as the former 5 x 5 s cow-only
run (each fio invocation also has a fixed cost, about 1.3 s in a TCG guest). The full profile runs every
job on both.
A job may set `numjobs` (fio threads or processes on the one file, reported together: group_reporting);
its samples then carry `numjobs`. `thread` (profile) runs the jobs as threads, as fio's `thread` option.
"""

from __future__ import annotations

from runtime.platform import Instance
from runtime.spec import VOLUME_DIR, InstanceSpec, parse_size
from scenarios.base import (
    DAY_S,
    MEMORY_BUS_MB_S,
    MEMORY_BUS_WHY,
    Range,
    RawSink,
    Sample,
    ScenarioError,
    check,
    require_tools,
)
from scenarios.parsers import ParseError, fio, iozone

NAME = "disk"
DESCRIPTION = "fio seq 1M / rand 4k qd32 / 70-30 mix with O_DIRECT: IOPS, MB/s, clat p50/p99/p99.9; iozone table"
TOOLS = ("fio", "iozone", "df", "rm", "mkdir")
PRECISION_METRICS = ("fio_iops", "fio_bandwidth", "iozone_throughput")  # CV of these decides extension
#: What this scenario emits: metric -> (unit, metadata keys that make up its variant). Claims and reports
#: check against this; tests check it against the code below.
# rwmixread only on mixed jobs; numjobs only on jobs that set it (several fio threads on one file)
_FIO_KEYS = ("bs", "direction", "iodepth", "numjobs", "rw", "rwmixread", "storage")
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fio_iops": ("IOPS", _FIO_KEYS), "fio_bandwidth": ("MB/s", _FIO_KEYS),
    "fio_clat_p50": ("µs", _FIO_KEYS), "fio_clat_p99": ("µs", _FIO_KEYS), "fio_clat_p99_9": ("µs", _FIO_KEYS),
    "fio_clat_mean": ("µs", _FIO_KEYS),
    "iozone_throughput": ("MB/s", ("file_mb", "record_kb", "storage", "test")),
}

_LATENCY = Range("lower", DAY_S * 1e6, "a day")
RANGES: dict[str, Range] = {
    "fio_iops": Range("higher", 1e8, "100 M IOPS: above any host's storage stack"),
    "fio_bandwidth": Range("higher", MEMORY_BUS_MB_S, f"{MEMORY_BUS_WHY}, even from the page cache"),
    "fio_clat_p50": _LATENCY, "fio_clat_p99": _LATENCY, "fio_clat_p99_9": _LATENCY, "fio_clat_mean": _LATENCY,
    "iozone_throughput": Range("higher", MEMORY_BUS_MB_S, f"{MEMORY_BUS_WHY}, even from the page cache"),
}

STORAGES = ("cow", "volume")
FIO_FILE = "isolab-fio.dat"
IOZONE_FILE = "isolab-iozone.dat"

_JOBS: list[dict[str, object]] = [
    {"name": "seqread", "rw": "read", "bs": "1M", "iodepth": 8},
    {"name": "seqwrite", "rw": "write", "bs": "1M", "iodepth": 8},
    {"name": "randread", "rw": "randread", "bs": "4k", "iodepth": 32},
    {"name": "randwrite", "rw": "randwrite", "bs": "4k", "iodepth": 32},
    {"name": "randrw70", "rw": "randrw", "bs": "4k", "iodepth": 32, "rwmixread": 70},
]

PROFILES: dict[str, dict[str, object]] = {
    "quick": {
        "target_dir": None,  # None: the instance's scratch_dir
        "storage": ["cow", "volume"],
        "storage_jobs": {"volume": ["randread", "randwrite"]},  # a target not named runs every job
        "file_size": "256M", "runtime_s": 2, "ramp_s": 0, "ioengine": "libaio", "thread": False, "jobs": _JOBS,
        "iozone": {"file_size": "64M", "records": ["1M"], "tests": [0, 1, 2]},
    },
    "full": {
        "target_dir": None,
        "storage": ["cow", "volume"],
        "storage_jobs": {},
        "file_size": "4G", "runtime_s": 60, "ramp_s": 5, "ioengine": "libaio", "thread": False, "jobs": _JOBS,
        "iozone": {"file_size": "1G", "records": ["4k", "1M"], "tests": [0, 1, 2]},
    },
}

_LATENCIES = (("p50", "fio_clat_p50"), ("p99", "fio_clat_p99"), ("p99_9", "fio_clat_p99_9"), ("mean", "fio_clat_mean"))


def _storages(params: dict[str, object]) -> list[str]:
    storages = [str(s) for s in params.get("storage") or ["cow"]]  # type: ignore[attr-defined]
    unknown = [s for s in storages if s not in STORAGES]
    if unknown:
        raise ScenarioError(f"disk: unknown storage {', '.join(unknown)}: choose from {', '.join(STORAGES)}")
    return storages


def instance_spec(params: dict[str, object]) -> InstanceSpec:
    """A data volume at /mnt when the profile measures it."""
    return InstanceSpec(volume="volume" in _storages(params))


def _target(instance: Instance, params: dict[str, object], storage: str = "cow") -> str:
    if storage == "volume":
        return VOLUME_DIR
    return str(params.get("target_dir") or instance.scratch_dir).rstrip("/") or "/"


def _targets(instance: Instance, params: dict[str, object]) -> list[tuple[str, str]]:
    """(storage, directory) per target, in the profile's order."""
    return [(storage, _target(instance, params, storage)) for storage in _storages(params)]


def _jobs(params: dict[str, object], storage: str) -> list[dict[str, object]]:
    jobs: list[dict[str, object]] = params["jobs"]  # type: ignore[assignment]
    names = (params.get("storage_jobs") or {}).get(storage)  # type: ignore[attr-defined]
    return jobs if names is None else [job for job in jobs if job["name"] in names]


def prepare(instance: Instance, params: dict[str, object]) -> None:
    """Check tools and free space, then lay the fio file out once per target (written in full, O_DIRECT)."""
    tools = TOOLS if params.get("iozone") else tuple(t for t in TOOLS if t != "iozone")
    require_tools(instance, tools)
    for index, (storage, target) in enumerate(_targets(instance, params)):
        _prepare_target(instance, params, storage, target, with_iozone=index == 0 and bool(params.get("iozone")))


def _prepare_target(instance: Instance, params: dict[str, object], storage: str, target: str,
                    with_iozone: bool) -> None:
    check(instance.exec(["mkdir", "-p", target], timeout=30), instance)
    need = parse_size(str(params["file_size"]), "file_size")
    if with_iozone:
        need += parse_size(str(params["iozone"]["file_size"]), "iozone file_size")  # type: ignore[index]
    free = check(instance.exec(["df", "-Pk", target], timeout=30), instance).stdout.splitlines()[-1].split()
    if storage == "volume" and free[-1] != VOLUME_DIR:
        raise ScenarioError(f"disk: no data volume is mounted at {VOLUME_DIR} on {instance.platform} "
                            f"({VOLUME_DIR} is on {free[0]} mounted at {free[-1]})")
    if int(free[3]) * 1024 < need * 1.1:
        raise ScenarioError(f"disk: {target} ({storage}) on {instance.platform} has {int(free[3]) // 1024} MiB "
                            f"free, the files need {need // 2**20} MiB")
    result = instance.exec(
        ["fio", "--name=layout", f"--filename={target}/{FIO_FILE}", f"--size={params['file_size']}", "--rw=write",
         "--bs=1M", "--direct=1", f"--ioengine={params['ioengine']}", "--iodepth=8", "--output-format=json"],
        timeout=3600)
    try:
        fio.job(result.stderr + result.stdout, "layout")
    except ParseError as exc:
        raise ScenarioError(f"disk: laying out {target}/{FIO_FILE} ({storage}) on {instance.platform} failed: "
                            f"{exc}") from exc
    check(result, instance)


def _fio_argv(params: dict[str, object], target: str, job: dict[str, object]) -> list[str]:
    argv = ["fio", f"--name={job['name']}", f"--filename={target}/{FIO_FILE}", f"--size={params['file_size']}",
            f"--rw={job['rw']}", f"--bs={job['bs']}", f"--iodepth={job['iodepth']}",
            f"--ioengine={params['ioengine']}", "--direct=1", "--time_based", f"--runtime={params['runtime_s']}",
            f"--numjobs={int(job.get('numjobs', 1))}", "--group_reporting", "--output-format=json"]  # type: ignore[call-overload]
    if params.get("thread"):  # fio threads instead of forked processes (the `thread` job option)
        argv.append("--thread")
    if int(params.get("ramp_s") or 0):  # type: ignore[arg-type]
        argv.append(f"--ramp_time={params['ramp_s']}")
    if "rwmixread" in job:
        argv.append(f"--rwmixread={job['rwmixread']}")
    return argv


def _fio_samples(result: fio.JobResult, job: dict[str, object], storage: str = "cow") -> list[Sample]:
    base: dict[str, object] = {"storage": storage, "rw": job["rw"], "bs": str(job["bs"]).lower(),
                               "iodepth": int(job["iodepth"])}  # type: ignore[call-overload]
    if "rwmixread" in job:
        base["rwmixread"] = int(job["rwmixread"])  # type: ignore[call-overload]
    if "numjobs" in job:
        base["numjobs"] = int(job["numjobs"])  # type: ignore[call-overload]
    samples = []
    for direction, stats in result.directions.items():
        meta = {**base, "direction": direction}
        samples.append(Sample("fio_iops", stats.iops, "IOPS", meta))
        samples.append(Sample("fio_bandwidth", stats.bw_bytes_per_s / 1e6, "MB/s", meta))
        for key, metric in _LATENCIES:
            if key in stats.clat_us:
                samples.append(Sample(metric, stats.clat_us[key], "µs", meta))
    return samples


def _iozone(instance: Instance, params: dict[str, object], raw: RawSink, storage: str,
            target: str) -> list[Sample]:
    conf: dict[str, object] = params["iozone"]  # type: ignore[assignment]
    argv = ["iozone", "-I", "-R", "-s", str(conf["file_size"]).lower(), "-f", f"{target}/{IOZONE_FILE}"]
    for test in conf["tests"]:  # type: ignore[attr-defined]
        argv += ["-i", str(test)]
    for record in conf["records"]:  # type: ignore[attr-defined]
        argv += ["-r", str(record).lower()]
    result = instance.exec(argv, timeout=7200)
    raw("iozone.txt", result.stdout + result.stderr)
    try:
        table = iozone.parse(result.stdout + result.stderr)
    except ParseError as exc:
        raise ScenarioError(f"disk: iozone on {instance.platform}: {exc}") from exc
    check(result, instance)
    samples = []
    for test, rows in table.items():
        for (file_kb, record_kb), kb_per_s in sorted(rows.items()):
            meta = {"storage": storage, "test": test, "record_kb": record_kb, "file_mb": file_kb // 1024}
            samples.append(Sample("iozone_throughput", kb_per_s * 1024 / 1e6, "MB/s", meta))
    return samples


def run(instance: Instance, params: dict[str, object], raw: RawSink) -> list[Sample]:
    try:
        return _run(instance, params, raw)
    except BaseException:
        cleanup(instance, params)  # the harness skips cleanup() after a failed run; files must not stay
        raise


def _run(instance: Instance, params: dict[str, object], raw: RawSink) -> list[Sample]:
    runtime_s = int(params["runtime_s"]) + int(params.get("ramp_s") or 0)  # type: ignore[call-overload]
    samples: list[Sample] = []
    targets = _targets(instance, params)
    for storage, target in targets:
        for job in _jobs(params, storage):
            result = instance.exec(_fio_argv(params, target, job), timeout=runtime_s * 10 + 300)
            name = f"fio-{job['name']}.json" if storage == "cow" else f"fio-{job['name']}-{storage}.json"
            raw(name, result.stdout + (f"\n# stderr:\n{result.stderr}" if result.stderr else ""))
            try:
                parsed = fio.job(result.stderr + result.stdout, str(job["name"]), float(params["runtime_s"]))
            except ParseError as exc:
                raise ScenarioError(f"disk: fio {job['name']} on {instance.platform} ({storage} {target}): "
                                    f"{exc}") from exc
            check(result, instance)
            samples += _fio_samples(parsed, job, storage)
    if params.get("iozone"):
        samples += _iozone(instance, params, raw, *targets[0])
    return samples


def cleanup(instance: Instance, params: dict[str, object]) -> None:
    for _storage, target in _targets(instance, params):
        instance.exec(["rm", "-f", f"{target}/{FIO_FILE}", f"{target}/{IOZONE_FILE}"], timeout=60)
