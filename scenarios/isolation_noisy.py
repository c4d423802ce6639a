"""Noisy neighbour (the Isolation Benchmark Suite's method, Matthews et al. 2007): how much a misbehaving
instance degrades a well-behaved one on the same platform, and whether the misbehaviour reaches the host.

Per repetition and setting, `instances` instances of the platform (2 by default): `instances` − 1
*victims* (well-behaved, no limits) and one *aggressor* (misbehaving). The first victim runs each of its
fixed workloads (`workloads`) first with the aggressor idle (stressor `none`), then while the aggressor
runs each stressor (`stressors`). Every victim figure is a sample (metadata `setting`, `stressor`); the
report turns alone vs contended into a degradation in % with an interval at its real level
(reporting.noisy, bench.stats.ratio). The instance is the unit of repetition: every instance is created
and destroyed in every repetition.

Victim workloads: `cpu` sysbench cpu, 1 thread (events/s); `memory` sysbench memory sequential read,
1 thread (MiB/s); `disk` fio 4 KiB random read, O_DIRECT, queue depth 8 (IOPS); `network` netperf
TCP_RR mean latency (µs) against a peer namespace on the suite's bridge (scenarios.network's peer);
`web` (the Isolation Benchmark Suite's load, scenarios.webload): *every* instance, the aggressor too,
serves a static page (busybox httpd) on the suite's bridge (its own address there, or in host mode the
bridge's host address, port `web_port` + its index), and a client on the host requests each page at
`web_rate` per second for `seconds`; figure: the fraction of good responses (200, whole page, within
`web_deadline_s`), one sample per role (metadata `role`: `well-behaved`, the victims pooled, and
`misbehaving`, the aggressor). No good response with no stressor fails the repetition; none beside a
stressor is no figure (noisy.json `not_kept` says why). The servers are (re)started before each phase.
Stressors, in the aggressor: `cpu` stress-ng --cpu on every cpu it has; `memory` stress-ng --vm
allocating and touching `memory_stress_mib` (more than the limited setting's memory limit, so the limit
is reached); `forkbomb` a shell fork bomb (`f() { f | f & }; f`); `disk` fio sequential 1 MiB direct
writes; `net_send` / `net_recv` iperf3 with 4 streams to / from the peer. The fork bomb runs last and
ends with the aggressor's destruction (nothing short of that stops a fork bomb).

Settings: `limited`: the aggressor gets the same InstanceSpec on every platform (`limits`: cpu quota,
memory, pids, disk read/write throttle, bandwidth cap). `unlimited`: no cpu, disk or network limit; only
the safety bounds (`safety`: memory and pids) that keep the memory and fork-bomb stressors off the host.

Safety. The memory and fork-bomb stressors run only where they are bounded, decided from what the
aggressor enforces (`instance.ignored_limits()`) and whether it runs its own kernel (neither its boot id
nor its boot time is the host's: scenarios.kernelid), never from the platform's name: the memory stressor
needs an enforced memory limit; the fork bomb an enforced pids limit, or its own kernel with an enforced
memory limit (a guest). Elsewhere
(native: every limit ignored, the host's kernel) they are skipped with the reason in `noisy.json`.
A watchdog on the host destroys the aggressor `watchdog_s` after a stressor started if it is still
running. A host heartbeat (scenarios.heartbeat: a 10 ms sleep loop in a host process) runs during every
stressor; its p99 and max lateness (ms) are samples.

Profiles. `full`: every workload, every stressor, both settings (10 s measurements). `quick` (CI, inside
the quick profile's 25 min budget on a 2-core host with the VM under TCG): victim cpu only, stressors
memory and fork bomb only (the two that must be shown not to reach the host; each stressor phase costs
15-35 s in a TCG guest on a loaded host), the limited setting only (the one comparable across platforms),
2 s measurements. Native skips both bombs, so its quick figures are the victim alone and the heartbeat.
Its wall time per platform is in docs/benchmarks.md.

Traffic goes only to the peer on the suite's bridge (checked by scenarios.network's peer).
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from runtime.errors import IsolabError, SpecError
from runtime.platform import Instance, Platform
from runtime.spec import ExecResult, InstanceSpec, parse_rate, parse_size
from scenarios import heartbeat, kernelid, webload
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
from scenarios.parsers import ParseError, fio, netperf, sysbench

NAME = "isolation_noisy"
DESCRIPTION = ("noisy neighbour: victim cpu/memory/disk/network degradation beside an aggressor running cpu, "
               "memory, fork-bomb, disk and network stressors, unlimited and limited; host heartbeat lateness")
TOOLS = ("sysbench", "stress-ng", "fio", "netperf", "iperf3", "timeout", "cat", "kill", "pgrep", "sh", "busybox")
_KEYS = ("setting", "stressor")
#: workload -> (metric, unit, higher is better); the report reads this to orient the degradation.
VICTIM: dict[str, tuple[str, str, bool]] = {
    "cpu": ("victim_cpu_events_per_s", "events/s", True),
    "memory": ("victim_memory_bandwidth", "MiB/s", True),
    "disk": ("victim_disk_randread_iops", "IOPS", True),
    "network": ("victim_rr_latency_mean", "µs", False),
    "web": ("web_good_fraction", "fraction of responses", True),
}
ROLES = ("well-behaved", "misbehaving")  # the web figure's `role`: the victims pooled, and the aggressor
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "victim_cpu_events_per_s": ("events/s", _KEYS),
    "victim_memory_bandwidth": ("MiB/s", _KEYS),
    "victim_disk_randread_iops": ("IOPS", _KEYS),
    "victim_rr_latency_mean": ("µs", _KEYS),
    "web_good_fraction": ("fraction of responses", (*_KEYS, "role")),
    "heartbeat_lateness_p99": ("ms", _KEYS),
    "heartbeat_lateness_max": ("ms", _KEYS),
}
#: Plausible values (bench.sanity), the same bounds as the cpu, memory, disk and network scenarios'.
_LATE = Range("lower", DAY_S * 1e3, "a day", zero_ok=True)  # a wake-up on time is 0 ms late (clamped at 0)
RANGES: dict[str, Range] = {
    "victim_cpu_events_per_s": Range("higher", 1e10, "more per second than the CPU has cycles (10^10/s)"),
    "victim_memory_bandwidth": Range("higher", MEMORY_BUS_MB_S * 1e6 / 2**20, MEMORY_BUS_WHY),
    "victim_disk_randread_iops": Range("higher", 1e8, "100 M IOPS: above any host's storage stack"),
    "victim_rr_latency_mean": Range("lower", DAY_S * 1e6, "a day"),
    "web_good_fraction": Range("higher", 1.0, "a fraction of the responses sent"),
    "heartbeat_lateness_p99": _LATE,
    "heartbeat_lateness_max": _LATE,
}
PRECISION_METRICS = ("victim_cpu_events_per_s", "victim_memory_bandwidth", "victim_disk_randread_iops")
#: The quick profile runs 2 repetitions, not the harness's 3, and does not extend: on this 2-core host the
#: emulated VM's share of this scenario alone takes minutes (docs/benchmarks.md), and the quick profile must
#: fit 25 minutes. Its intervals then carry their real level (the median's [min, max] at n = 2: 50 %);
#: the full profile runs 10.
REPETITIONS = {"quick": 2}
MAX_REPETITIONS = {"quick": 2}

WORKLOADS = tuple(VICTIM)
STRESSORS = ("cpu", "memory", "forkbomb", "disk", "net_send", "net_recv")
SETTINGS = ("unlimited", "limited")
ALONE = "none"  # the stressor value of the victim's solo measurement
EVIDENCE_FILE = "noisy.json"
FIO_FILE = "isolab-noisy-victim.dat"
AGGRESSOR_FILE = "isolab-noisy-aggressor.dat"
PIDFILE = "/tmp/isolab-noisy-stressor.pid"
# The stressor's process tree (by parent links, collected before anything dies) and its process group.
KILL_STRESSOR = (f"p=$(cat {PIDFILE}); t() {{ echo $1; for c in $(pgrep -P $1); do t $c; done; }}; "
                 "kill -KILL -$p $(t $p) 2>/dev/null")
STOP_GRACE_S = 90.0  # after SIGKILL, how long the stressor's exec may take to return before the aggressor goes
NET_MODES = ("bridge", "host")  # the peer is reachable from these (host: bound to the bridge's host address)
HEARTBEAT_P99_LIMIT_MS = 100.0  # done-when of issue 10: the host keeps its 10 ms beat during the bombs

_LIMITS = {"cpus": 0.5, "memory_mib": 512, "pids_max": 128, "io_read_bps": "20M", "io_write_bps": "20M",
           "bandwidth": "100mbit"}
_SAFETY = {"memory_mib": 2048, "pids_max": 1024}
_WEB = {"instances": 2, "web_rate": 10, "web_deadline_s": 1.0, "web_page_kib": 16, "web_port": 18080}
PROFILES: dict[str, dict[str, object]] = {
    "quick": {"workloads": ["cpu"], "stressors": ["memory", "forkbomb"], "settings": ["limited"],
              "seconds": 2, "settle_s": 0.5, "watchdog_s": 180, "memory_stress_mib": 768,
              "limits": _LIMITS, "safety": _SAFETY, "fio_file_mib": 64, "iperf3_port": 5201,
              "netperf_port": 12865, "netperf_data_port": 12866, "server_wait_s": 20, **_WEB},
    "full": {"workloads": list(WORKLOADS), "stressors": list(STRESSORS), "settings": list(SETTINGS),
             "seconds": 10, "settle_s": 2, "watchdog_s": 600, "memory_stress_mib": 768,
             "limits": _LIMITS, "safety": _SAFETY, "fio_file_mib": 256, "iperf3_port": 5201,
             "netperf_port": 12865, "netperf_data_port": 12866, "server_wait_s": 20, **_WEB},
}


@dataclass(frozen=True)
class Plan:
    """Validated parameters."""

    workloads: tuple[str, ...]
    stressors: tuple[str, ...]  # in run order: the fork bomb last (it ends with the aggressor's destruction)
    settings: tuple[str, ...]
    seconds: int
    settle_s: float
    watchdog_s: float
    memory_stress_mib: int
    limited: InstanceSpec
    safety: InstanceSpec
    fio_file_mib: int
    ports: tuple[int, int, int]  # iperf3, netserver, netperf data
    server_wait_s: float
    instances: int = 2  # in all: instances − 1 well-behaved (victims), 1 misbehaving (the aggressor)
    web_rate: float = 10.0  # requests per second to each instance
    web_deadline_s: float = 1.0
    web_page_bytes: int = 16384
    web_port: int = 18080  # instance i listens on web_port + i

    @property
    def networked(self) -> bool:
        return bool({"network", "web"} & set(self.workloads)) or bool({"net_send", "net_recv"} & set(self.stressors))

    def aggressor_spec(self, setting: str, network: str) -> InstanceSpec:
        base = self.limited if setting == "limited" else self.safety
        return InstanceSpec(**{**base.to_dict(), "network": network})


def _names(params: dict[str, object], key: str, allowed: tuple[str, ...], problems: list[str]) -> tuple[str, ...]:
    value = params.get(key)
    if not isinstance(value, (list, tuple)) or not value:
        problems.append(f"{key} must be a non-empty list (from {', '.join(allowed)})")
        return ()
    unknown = [str(v) for v in value if v not in allowed]
    if unknown:
        problems.append(f"unknown {key} {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return tuple(v for v in allowed if v in value)


def _number(params: dict[str, object], key: str, problems: list[str], integer: bool = False) -> float:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or (
            integer and int(value) != value):
        problems.append(f"{key} must be a {'whole ' if integer else ''}number greater than zero, got {value!r}")
        return 1
    return value


def _spec(values: object, what: str, problems: list[str]) -> InstanceSpec:
    if not isinstance(values, dict):
        problems.append(f"{what} must be a mapping of limits")
        return InstanceSpec()
    allowed = {"cpus", "cpuset", "memory_mib", "pids_max", "io_read_bps", "io_write_bps", "io_read_iops",
               "io_write_iops", "bandwidth"}
    unknown = sorted(set(values) - allowed)
    if unknown:
        problems.append(f"{what}: unknown limits {', '.join(unknown)} (choose from {', '.join(sorted(allowed))})")
        return InstanceSpec()
    try:
        fields: dict[str, Any] = {}
        for key, value in values.items():
            if key == "memory_mib":
                fields["memory"] = parse_size(f"{value}M", f"{what} memory_mib")
            elif key in ("io_read_bps", "io_write_bps"):
                fields[key] = parse_size(value, f"{what} {key}")
            elif key == "bandwidth":
                fields[key] = parse_rate(value, f"{what} bandwidth")
            elif key == "cpus":
                fields[key] = float(value)
            elif key == "cpuset":
                fields[key] = str(value)
            else:
                fields[key] = int(value)
        return InstanceSpec(**fields)
    except (SpecError, TypeError, ValueError) as exc:
        problems.append(f"{what}: {exc}")
        return InstanceSpec()


def plan(params: dict[str, object]) -> Plan:
    """Check every parameter; all problems at once in one ScenarioError."""
    problems: list[str] = []
    workloads = _names(params, "workloads", WORKLOADS, problems)
    stressors = _names(params, "stressors", STRESSORS, problems)
    settings = _names(params, "settings", SETTINGS, problems)
    seconds = int(_number(params, "seconds", problems, integer=True))
    settle = float(_number(params, "settle_s", problems))
    watchdog = float(_number(params, "watchdog_s", problems))
    memory_stress = int(_number(params, "memory_stress_mib", problems, integer=True))
    fio_mib = int(_number(params, "fio_file_mib", problems, integer=True))
    ports = tuple(int(_number(params, k, problems, integer=True))
                  for k in ("iperf3_port", "netperf_port", "netperf_data_port"))
    wait = float(_number(params, "server_wait_s", problems))
    instances = int(_number(params, "instances", problems, integer=True))
    web_rate = float(_number(params, "web_rate", problems))
    web_deadline = float(_number(params, "web_deadline_s", problems))
    web_page = int(_number(params, "web_page_kib", problems, integer=True))
    web_port = int(_number(params, "web_port", problems, integer=True))
    limited = _spec(params.get("limits"), "limits", problems)
    safety = _spec(params.get("safety"), "safety", problems)
    if not problems:
        if watchdog <= settle + seconds * len(workloads):
            problems.append(f"watchdog_s ({watchdog:g}) must exceed the stressor's planned run "
                            f"(settle_s + seconds × workloads = {settle + seconds * len(workloads):g} s)")
        for name, spec in (("limits", limited), ("safety", safety)):
            if spec.memory is None or spec.pids_max is None:
                problems.append(f"{name} must set memory_mib and pids_max (they bound the memory and "
                                "fork-bomb stressors)")
        if limited.memory and memory_stress * 2**20 <= limited.memory:
            problems.append(f"memory_stress_mib ({memory_stress}) must exceed limits.memory_mib "
                            f"({limited.memory // 2**20}) so that the limited aggressor reaches its limit")
        if any(not 0 < p < 65536 for p in ports):
            problems.append(f"ports must lie in 1..65535, got {ports}")
        if instances < 2:
            problems.append(f"instances must be at least 2 (well-behaved ones and one misbehaving), got {instances}")
        if not 0 < web_port <= 65536 - instances:
            problems.append(f"web_port + instances must lie in 1..65535, got {web_port} + {instances}")
    if problems:
        raise ScenarioError(f"{NAME}: bad parameters: " + "; ".join(problems))
    order = tuple(s for s in stressors if s != "forkbomb") + (("forkbomb",) if "forkbomb" in stressors else ())
    return Plan(workloads, order, settings, seconds, settle, watchdog, memory_stress, limited, safety, fio_mib,
                (ports[0], ports[1], ports[2]), wait, instances, web_rate, web_deadline, web_page * 1024, web_port)


# -- safety ----------------------------------------------------------------------------------------------

def unbounded_reason(stressor: str, spec: InstanceSpec, ignored: dict[str, object], own_kernel: bool) -> str:
    """Why `stressor` must not run in this aggressor ('' when it is bounded)."""
    def enforced(limit: str) -> bool:
        return limit in spec.limits() and limit not in ignored

    if stressor == "memory" and not enforced("memory"):
        return ("the memory stressor needs an enforced memory limit, and this aggressor's memory limit is "
                f"{'ignored' if 'memory' in ignored else 'not set'} (instance.ignored_limits(): "
                f"{', '.join(sorted(ignored)) or 'none'}): it would allocate on the host")
    if stressor == "forkbomb" and not enforced("pids_max") and not (own_kernel and enforced("memory")):
        return ("a fork bomb needs an enforced pids limit, or its own kernel with an enforced memory limit; this "
                f"aggressor ignores {', '.join(sorted(ignored)) or 'nothing'} and "
                f"{'runs its own kernel' if own_kernel else 'shares the host kernel (same boot id or boot time)'}: "
                "it would fill the host's process table")
    return ""


def _own_kernel(instance: Instance) -> bool:
    """True when the instance runs a kernel of its own (a guest): neither its boot id nor its boot time
    is the host's (scenarios.kernelid)."""
    inside = check(instance.exec(["sh", "-c", kernelid.COMMAND], timeout=60), instance).stdout
    return bool(inside.strip()) and not kernelid.shares_host_kernel(inside)


# -- victim workloads ------------------------------------------------------------------------------------

@dataclass
class _Net:
    """Where network traffic goes: the peer's address; in host mode bound to the bridge's host address."""

    peer: Any
    target: str
    bind: str | None
    gateway: str = ""  # the bridge's host address (where host-mode instances serve the web workload)
    subnet: str = ""  # the bridge's subnet: every web server's address must lie in it


def _victim_argv(workload: str, p: Plan, scratch: str, net: _Net | None) -> list[str]:
    s = str(p.seconds)
    if workload == "cpu":
        return ["sysbench", "cpu", "--threads=1", f"--time={s}", "--cpu-max-prime=10000", "run"]
    if workload == "memory":
        return ["sysbench", "memory", "--threads=1", f"--time={s}", "--memory-block-size=64M",
                "--memory-total-size=1000T", "--memory-access-mode=seq", "--memory-oper=read", "run"]
    if workload == "disk":
        return ["fio", "--name=victim", f"--filename={scratch}/{FIO_FILE}", f"--size={p.fio_file_mib}M",
                "--rw=randread", "--bs=4k", "--iodepth=8", "--ioengine=libaio", "--direct=1", "--time_based",
                f"--runtime={s}", "--numjobs=1", "--output-format=json"]
    assert net is not None
    argv = ["netperf", "-H", net.target, "-p", str(p.ports[1]), "-l", s, "-t", "TCP_RR"]
    if net.bind:
        argv += ["-L", net.bind]
    return [*argv, "--", "-P", f",{p.ports[2]}", "-o", "MEAN_LATENCY,TRANSACTION_RATE"]


def _victim_value(workload: str, result: ExecResult, seconds: float | None = None) -> float:
    """The victim's figure; a run shorter than `seconds` (stopped early) is a ParseError."""
    text = result.stdout + result.stderr
    if workload == "cpu":
        figures = sysbench.parse(text, seconds)
        if "events_per_second" not in figures:
            raise ParseError("sysbench cpu output has no 'events per second' line")
        return figures["events_per_second"]
    if workload == "memory":
        return sysbench.memory(text, seconds)["mib_per_second"]
    if workload == "disk":
        return fio.job(text, "victim", seconds).directions["read"].iops
    return float(netperf.parse(text, ("MEAN_LATENCY", "TRANSACTION_RATE"))["MEAN_LATENCY"])


def _measure_victim(victim: Instance, workload: str, p: Plan, net: _Net | None, raw: RawSink, tag: str) -> float:
    result = victim.exec(_victim_argv(workload, p, victim.scratch_dir, net), timeout=p.seconds * 10 + 120)
    raw(f"victim-{tag}-{workload}.txt", result.stdout + result.stderr)
    try:
        value = _victim_value(workload, result, float(p.seconds))
    except (ParseError, KeyError) as exc:
        raise ScenarioError(f"{NAME}: victim {workload} ({tag}) on {victim.platform}: {exc}") from exc
    check(result, victim)
    return value


# -- stressors -------------------------------------------------------------------------------------------

def stressor_command(stressor: str, p: Plan, scratch: str, net: _Net | None) -> str:
    """The shell command that runs `stressor` until stopped (at most watchdog_s, by `timeout`)."""
    t = int(p.watchdog_s)
    if stressor == "cpu":
        work = f"stress-ng --cpu 0 -t {t} --temp-path {scratch}"
    elif stressor == "memory":
        work = f"stress-ng --vm 2 --vm-bytes {p.memory_stress_mib // 2}M --vm-keep -t {t} --temp-path {scratch}"
    elif stressor == "disk":
        work = (f"fio --name=aggressor --filename={scratch}/{AGGRESSOR_FILE} --size=256M --rw=write --bs=1M "
                f"--iodepth=16 --ioengine=libaio --direct=1 --thread --time_based --runtime={t} --output-format=json")
    elif stressor in ("net_send", "net_recv"):
        assert net is not None
        work = f"iperf3 -c {net.target} -p {p.ports[0]} -t {t} -P 4 --connect-timeout 10000"
        if net.bind:
            work += f" -B {net.bind}"
        if stressor == "net_recv":
            work += " -R"
    elif stressor == "forkbomb":
        return f"echo $$ > {PIDFILE}; f() {{ f | f & }}; f; sleep {t}"
    else:
        raise ScenarioError(f"{NAME}: unknown stressor {stressor!r}")
    # sh execs into timeout: the pid file holds timeout's pid, which is also the process group of the work.
    return f"echo $$ > {PIDFILE}; exec timeout -s KILL {t + 5} {work}"


class _Aggressor:
    """The aggressor instance, its running stressor (a thread blocked in exec) and the host-side watchdog."""

    def __init__(self, instance: Instance, p: Plan, log: Callable[[str], None]) -> None:
        self.instance, self.p, self.log = instance, p, log
        self._lock = threading.Lock()
        self.destroyed = False
        self.watchdog_fired = False
        self.result: ExecResult | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._stopping = False

    def destroy(self) -> None:
        with self._lock:
            if self.destroyed:
                return
            self.destroyed = True
        self.instance.destroy()

    def _fire(self) -> None:
        self.watchdog_fired = True
        self.log(f"watchdog: the stressor still ran after {self.p.watchdog_s:g} s; destroying the aggressor")
        self.destroy()

    def start(self, stressor: str, net: _Net | None) -> None:
        command = stressor_command(stressor, self.p, self.instance.scratch_dir, net)
        self.result, self.error, self._stopping = None, None, False

        def body() -> None:
            try:
                self.result = self.instance.exec(["sh", "-c", command], timeout=self.p.watchdog_s + 30)
            except BaseException as exc:
                self.error = exc

        self._thread = threading.Thread(target=body, name=f"isolab-aggressor-{stressor}", daemon=True)
        self._timer = threading.Timer(self.p.watchdog_s, self._fire)
        self._timer.daemon = True
        self._thread.start()
        self._timer.start()

    def died_early(self) -> str:
        """Why the stressor ended before it was told to ('' while it runs)."""
        if self._thread is None or self._thread.is_alive() or self._stopping:
            return ""
        if self.error is not None:
            return f"{type(self.error).__name__}: {self.error}"
        r = self.result
        return f"exited {r.returncode} early: {r.stderr_tail() or r.stdout.strip()[-200:]}" if r else "ended early"

    def stop(self, stressor: str) -> str:
        """Stop the stressor (the fork bomb: destroy the aggressor); '' or why it failed."""
        early = self.died_early()
        self._stopping = True
        if stressor == "forkbomb":
            self.destroy()
        elif not self.destroyed:
            try:
                # SIGKILL to the stressor's whole tree (collected first, by parent links) and to timeout(1)'s
                # process group: some tools leave the group (fio's job processes call setsid), and a graceful
                # stop of stress-ng --vm under memory pressure in a TCG guest took 20-40 s.
                killed = self.instance.exec(["sh", "-c", KILL_STRESSOR], timeout=60)
                if killed.returncode not in (0, 1):  # 1: some process of the tree had already exited
                    self.log(f"stop {stressor}: kill exited {killed.returncode}: {killed.stderr_tail()}")
            except IsolabError as exc:
                self.log(f"stop {stressor}: {exc}; destroying the aggressor")
                self.destroy()
        if self._thread is not None:
            self._thread.join(timeout=STOP_GRACE_S)
        if self._timer is not None:
            self._timer.cancel()
        if self._thread is not None and self._thread.is_alive():
            self.destroy()
            self._thread.join(timeout=STOP_GRACE_S)
            return (f"the stressor did not end within {STOP_GRACE_S:g} s of SIGKILL; the aggressor was destroyed")
        return early


# -- one repetition --------------------------------------------------------------------------------------

def _prepare_victim(victim: Instance, p: Plan) -> None:
    if "disk" in p.workloads:
        result = victim.exec(["fio", "--name=layout", f"--filename={victim.scratch_dir}/{FIO_FILE}",
                              f"--size={p.fio_file_mib}M", "--rw=write", "--bs=1M", "--direct=1",
                              "--ioengine=libaio", "--iodepth=8", "--output-format=json"], timeout=1800)
        check(result, victim)


def _create_all(platform: Platform, specs: list[InstanceSpec]) -> list[Instance]:
    """Create every instance at once (a VM boot is mostly waiting). On any failure, Ctrl-C included, wait for
    the other creations to end (each platform bounds its own start) and destroy whatever did start."""
    pool = ThreadPoolExecutor(max_workers=len(specs), thread_name_prefix="isolab-noisy-create")
    futures = [pool.submit(platform.create, spec) for spec in specs]

    def destroy_started() -> None:
        for future in futures:
            if future.exception() is None:
                future.result().destroy()

    try:
        wait(futures)
    except BaseException:
        pool.shutdown(wait=True)
        destroy_started()
        raise
    pool.shutdown(wait=True)
    failed = [exc for exc in (f.exception() for f in futures) if exc is not None]
    if failed:
        destroy_started()
        raise failed[0]
    return [f.result() for f in futures]


def _create_pair(platform: Platform, victim: InstanceSpec, aggressor: InstanceSpec) -> tuple[Instance, Instance]:
    first, second = _create_all(platform, [victim, aggressor])
    return first, second


# -- the web workload ------------------------------------------------------------------------------------

def web_address(instance: Instance, mode: str, net: _Net) -> str:
    """Where the instance's web server listens: its own address on the suite bridge (bridge mode), or the
    bridge's host address (host mode: the instance shares the host's stack); checked to lie in the bridge."""
    address = net.gateway if mode == "host" else instance.address
    if not address or ipaddress.ip_address(address) not in ipaddress.ip_network(net.subnet):
        raise ScenarioError(f"{NAME}: the {instance.platform} instance's web address {address} is not on the "
                            f"suite bridge ({net.subnet}); refusing to send traffic")
    return address


def _start_web(instances: list[tuple[str, Instance, webload.Target]], p: Plan) -> None:
    """(Re)start each live instance's web server (a stressor may have killed it) and wait until it serves."""
    for _, instance, target in instances:
        command = webload.server_command(f"{instance.scratch_dir}/isolab-web", target.host, target.port,
                                         p.web_page_bytes)
        instance.exec(["sh", "-c", command], timeout=120)  # fails harmlessly when one still listens
    for _, _, target in instances:
        problem = webload.wait_ready(target, p.web_page_bytes, p.server_wait_s)
        if problem:
            raise ScenarioError(f"{NAME}: web server: {problem}")


def web_figures(tallies: dict[str, webload.Tally], roles: dict[str, str]) -> dict[str, webload.Tally]:
    """role -> the tally of its instances pooled (the well-behaved ones together, as the paper reports them)."""
    pooled: dict[str, webload.Tally] = {}
    for name, tally in tallies.items():
        role = roles[name]
        pooled[role] = pooled[role].merge(tally) if role in pooled else tally
    return {role: pooled[role] for role in ROLES if role in pooled}


def _setting(platform: Platform, setting: str, p: Plan, mode: str, net: _Net | None, raw: RawSink,
             log: Callable[[str], None], evidence: list[dict[str, object]]) -> list[Sample]:
    samples: list[Sample] = []
    spec = p.aggressor_spec(setting, mode)
    with ExitStack() as stack:
        created = _create_all(platform, [InstanceSpec(network=mode)] * (p.instances - 1) + [spec])
        victims = [stack.enter_context(instance) for instance in created[:-1]]
        victim = victims[0]  # the one that runs the workloads other than web
        aggressor = _Aggressor(created[-1], p, log)
        stack.callback(aggressor.destroy)
        log(f"{setting}: victim {victim.instance_id}, aggressor {aggressor.instance.instance_id} "
            f"({spec.limits()})")
        log(f"{setting}: instances: well-behaved {' '.join(v.instance_id for v in victims)}, misbehaving "
            f"{aggressor.instance.instance_id}")
        for instance in created:
            require_tools(instance, TOOLS)
        _prepare_victim(victim, p)
        web: list[tuple[str, Instance, webload.Target]] = []
        roles: dict[str, str] = {}
        if "web" in p.workloads:
            assert net is not None
            for index, instance in enumerate(created):
                name = f"well-behaved-{index + 1}" if instance is not created[-1] else "misbehaving"
                roles[name] = ROLES[0] if instance is not created[-1] else ROLES[1]
                web.append((name, instance, webload.Target(name, web_address(instance, mode, net),
                                                           p.web_port + index)))
        ignored = aggressor.instance.ignored_limits()
        own_kernel = _own_kernel(aggressor.instance)
        for stressor in (ALONE, *p.stressors):
            record: dict[str, object] = {"setting": setting, "stressor": stressor, "limits": spec.limits(),
                                         "ignored_limits": sorted(ignored), "own_kernel": own_kernel}
            evidence.append(record)
            why = "" if stressor == ALONE else unbounded_reason(stressor, spec, ignored, own_kernel)
            if why:
                record.update(outcome="skipped", why=why)
                log(f"{setting}/{stressor}: skipped: {why}")
                continue
            if aggressor.destroyed:
                record.update(outcome="skipped", why="the aggressor was destroyed by an earlier stressor's watchdog")
                continue
            meta = {"setting": setting, "stressor": stressor}
            values: dict[str, float] = {}
            tallies: dict[str, webload.Tally] = {}
            began = time.monotonic()
            if web:
                _start_web(web, p)
            with heartbeat.Heartbeat() as beat:
                if stressor != ALONE:
                    aggressor.start(stressor, net)
                time.sleep(p.settle_s)
                try:
                    for workload in p.workloads:
                        early = aggressor.died_early() if stressor != ALONE else ""
                        if early:
                            break
                        if workload == "web":
                            tallies = webload.drive([t for _, _, t in web], p.web_rate, p.seconds, p.web_deadline_s,
                                                    p.web_page_bytes)
                            continue
                        values[workload] = _measure_victim(victim, workload, p, net, raw, f"{setting}-{stressor}")
                    else:
                        early = aggressor.died_early() if stressor != ALONE else ""
                finally:
                    stopping = time.monotonic()
                    failed = aggressor.stop(stressor) if stressor != ALONE else ""
                    record["stop_s"] = round(time.monotonic() - stopping, 2)
                late = beat.stop()
            failed = failed or early
            pooled = web_figures(tallies, roles)
            if tallies:
                record["web"] = {name: {"role": roles[name], **t.to_dict()} for name, t in tallies.items()}
                raw(f"web-{setting}-{stressor}.json", json.dumps(record["web"], indent=1))
                if stressor == ALONE and not failed:  # with no stressor every instance must serve
                    failed = "; ".join(f"{role} web: {t.why_none()}" for role, t in pooled.items() if t.why_none())
            if aggressor.result is not None:
                raw(f"aggressor-{setting}-{stressor}.txt", aggressor.result.stdout[-20000:] + aggressor.result.stderr)
            raw(f"heartbeat-{setting}-{stressor}.json", json.dumps(late))
            lateness = heartbeat.lateness_stats(late)
            record.update(seconds=round(time.monotonic() - began, 2), watchdog_fired=aggressor.watchdog_fired,
                          heartbeat={"n": lateness.n, "p99_ms": lateness.p99_ms, "max_ms": lateness.max_ms,
                                     "mean_ms": round(lateness.mean_ms, 4)})
            if failed or aggressor.watchdog_fired:
                why = failed or f"the watchdog destroyed the aggressor after {p.watchdog_s:g} s"
                record.update(outcome="failed", why=why)
                log(f"{setting}/{stressor}: stressor failed, victim figures not kept: {why}")
            else:
                record.update(outcome="ok", victim=values)
                for workload, value in values.items():
                    metric, unit, _ = VICTIM[workload]
                    samples.append(Sample(metric, value, unit, meta))
                metric, unit, _ = VICTIM["web"]
                for role, tally in pooled.items():
                    none = tally.why_none()
                    if none:  # zero good responses is no figure: the reason stays in noisy.json
                        record.setdefault("not_kept", {})[role] = none  # type: ignore[union-attr]
                        log(f"{setting}/{stressor}: {role} web not kept: {none}")
                    else:
                        samples.append(Sample(metric, tally.fraction, unit, {**meta, "role": role}))
                samples.append(Sample("heartbeat_lateness_p99", lateness.p99_ms, "ms", meta))
                samples.append(Sample("heartbeat_lateness_max", lateness.max_ms, "ms", meta))
            web_text = ", ".join(f"{role} {t.good}/{t.sent} good" for role, t in pooled.items())
            log(f"{setting}/{stressor}: {record['outcome']}, victim {values} {web_text}, heartbeat p99 "
                f"{lateness.p99_ms:.2f} ms max {lateness.max_ms:.2f} ms")
    return samples


def _network_mode(platform: Platform, p: Plan) -> str:
    if not p.networked:
        return "none"
    for mode in NET_MODES:
        if mode in platform.network_modes:
            return mode
    raise ScenarioError(f"{NAME}: {platform.name} has none of the network modes {', '.join(NET_MODES)} that reach "
                        "the peer; drop the network workload and stressors for it")


def run_platform(platform: Platform, params: dict[str, object], raw: RawSink) -> list[Sample]:
    p = plan(params)
    lines: list[str] = []
    evidence: list[dict[str, object]] = []

    def log(line: str) -> None:
        lines.append(f"{time.strftime('%H:%M:%S')} {line}")

    samples: list[Sample] = []
    mode = _network_mode(platform, p)
    try:
        with ExitStack() as stack:
            net: _Net | None = None
            if p.networked:
                from scenarios import network

                peer, bridge = stack.enter_context(network._peer())
                iperf3_port, netperf_port, _ = p.ports
                network._start_server(peer, ["iperf3", "-s", "-p", str(iperf3_port)], iperf3_port, p.server_wait_s)
                network._start_server(peer, ["netserver", "-D", "-p", str(netperf_port)], netperf_port,
                                      p.server_wait_s)
                net = _Net(peer, peer.address, bridge.gateway if mode == "host" else None, bridge.gateway,
                           str(bridge.subnet))
            for setting in p.settings:
                samples += _setting(platform, setting, p, mode, net, raw, log, evidence)
    finally:
        raw(EVIDENCE_FILE, json.dumps(evidence, indent=1))
        raw("noisy.log", "\n".join(lines) + "\n")
    failed = [f"{r['setting']}/{r['stressor']}: {r['why']}" for r in evidence if r.get("outcome") == "failed"]
    if failed:  # a stressor that did not run as planned voids the repetition; the evidence stays in noisy.json
        raise ScenarioError(f"{NAME} on {platform.name}: " + "; ".join(failed))
    return samples
