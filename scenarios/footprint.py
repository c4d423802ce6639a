"""Footprint and density: host memory per idle instance, disk per instance, page-cache sharing, density.

Per repetition:
- start `instances` idle instances at once; host memory of each = PSS of its host processes (container init
  and children, or the QEMU process: guest memory it touched included); disk = what it added on the
  host (container writable layer, VM qcow2 overlay);
- page-cache sharing: drop the host page cache, let every instance read the same image files, and
  measure the host's page-cache growth (shared base layer: ~1× the files; separate caches: ~N×);
- density: count the idle instances already running, then start more, until their summed PSS passes
  `density_budget_mib` or their number reaches `density_cap` (so quick, cap = instances, boots none extra).
Platforms without resident processes (native) get disk and page-cache figures only; the samples say so.
Per-instance samples carry `instance` (index in the repetition); the statistics reduce a repetition's
instances to one value (they run side by side and share pages, so they are not independent).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from runtime.platform import Instance, Platform
from runtime.spec import InstanceSpec
from scenarios import hostmetrics
from scenarios.base import Range, RawSink, Sample, check, destroy_all

NAME = "footprint"
DESCRIPTION = "host memory (PSS) and disk per idle instance, page-cache sharing, instances within a memory budget"
TOOLS = ()
PRECISION_METRICS = ("idle_pss_mib", "disk_per_instance_mib")  # CV of these decides extension
#: No REPETITIONS of its own: the profile's default (quick 3, a 75 % interval for a median, labelled so). Six
#: (96.9 %) cost the quick profile 3.5 minutes of VM boots it cannot afford in 25 (docs/benchmarks.md); its
#: figures (PSS, disk) barely move between repetitions.
#: What this scenario emits: metric -> (unit, metadata keys that make up its variant). Claims and reports
#: check against this; tests check it against the code below.
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "idle_pss_mib": ("MiB", ("memory_limit_mib",)), "disk_per_instance_mib": ("MiB", ()),
    "page_cache_growth_mib": ("MiB", ("file_mib", "instances")),
    "page_cache_growth_per_read": ("fraction of bytes read", ("file_mib", "instances")),
    "density_instances_within_budget": ("instances", ("budget_mib", "cap")),
}
MIB = 2**20
READ_FILES = (
    "/usr/lib/x86_64-linux-gnu/libicudata.so.72.1",
    "/usr/lib/modules/{kernel}/kernel/drivers/gpu/drm/amd/amdgpu/amdgpu.ko",
)

_HOST_RAM_MIB = hostmetrics.meminfo_bytes("MemTotal") / MIB or float("inf")
_RAM_WHY = "this host's RAM (MemTotal)"
RANGES: dict[str, Range] = {
    "idle_pss_mib": Range("lower", _HOST_RAM_MIB, _RAM_WHY),
    "disk_per_instance_mib": Range("lower", zero_ok=True),  # an instance that wrote nothing adds nothing
    "page_cache_growth_mib": Range("lower", _HOST_RAM_MIB, _RAM_WHY, zero_ok=True),
    "page_cache_growth_per_read": Range("lower", zero_ok=True),
    "density_instances_within_budget": Range("higher", zero_ok=True),  # 0: even one is too big
}

CACHE_NOISE_BYTES = 4 * MIB  # host-wide Cached drifts by this much while nothing of ours reads (seen: -0.05 MiB)

PROFILES: dict[str, dict[str, object]] = {
    "quick": {"instances": 2, "memory_mib": 512, "settle_s": 1.0, "density_budget_mib": 768, "density_cap": 2},
    "full": {"instances": 8, "memory_mib": 512, "settle_s": 5.0, "density_budget_mib": 8192, "density_cap": 64},
}


def _spec(params: dict[str, object]) -> InstanceSpec:
    return InstanceSpec(memory=int(params["memory_mib"]) * MIB)  # type: ignore[call-overload]


def _instance_pss(instance: Instance) -> int:
    return hostmetrics.pss_bytes(hostmetrics.descendants(instance.host_pids()))


def _read_set(instance: Instance) -> list[str]:
    # a shell glob, not ls: gVisor's statx refuses the flags coreutils 9.1's ls passes (EINVAL)
    first = 'set -- /usr/lib/modules/*; echo "${1##*/}"'
    kernel = check(instance.exec(["sh", "-c", first], timeout=60), instance).stdout.strip()
    return [path.format(kernel=kernel) for path in READ_FILES]


def _page_cache(instances: list[Instance], raw_log: list[str]) -> list[Sample]:
    files = _read_set(instances[0])
    size = int(check(instances[0].exec(["du", "-cb", *files], timeout=60), instances[0]).stdout.split()[-2])
    hostmetrics.drop_page_cache()
    before = hostmetrics.meminfo_bytes("Cached")
    def read(instance: Instance) -> None:
        check(instance.exec(["cat", *files], timeout=300), instance)  # output discarded by exec capture

    with ThreadPoolExecutor(max_workers=len(instances)) as pool:  # at once: they share or duplicate the cache
        list(pool.map(read, instances))
    growth = hostmetrics.meminfo_bytes("Cached") - before
    if -CACHE_NOISE_BYTES < growth < 0:  # reads that bypass the host's cache (a VM's cache='none' disk):
        raw_log.append(f"page cache: host Cached moved by {growth} bytes, within the host's own noise: 0")
        growth = 0  # the counter is host-wide, so other activity moves it by a few pages either way
    per_read = growth / (size * len(instances))
    raw_log.append(f"page cache: {len(instances)} instances read {size} bytes each; host Cached grew {growth} bytes")
    meta = {"instances": len(instances), "file_mib": round(size / MIB, 1)}
    return [Sample("page_cache_growth_mib", growth / MIB, "MiB", meta),
            Sample("page_cache_growth_per_read", per_read, "fraction of bytes read", meta)]


def _start(platform: Platform, params: dict[str, object], count: int) -> list[Instance]:
    """`count` instances created at once (a TCG boot keeps one core busy: two boots side by side take about
    as long as one); if any fails, the others are destroyed and the first failure raised."""
    with ThreadPoolExecutor(max_workers=max(count, 1)) as pool:
        futures = [pool.submit(platform.create, _spec(params)) for _ in range(count)]
    started: list[Instance] = []
    errors: list[BaseException] = []
    for future in futures:
        try:
            started.append(future.result())
        except BaseException as exc:  # collected: the started ones are destroyed before raising
            errors.append(exc)
    if errors:
        destroy_all(started)
        raise errors[0]
    return started


def _within_budget(pss: list[int], budget: int) -> int:
    """How many of these instances, counted in order, fit in `budget` bytes of summed PSS."""
    total = 0
    for count, bytes_ in enumerate(pss):
        total += bytes_
        if total > budget:
            return count
    return len(pss)


def _density(platform: Platform, params: dict[str, object], running: list[Instance],
             raw_log: list[str]) -> list[Sample]:
    """Count instances within the budget, starting from the idle ones already `running` and creating more
    (appended to `running`, which the caller destroys) until the budget or the cap is reached."""
    budget = int(params["density_budget_mib"]) * MIB  # type: ignore[call-overload]
    cap = int(params["density_cap"])  # type: ignore[call-overload]
    pss = [_instance_pss(instance) for instance in running[:cap]]
    fitting = _within_budget(pss, budget)
    raw_log.append(f"density: {len(pss)} instances already running, total PSS {sum(pss)} bytes")
    while fitting == len(pss) < cap:
        running.append(platform.create(_spec(params)))
        time.sleep(float(params["settle_s"]))  # type: ignore[arg-type]
        pss = [_instance_pss(instance) for instance in running[:cap]]
        fitting = _within_budget(pss, budget)
        raw_log.append(f"density: {len(pss)} instances, total PSS {sum(pss)} bytes")
    meta = {"budget_mib": budget // MIB, "cap": cap}
    return [Sample("density_instances_within_budget", fitting, "instances", meta)]


def run_platform(platform: Platform, params: dict[str, object], raw: RawSink) -> list[Sample]:
    samples: list[Sample] = []
    log: list[str] = []
    count = int(params["instances"])  # type: ignore[call-overload]
    instances = _start(platform, params, count)
    resident = True
    try:
        time.sleep(float(params["settle_s"]))  # type: ignore[arg-type]
        for index, instance in enumerate(instances):
            resident = resident and bool(instance.host_pids())
            if resident:
                pss = _instance_pss(instance)
                samples.append(Sample("idle_pss_mib", pss / MIB, "MiB",
                                      {"memory_limit_mib": params["memory_mib"], "instance": index}))
                log.append(f"{instance.instance_id}: PSS {pss} bytes")
            disk = instance.disk_usage_bytes()
            if disk is not None:
                samples.append(Sample("disk_per_instance_mib", disk / MIB, "MiB", {"instance": index}))
        if resident:  # while they are still idle: the page-cache reads below grow a guest's memory
            samples += _density(platform, params, instances, log)
            destroy_all(instances[count:])
            del instances[count:]
        else:
            log.append("no resident host processes per instance: PSS and density do not apply")
        samples += _page_cache(instances, log)
    finally:
        destroy_all(instances)
    raw("footprint.log", "\n".join(log) + "\n")
    return samples
