"""Limit accuracy: each limit requested through InstanceSpec against what the instance achieved.

Every platform enforces the same InstanceSpec with its own mechanism (cgroup quota, blkio/io throttle
and tc for the container; vcpu quota, QEMU iotune and tc on the tap for the VM); this scenario asks
for a limit and measures, from inside, what the workload got:
  cpu quota       sysbench cpu, 1 thread, under the quota ÷ the same on an unlimited reference
                  instance of the platform (1 cpu): the cpus achieved
  cpuset          sysbench with 2 threads pinned to the cpuset ÷ 1 thread on the reference: cpus achieved
  disk bandwidth  fio direct sequential 1 MiB reads/writes (and 4 KiB random reads for an IOPS cap),
                  the settled rate from fio's bandwidth log
  network         iperf3 from the instance to the suite's peer (bridge mode), settled received rate
  memory          a perl loop allocating 4 MiB blocks until something stops it: what it held when the
                  OOM killer (the container's cgroup, or the guest kernel) ended it; a guest's own
                  kernel lives inside its memory, so a VM gives the workload less than the limit
  disk quota      dd writes 1 MiB blocks (fsync at the end) into the instance's copy-on-write root up
                  to 4x the quota: the bytes on disk when a write failed (ENOSPC or EDQUOT); all 4x
                  written is "not enforced". Its own instance (full profile only: a VM boot)
Samples per case (variant: `limit`, `requested`): `limit_achieved_ratio` (achieved ÷ requested, 1 is
exact; the report shows the error in %), `limit_achieved_<unit>` in the request's unit, `limit_settle_s` (an
upper bound at the tool's reporting resolution: when the rate entered ±15 % of its settled value and
stayed), and `limit_enforced` (yes/no). A limit the platform does not enforce (InstanceSpec limits it
reports in `ignored_limits()`) is recorded as not enforced with the reason and is never measured as
if it were unlimited; the memory hog never runs where memory is not limited.
Instances: one unlimited reference (cpu), then round k gets the k-th value of every list in the
profile (one instance holds a cpu quota, a disk cap and a bandwidth cap at once; they are independent
mechanisms); the memory case runs last in round 0, since it ends with an OOM kill.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import SpecError
from runtime.platform import Instance, Platform
from runtime.spec import InstanceSpec
from scenarios import hostmetrics
from scenarios.base import DAY_S, Range, RawSink, Sample, ScenarioError, check, require_tools
from scenarios.parsers import ParseError, series, sysbench

NAME = "isolation_limits"
DESCRIPTION = "limit accuracy: cpu quota, cpuset, disk and network caps, memory limit: requested vs achieved"
TOOLS = ("sysbench", "fio", "iperf3", "perl")
MIB = 2**20
_KEYS = ("limit", "requested")
#: what was achieved, in the request's unit: one metric per unit (the sanity layer checks each unit)
ACHIEVED_METRICS = {"cpus": "limit_achieved_cpus", "MiB/s": "limit_achieved_mib_s", "IOPS": "limit_achieved_iops",
                    "Mbit/s": "limit_achieved_mbit_s", "MiB": "limit_achieved_mib"}
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "limit_achieved_ratio": ("ratio", _KEYS),
    **{metric: (unit, _KEYS) for unit, metric in ACHIEVED_METRICS.items()},
    "limit_settle_s": ("s", _KEYS),
    "limit_enforced": ("yes/no", _KEYS),
}
RANGES: dict[str, Range] = {
    # achieved ÷ requested: 100x the request is a broken measurement, not a loose limit
    "limit_achieved_ratio": Range("none", 100.0, "100 times the requested limit"),
    **{metric: Range("none") for metric in ACHIEVED_METRICS.values()},
    "limit_settle_s": Range("lower", DAY_S, "a day"),
    "limit_enforced": Range("none", 1.0, "an answer: 0 not enforced, 1 enforced", zero_ok=True),
}
PRECISION_METRICS = ("limit_achieved_ratio",)
#: The quick profile runs 2 repetitions, not the harness's 3, and does not extend: on this 2-core host the
#: emulated VM's share of this scenario alone takes minutes (docs/benchmarks.md), and the quick profile must
#: fit 25 minutes. Its intervals then carry their real level (the median's [min, max] at n = 2: 50 %);
#: the full profile runs 10.
REPETITIONS = {"quick": 2}
MAX_REPETITIONS = {"quick": 2}

PROFILES: dict[str, dict[str, object]] = {
    "quick": {"cpu_quota": [0.5], "cpuset": None, "memory_mib": 256, "disk_read_mib_s": [10],
              "disk_write_mib_s": [], "disk_read_iops": [], "bandwidth_mbit": [50], "seconds": 4,
              "fio_file_mib": 32},
    "full": {"cpu_quota": [0.25, 0.5, 0.75], "cpuset": "0", "memory_mib": 256, "disk_read_mib_s": [10, 50],
             "disk_write_mib_s": [10, 50], "disk_read_iops": [500], "bandwidth_mbit": [50, 200], "seconds": 10,
             "fio_file_mib": 64, "disk_quota_mib": 64},
}
LIST_KEYS = ("cpu_quota", "disk_read_mib_s", "disk_write_mib_s", "disk_read_iops", "bandwidth_mbit")
HOG = ('$|=1; my @a; my $cap = shift; for my $i (1..$cap/4) { push @a, "\\1" x (4<<20); print 4*$i, "\\n" } '
       'print "cap\\n"')


def validate(params: dict[str, object]) -> None:
    """One clear error for limits that cannot be asked of this host (zero, negative, beyond the host)."""
    host_cpus = os.cpu_count() or 1
    host_mib = hostmetrics.meminfo_bytes("MemTotal") // MIB
    for quota in params.get("cpu_quota") or []:  # type: ignore[attr-defined]
        if not 0 < float(quota) <= host_cpus:
            raise SpecError(f"isolation_limits: cpu quota {quota} must be above 0 and at most the host's "
                            f"{host_cpus} cpus")
    memory = params.get("memory_mib")
    if memory is not None and not 0 < int(memory) < host_mib:  # type: ignore[call-overload]
        raise SpecError(f"isolation_limits: memory limit {memory} MiB must be above 0 and below the host's "
                        f"{host_mib} MiB")
    for key in LIST_KEYS[1:]:
        for value in params.get(key) or []:  # type: ignore[attr-defined]
            if not float(value) > 0:
                raise SpecError(f"isolation_limits: {key} {value} must be greater than zero")
    quota = params.get("disk_quota_mib")
    if quota is not None and not float(quota) > 0:  # type: ignore[arg-type]
        raise SpecError(f"isolation_limits: disk_quota_mib {quota} must be greater than zero")
    if int(params.get("seconds") or 0) < 2:  # type: ignore[call-overload]
        raise SpecError("isolation_limits: seconds must be at least 2 (a settled rate needs intervals)")


@dataclass
class Case:
    """One requested limit and what became of it."""

    limit: str  # cpu_quota, cpuset, disk_read_bps, disk_write_bps, disk_read_iops, bandwidth, memory, disk_quota
    requested: float
    unit: str
    spec_field: str
    achieved: float | None = None
    settle_s: float | None = None
    enforced: bool = True
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.requested:g} {self.unit}"

    def samples(self) -> list[Sample]:
        meta = {"limit": self.limit, "requested": self.label}
        out = [Sample("limit_enforced", 1.0 if self.enforced else 0.0, "yes/no", meta)]
        if self.enforced and self.achieved is not None:
            out.append(Sample("limit_achieved_ratio", self.achieved / self.requested, "ratio", meta))
            out.append(Sample(ACHIEVED_METRICS[self.unit], self.achieved, self.unit, meta))
        if self.enforced and self.settle_s is not None:
            out.append(Sample("limit_settle_s", self.settle_s, "s", meta))
        return out

    def record(self) -> dict[str, object]:
        return {"limit": self.limit, "requested": self.label, "enforced": self.enforced, "achieved": self.achieved,
                "unit": self.unit, "settle_s": self.settle_s, "note": self.note, **self.detail}


def _round_specs(params: dict[str, object]) -> list[tuple[InstanceSpec, list[Case]]]:
    rounds = max((len(params.get(k) or []) for k in LIST_KEYS), default=0)  # type: ignore[arg-type]
    plans: list[tuple[InstanceSpec, list[Case]]] = []
    for k in range(max(rounds, 1)):
        def pick(key: str, k: int = k) -> float | None:
            values = params.get(key) or []
            return float(values[k]) if k < len(values) else None  # type: ignore[index, arg-type]

        fields: dict[str, Any] = {}
        cases: list[Case] = []
        if (quota := pick("cpu_quota")) is not None:
            fields["cpus"] = quota
            cases.append(Case("cpu_quota", quota, "cpus", "cpus"))
        for key, limit, spec_field, unit, scale in (
                ("disk_read_mib_s", "disk_read_bps", "io_read_bps", "MiB/s", MIB),
                ("disk_write_mib_s", "disk_write_bps", "io_write_bps", "MiB/s", MIB),
                ("disk_read_iops", "disk_read_iops", "io_read_iops", "IOPS", 1)):
            if (value := pick(key)) is not None:
                fields[spec_field] = int(value * scale)
                cases.append(Case(limit, value, unit, spec_field))
        if (mbit := pick("bandwidth_mbit")) is not None:
            fields["bandwidth"] = int(mbit * 1e6)
            fields["network"] = "bridge"
            cases.append(Case("bandwidth", mbit, "Mbit/s", "bandwidth"))
        if k == 0 and params.get("memory_mib"):
            fields["memory"] = int(params["memory_mib"]) * MIB  # type: ignore[call-overload]
            cases.append(Case("memory", float(params["memory_mib"]), "MiB", "memory"))  # type: ignore[arg-type]
        if cases:
            plans.append((InstanceSpec(**fields), cases))
    if params.get("disk_quota_mib"):
        quota = float(params["disk_quota_mib"])  # type: ignore[arg-type]
        plans.append((InstanceSpec(disk_quota=int(quota * MIB)), [Case("disk_quota", quota, "MiB", "disk_quota")]))
    if params.get("cpuset"):
        cpuset = str(params["cpuset"])
        from runtime.spec import parse_cpuset

        plans.append((InstanceSpec(cpuset=cpuset),
                      [Case("cpuset", float(len(parse_cpuset(cpuset))), "cpus", "cpuset", detail={"cpuset": cpuset})]))
    return plans


def _sysbench_eps(instance: Instance, threads: int, seconds: int, raw: RawSink,
                  name: str) -> tuple[float, float | None]:
    """(settled events/s, settle time in s) of sysbench cpu with `threads` threads."""
    result = check(instance.exec(["sysbench", "cpu", f"--threads={threads}", f"--time={seconds}",
                                  "--report-interval=1", "run"], timeout=seconds * 10 + 60), instance)
    raw(f"sysbench-{name}.txt", result.stdout)
    try:
        rates = series.sysbench_intervals(result.stdout)
        total = sysbench.parse(result.stdout)["events_per_second"]
        return total, series.settle_time(rates)
    except (ParseError, KeyError) as exc:
        raise ScenarioError(f"isolation_limits: sysbench {name}: {exc}") from exc


def _fio_rate(instance: Instance, case: Case, params: dict[str, object], raw: RawSink) -> None:
    seconds = int(params["seconds"])  # type: ignore[call-overload]
    rw, bs = {"disk_read_bps": ("read", "1M"), "disk_write_bps": ("write", "1M"),
              "disk_read_iops": ("randread", "4k")}[case.limit]
    scratch = instance.scratch_dir
    name = f"islcap-{case.limit}"
    argv = ["fio", f"--name={name}", f"--filename={scratch}/{name}.dat", f"--rw={rw}", f"--bs={bs}", "--direct=1",
            "--ioengine=psync", f"--size={int(params['fio_file_mib'])}M", f"--runtime={seconds}", "--time_based",
            f"--write_bw_log={scratch}/{name}", f"--write_iops_log={scratch}/{name}", "--log_avg_msec=500",
            "--output-format=json"]
    result = check(instance.exec(argv, timeout=seconds * 20 + 300), instance)
    raw(f"fio-{case.limit}.json", result.stdout)
    kind = "iops" if case.limit.endswith("iops") else "bw"
    log = check(instance.exec(["cat", f"{scratch}/{name}_{kind}.1.log"], timeout=60), instance).stdout
    raw(f"fio-{case.limit}-{kind}.log", log)
    instance.exec(["sh", "-c", f"rm -f {scratch}/{name}*"], timeout=60)
    try:
        if kind == "bw":
            rates = series.fio_bw_log(log)
            case.achieved = series.steady_rate(rates) / MIB
        else:
            rates = [(t, v / 1024.0) for t, v in series.fio_bw_log(log)]  # the iops log holds IOPS, not KiB/s
            case.achieved = series.steady_rate(rates)
        case.settle_s = series.settle_time(rates)
    except ParseError as exc:
        raise ScenarioError(f"isolation_limits: fio {case.limit}: {exc}") from exc


def _memory(instance: Instance, case: Case, raw: RawSink) -> None:
    cap_mib = int(case.requested * 4)  # the hog stops by itself at 4x the limit (never unbounded)
    result = instance.exec(["perl", "-e", HOG, str(cap_mib)], timeout=300)
    raw("memory-hog.txt", f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    lines = [line for line in result.stdout.split() if line.isdigit()]
    held = float(lines[-1]) if lines else 0.0
    if "cap" in result.stdout.split():
        case.enforced = False
        case.note = f"allocated {cap_mib} MiB, 4x the limit, without being stopped"
        return
    if not lines:
        raise ScenarioError(f"isolation_limits: the memory hog printed nothing (exit {result.returncode}: "
                            f"{result.stderr_tail()})")
    case.achieved = held
    case.note = (f"killed at {held:g} MiB held (exit {result.returncode}: the OOM killer ended it)"
                 if result.returncode in (137, -9) else f"stopped at {held:g} MiB (exit {result.returncode})")


def _disk_quota(instance: Instance, case: Case, raw: RawSink) -> None:
    """Write 1 MiB blocks into the copy-on-write root up to 4x the quota; the bytes on disk when it failed."""
    path = f"{instance.scratch_dir}/islquota.dat"
    count = int(case.requested * 4)
    result = instance.exec(["sh", "-c", f"dd if=/dev/zero of={path} bs=1M count={count} conv=fsync 2>&1; "
                                        f"echo status=$?; stat -c size=%s {path}; rm -f {path}"], timeout=600)
    raw("disk-quota-dd.txt", f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    fields = dict(line.split("=", 1) for line in result.stdout.splitlines() if line.startswith(("status=", "size=")))
    if "size" not in fields or not fields["size"].isdigit():
        raise ScenarioError(f"isolation_limits: the disk quota writer reported no size: {result.stdout[-300:]!r}")
    written = int(fields["size"]) / MIB
    if fields.get("status") == "0":
        case.enforced = False
        case.note = f"wrote {written:g} MiB, 4x the quota, without an error"
        return
    out = result.stdout.lower()
    if "no space left" not in out and "quota exceeded" not in out:
        raise ScenarioError(f"isolation_limits: the disk quota writer failed otherwise: {result.stdout[-300:]!r}")
    case.achieved = written
    case.note = f"{'ENOSPC' if 'no space left' in out else 'EDQUOT'} after {written:g} MiB"


def _network(instance: Instance, case: Case, params: dict[str, object], raw: RawSink, peer: Any) -> None:
    from scenarios import network

    seconds = int(params["seconds"])  # type: ignore[call-overload]
    port = int(network.PROFILES["quick"]["iperf3_port"])  # type: ignore[call-overload]
    result = instance.exec(["iperf3", "-c", peer.address, "-p", str(port), "-t", str(seconds), "-J",
                            "--connect-timeout", "10000"], timeout=seconds * 10 + 120)
    raw(f"iperf3-{case.label.replace(' ', '').replace('/', '_')}.json", result.stdout + result.stderr)
    try:
        rates = series.iperf3_intervals(result.stdout + result.stderr)
    except ParseError as exc:
        raise ScenarioError(f"isolation_limits: iperf3 under a {case.label} cap: {exc}") from exc
    case.achieved = series.steady_rate(rates) / 1e6
    case.settle_s = series.settle_time(rates)


@contextmanager
def _peer_with_server(needed: bool) -> Iterator[Any]:
    if not needed:
        yield None
        return
    from scenarios import network

    with network._peer() as (peer, _bridge):  # the suite's own peer namespace on its isolated bridge
        port = int(network.PROFILES["quick"]["iperf3_port"])  # type: ignore[call-overload]
        network._start_server(peer, ["iperf3", "-s", "-p", str(port)], port, 20)
        yield peer


def _cpu_interleaved(instance: Instance, ref: Instance, threads: int, params: dict[str, object], raw: RawSink,
                     name: str) -> tuple[float, float, float | None]:
    """(achieved cpus, events/s under the limit, settle s): bursts alternate between the limited instance
    (`threads` threads) and the unlimited reference (1 thread), so host drift hits both alike."""
    seconds = int(params["seconds"])  # type: ignore[call-overload]
    burst = max(2, seconds // 2)
    limited: list[float] = []
    unlimited: list[float] = []
    settle = None
    for i in range(2):
        eps, settled = _sysbench_eps(instance, threads, burst, raw, f"{name}-burst{i + 1}")
        limited.append(eps)
        settle = settled if i == 0 else settle
        unlimited.append(_sysbench_eps(ref, 1, burst, raw, f"{name}-reference-burst{i + 1}")[0])
    return sum(limited) / sum(unlimited), sum(limited) / len(limited), settle


def run_platform(platform: Platform, params: dict[str, object], raw: RawSink) -> list[Sample]:
    try:
        validate(params)
    except SpecError as exc:
        raise ScenarioError(str(exc)) from exc
    plans = _round_specs(params)
    cases: list[Case] = []
    wants_net = any(c.limit == "bandwidth" for _, cs in plans for c in cs)
    net_ok = "bridge" in platform.network_modes
    with ExitStack() as stack:
        peer = stack.enter_context(_peer_with_server(wants_net and net_ok))
        ref: Instance | None = None
        for spec, round_cases in plans:
            if spec.network == "bridge" and not net_ok:
                spec = InstanceSpec(**{**spec.to_dict(), "network": "none"})
            began = time.monotonic()
            with platform.create(spec) as instance:
                ignored = instance.ignored_limits()
                require_tools(instance, TOOLS)
                for case in sorted(round_cases, key=lambda c: c.limit == "memory"):  # memory last: OOM
                    cases.append(case)
                    if case.spec_field in ignored or (case.limit == "bandwidth" and not net_ok):
                        case.enforced = False
                        case.note = (f"{platform.name} does not enforce {case.spec_field}" if case.spec_field in ignored
                                     else f"{platform.name} has no bridge network to cap")
                        continue
                    if case.limit in ("cpu_quota", "cpuset"):
                        if ref is None:  # an unlimited reference instance of the same platform, kept to the end
                            ref = stack.enter_context(platform.create(InstanceSpec()))
                        threads = 2 if case.limit == "cpuset" else 1
                        case.achieved, eps, case.settle_s = _cpu_interleaved(instance, ref, threads, params, raw,
                                                                             f"{case.limit}-{case.requested:g}")
                        case.detail = {"events_per_s": eps, "threads": threads}
                    elif case.limit.startswith("disk_"):
                        _fio_rate(instance, case, params, raw)
                    elif case.limit == "bandwidth":
                        _network(instance, case, params, raw, peer)
                    elif case.limit == "memory":
                        _memory(instance, case, raw)
                    elif case.limit == "disk_quota":
                        _disk_quota(instance, case, raw)
            raw(f"round-{len(cases)}.log",
                f"instance with {spec.limits()} measured in {time.monotonic() - began:.1f} s\n")
    raw("limits.json", json.dumps([c.record() for c in cases], indent=1))
    samples = [s for c in cases for s in c.samples()]
    bad = [s for s in samples if not math.isfinite(s.value) or s.value < 0]
    if bad:
        raise ScenarioError(f"isolation_limits: implausible figures {[(s.metric, s.value) for s in bad]}")
    return samples
