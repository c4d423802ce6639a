"""Visibility audit: what an instance can see of, and do to, the host.

Each question is answered from inside the instance by a short command (sh, coreutils, perl-base's
`syscall`, all in the image), against markers made on the host first (scenarios.hostmarkers): a
marker process, file, mount, SysV and POSIX message queue. Every answer is `exposed`, `isolated` or
`n/a`, with the evidence (command, exit status, output) kept as raw output `visibility.json`.
Samples: `exposed` (1 = exposed, 0 = isolated; unit "yes/no") per question, and the memory and cpus
the instance sees. A question that does not apply (e.g. limits on a platform that ignores them)
yields no sample; its reason is in the evidence.

Probes never change the host: the hostname is set to its current value, `init_module`, `reboot`
and `settimeofday` are called with arguments that do nothing even where permitted (an invalid module,
an invalid reboot magic, no time), a block device is only read, and ptrace uses PTRACE_SEIZE on the
marker process. A privilege that only reaches the instance's own kernel (a VM's) counts as isolated:
every kernel-wide answer needs the host's boot id to be visible first.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runtime.platform import Instance
from runtime.spec import InstanceSpec
from scenarios import hostmetrics, kernelid
from scenarios.base import Range, RawSink, Sample, ScenarioError
from scenarios.hostmarkers import HostMarkers

NAME = "isolation_visibility"
DESCRIPTION = "visibility audit: host processes, network, IPC, mounts, files, kernel interfaces seen from inside"
TOOLS = ("sh", "perl", "cat", "head", "wc", "stat", "mknod", "nproc", "busybox", "grep", "tr", "cut")
PRECISION_METRICS = ("visible_memory_mib",)
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "exposed": ("yes/no", ("question",)),
    "visible_memory_mib": ("MiB", ()),
    "visible_cpus": ("cpus", ()),
}
#: Plausible values (bench.sanity): an answer is 0 (isolated) or 1 (exposed); sizes seen inside are above 0.
RANGES: dict[str, Range] = {
    "exposed": Range("none", 1.0, "an answer: 0 isolated, 1 exposed", zero_ok=True),
    "visible_memory_mib": Range("none"),
    "visible_cpus": Range("none"),
}
MIB = 2**20
EXPOSED, ISOLATED, NOT_APPLICABLE = "exposed", "isolated", "n/a"

PROFILES: dict[str, dict[str, object]] = {
    "quick": {"memory_mib": 512, "cpus": 1.0, "probe_timeout_s": 300},
    "full": {"memory_mib": 512, "cpus": 1.0, "probe_timeout_s": 300},
}

# x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl); the probe checks `uname -m` first.
SYS = {"ptrace": 101, "settimeofday": 164, "reboot": 169, "init_module": 175, "mq_open": 240}
PTRACE_SEIZE = 0x4206


def instance_spec(params: dict[str, object]) -> InstanceSpec:
    return InstanceSpec(memory=int(params["memory_mib"]) * MIB, cpus=float(params["cpus"]))  # type: ignore[arg-type]


def _perl_syscall(name: str, *args: object) -> str:
    """A perl one-liner that calls syscall `name` and prints `ok <ret>` or `errno=<n>`."""
    # perl's syscall() may write through string arguments: pass them in variables, not literals.
    strings = [a for a in args if isinstance(a, str)]
    setup = "".join(f'my $s{i} = "{a}"; ' for i, a in enumerate(strings))
    rendered = ", ".join(f"$s{strings.index(a)}" if isinstance(a, str) else str(a) for a in args)
    return ("[ \"$(uname -m)\" = x86_64 ] || { echo arch-unsupported; exit 0; }; "
            f"perl -e '{setup}$r = syscall({SYS[name]}, {rendered}); "
            "print $r < 0 ? \"errno=\" . ($!+0) . \"\\n\" : \"ok $r\\n\"'")


def _self_excluding(token: str) -> str:
    """A regular expression matching `token` but not its own text: 'isl-probe-1-ab' -> 'isl-probe-1-a[b]'."""
    return f"{token[:-1]}[{token[-1]}]"


def _errno(out: str) -> int | None:
    for word in out.split():
        if word.startswith("errno="):
            return int(word.split("=", 1)[1])
    return None


@dataclass(frozen=True)
class HostFacts:
    boot_id: str
    uts_ns: str
    macs: frozenset[str]
    root_disk: tuple[int, int] | None
    root_disk_readable: bool  # whether the host itself (this process) may read it: if not, the probe cannot tell
    mem_total_kib: int
    cpus: int
    markers: dict[str, object]
    btime: str = ""  # boot time (/proc/stat): LXC masks the boot id, not this (scenarios.kernelid)

    @classmethod
    def read(cls, markers: HostMarkers) -> HostFacts:
        macs = set()
        for node in Path("/sys/class/net").iterdir():
            try:
                mac = (node / "address").read_text().strip()
            except OSError:
                continue
            if mac and mac != "00:00:00:00:00:00":
                macs.add(mac)
        return cls(boot_id=Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
                   uts_ns=os.readlink("/proc/self/ns/uts"), macs=frozenset(macs), root_disk=(disk := _root_disk()),
                   root_disk_readable=disk is not None and _readable_block_device(*disk),
                   mem_total_kib=hostmetrics.meminfo_bytes("MemTotal") // 1024, cpus=os.cpu_count() or 1,
                   markers=markers.facts(), btime=kernelid.host_ids()[1])


def _root_disk() -> tuple[int, int] | None:
    """(major, minor) of the whole disk that holds the host's / (None when / is not on a block device)."""
    dev = os.stat("/").st_dev
    node = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if not node.exists():
        return None
    if (node / "partition").exists():
        major, minor = (node.resolve().parent / "dev").read_text().strip().split(":")
        return int(major), int(minor)
    return os.major(dev), os.minor(dev)


def _readable_block_device(major: int, minor: int) -> bool:
    """Can this (host) process read the device? Some hosts (sandboxes) refuse even root."""
    for node in Path("/dev").rglob("*"):
        try:
            st = node.stat()
        except OSError:
            continue
        if node.is_block_device() and os.major(st.st_rdev) == major and os.minor(st.st_rdev) == minor:
            try:
                with open(node, "rb") as f:
                    return len(f.read(512)) == 512
            except OSError:
                return False
    return False


@dataclass
class Context:
    """What the earlier answers established (kernel-wide questions depend on them)."""

    host: HostFacts
    spec: InstanceSpec
    ignored: dict[str, object]
    shares_kernel: bool = False
    shares_netns: bool = False
    scratch: str = "/tmp"


Verdict = tuple[str, str]  # (answer, why)


@dataclass(frozen=True)
class Probe:
    id: str
    question: str
    command: Callable[[Context], str]
    judge: Callable[[str, Context], Verdict]


def _kernel_wide(permitted: bool, what: str, ctx: Context) -> Verdict:
    if not permitted:
        return ISOLATED, f"{what}: refused inside"
    if not ctx.shares_kernel:
        return ISOLATED, f"{what}: permitted, but only on the instance's own kernel"
    return EXPOSED, f"{what}: permitted on the host's kernel"


def _judge_kernel(out: str, ctx: Context) -> Verdict:
    boot_id, btime = kernelid.parse(out)
    ctx.shares_kernel = kernelid.shares_host_kernel(out, (ctx.host.boot_id, ctx.host.btime))
    if ctx.shares_kernel and boot_id == ctx.host.boot_id:
        return EXPOSED, "same boot id as the host: the host's kernel"
    if ctx.shares_kernel:
        return EXPOSED, f"the host's boot time (btime {btime}) under another boot id: the host's kernel"
    return ISOLATED, f"own kernel (boot id {boot_id or '?'} and boot time {btime or '?'} differ from the host's)"


def _judge_processes(out: str, ctx: Context) -> Verdict:
    if ctx.host.markers["token"] in out:
        return EXPOSED, "the host's marker process is listed in /proc"
    return ISOLATED, "the host's marker process is not in /proc"


def _judge_network(out: str, ctx: Context) -> Verdict:
    seen = {line.strip() for line in out.splitlines()} & ctx.host.macs
    ctx.shares_netns = bool(seen)
    if seen:
        return EXPOSED, f"host interfaces visible (MAC {', '.join(sorted(seen))})"
    return ISOLATED, "no host interface visible"


def _judge_hostname(out: str, ctx: Context) -> Verdict:
    if "set-ok" not in out:
        return ISOLATED, "sethostname refused"
    if ctx.shares_kernel and ctx.host.uts_ns in out:
        return EXPOSED, "sethostname permitted in the host's UTS namespace"
    return ISOLATED, "sethostname permitted, but in the instance's own UTS namespace"


def _judge_contains(key: str, what: str) -> Callable[[str, Context], Verdict]:
    def judge(out: str, ctx: Context) -> Verdict:
        if str(ctx.host.markers[key]) in out:
            return EXPOSED, f"the host's marker {what} is visible"
        return ISOLATED, f"the host's marker {what} is not visible"
    return judge


def _judge_sysv(out: str, ctx: Context) -> Verdict:
    keys = {line.split()[0] for line in out.splitlines()[1:] if line.split()}
    if str(ctx.host.markers["msg_key"]) in keys:
        return EXPOSED, "the host's marker SysV message queue is listed"
    return ISOLATED, "the host's marker SysV message queue is not listed"


def _judge_mqueue(out: str, ctx: Context) -> Verdict:
    if out.startswith("ok"):
        return EXPOSED, "mq_open of the host's marker POSIX queue succeeded"
    return ISOLATED, f"mq_open of the host's marker queue failed ({out.strip()})"


def _judge_filesystem(out: str, ctx: Context) -> Verdict:
    if out.startswith("reached"):
        return EXPOSED, f"host marker file read through {out.split(maxsplit=1)[1].strip()}"
    return ISOLATED, "the host's marker file is unreachable (direct path, /proc/*/root)"


def _judge_root(out: str, ctx: Context) -> Verdict:
    identity = out.split() == ["0", "0", "4294967295"]
    if not identity:
        return ISOLATED, f"uid 0 inside maps to another host uid ({' '.join(out.split())})"
    if ctx.shares_kernel:
        return EXPOSED, "uid 0 inside is uid 0 of the host's kernel (identity map)"
    return ISOLATED, "uid 0 of the instance's own kernel"


def _judge_writable(what: str) -> Callable[[str, Context], Verdict]:
    def judge(out: str, ctx: Context) -> Verdict:
        if out.strip() == "absent":
            return NOT_APPLICABLE, f"{what} does not exist in this kernel"
        return _kernel_wide(out.strip() == "writable", f"{what} writable", ctx)
    return judge


def _writable_command(path: str) -> str:
    return f"[ -e {path} ] || {{ echo absent; exit 0; }}; test -w {path} && echo writable || echo read-only"


def _judge_kcore(out: str, ctx: Context) -> Verdict:
    if out.strip() == "absent":
        return NOT_APPLICABLE, "/proc/kcore does not exist in this kernel"
    try:
        readable = int(out.split()[0]) > 0
    except (IndexError, ValueError):
        readable = False
    return _kernel_wide(readable, "/proc/kcore readable", ctx)


def _command_block(ctx: Context) -> str:
    if ctx.host.root_disk is None:
        return "echo no-host-disk"
    major, minor = ctx.host.root_disk
    hexid = f"{major:x}:{minor:x}"
    return (f"node=$(stat -c '%F|%t:%T|%n' /dev/* /dev/*/* 2>/dev/null | grep '^block special file|{hexid}|' "
            "| head -n 1 | cut -d'|' -f3); made=\"\"; "
            f'if [ -z "$node" ]; then node=/dev/isl-blk-$$; mknod "$node" b {major} {minor} 2>&1 '
            '|| { echo mknod-refused; exit 0; }; made=1; fi; '
            'bytes=$(head -c 512 "$node" 2>/dev/null | wc -c); echo "node=$node bytes=$bytes"; '
            '[ -n "$made" ] && rm -f "$node"; true')


def _judge_block(out: str, ctx: Context) -> Verdict:
    if "no-host-disk" in out:
        return NOT_APPLICABLE, "the host's / is not on a block device"
    if "mknod-refused" in out:
        return ISOLATED, "mknod of the host's root disk refused"
    if not ctx.host.root_disk_readable:
        return NOT_APPLICABLE, "the host itself may not read its root disk here (host policy): the probe cannot tell"
    readable = "bytes=512" in out
    return _kernel_wide(readable, "the host's root disk (by major:minor) readable", ctx)


def _judge_syscall(what: str, permitted_errnos: tuple[int, ...] = ()) -> Callable[[str, Context], Verdict]:
    def judge(out: str, ctx: Context) -> Verdict:
        if "arch-unsupported" in out:
            return NOT_APPLICABLE, "probe needs x86_64 syscall numbers"
        err = _errno(out)
        if err == 38:  # ENOSYS
            return NOT_APPLICABLE, f"{what}: the kernel does not implement it"
        permitted = out.startswith("ok") or (err is not None and err in permitted_errnos)
        return _kernel_wide(permitted, f"{what} ({out.strip()})", ctx)
    return judge


def _judge_raw(out: str, ctx: Context) -> Verdict:
    if not out.startswith("ok"):
        return ISOLATED, f"raw packet socket refused ({out.strip()})"
    if ctx.shares_netns:
        return EXPOSED, "raw packet socket on the host's network interfaces"
    return ISOLATED, "raw packet socket permitted, but only on the instance's own network"


def _judge_ptrace(out: str, ctx: Context) -> Verdict:
    return _kernel_wide(out.startswith("ok"), f"PTRACE_SEIZE of the host marker process ({out.strip()})", ctx)


def _judge_limit(kind: str) -> Callable[[str, Context], Verdict]:
    def judge(out: str, ctx: Context) -> Verdict:
        field = "memory" if kind == "memory" else "cpus"
        if getattr(ctx.spec, field) is None or field in ctx.ignored:
            return NOT_APPLICABLE, f"no {field} limit enforced on this platform"
        try:
            seen = int(out.split()[-1] if kind == "cpus" else out.split()[1])
        except (IndexError, ValueError):
            return NOT_APPLICABLE, f"unreadable output {out.strip()!r}"
        host = ctx.host.cpus if kind == "cpus" else ctx.host.mem_total_kib
        unit = "cpus" if kind == "cpus" else "KiB"
        if abs(seen - host) <= 0.02 * host:
            return EXPOSED, f"sees the host's {seen} {unit}, not its limit"
        return ISOLATED, f"sees {seen} {unit}, not the host's {host}"
    return judge


PROBES: tuple[Probe, ...] = (
    Probe("same_kernel", "same kernel as the host (boot id or boot time)",
          lambda c: f"{kernelid.COMMAND}; uname -r", _judge_kernel),
    # The pattern is the token with one character in brackets, so that the probe's own command line
    # (which holds the pattern, not the token) never matches itself.
    Probe("host_processes", "host processes visible (marker process)",
          lambda c: ("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n' | "
                     f"grep -a '{_self_excluding(str(c.host.markers['token']))}'; true"), _judge_processes),
    Probe("host_network", "host network interfaces visible",
          lambda c: "cat /sys/class/net/*/address 2>/dev/null; true", _judge_network),
    Probe("hostname_changeable", "host hostname changeable from inside",
          lambda c: ('h=$(cat /proc/sys/kernel/hostname); busybox hostname "$h" 2>&1 && echo set-ok; '
                     "readlink /proc/self/ns/uts; true"), _judge_hostname),
    Probe("host_sysv_ipc", "host SysV IPC objects visible (marker message queue)",
          lambda c: "cat /proc/sysvipc/msg 2>&1; true", _judge_sysv),
    Probe("host_posix_mqueue", "host POSIX message queues visible (marker queue)",
          lambda c: _perl_syscall("mq_open", str(c.host.markers["mq_name"]), 0, 0, 0), _judge_mqueue),
    Probe("host_mounts", "host mounts visible (marker tmpfs)",
          lambda c: f"cat /proc/[0-9]*/mountinfo 2>/dev/null | grep -a -m 1 -F {c.host.markers['token']}; true",
          _judge_contains("token", "mount")),
    Probe("host_filesystem", "host filesystem reachable (marker file outside the rootfs)",
          lambda c: (f"p={c.host.markers['marker_file']}; for f in \"$p\" /proc/1/root\"$p\" /proc/[0-9]*/root\"$p\"; "
                     f"do [ \"$(cat \"$f\" 2>/dev/null)\" = {c.host.markers['token']} ] && "
                     "{ echo \"reached $f\"; exit 0; }; done; echo unreachable"), _judge_filesystem),
    Probe("root_is_host_root", "root inside is root on the host (uid map)",
          lambda c: "cat /proc/self/uid_map", _judge_root),
    Probe("proc_sys_writable", "/proc/sys writable",
          lambda c: _writable_command("/proc/sys/kernel/hostname"),
          _judge_writable("/proc/sys")),
    Probe("sysrq_trigger_writable", "/proc/sysrq-trigger writable",
          lambda c: _writable_command("/proc/sysrq-trigger"),
          _judge_writable("/proc/sysrq-trigger")),
    Probe("kcore_readable", "/proc/kcore readable",
          lambda c: "[ -e /proc/kcore ] || { echo absent; exit 0; }; head -c 16 /proc/kcore 2>/dev/null | wc -c",
          _judge_kcore),
    Probe("block_device", "host's root disk creatable (mknod) and readable", _command_block, _judge_block),
    # init_module(NULL, 0, ""): EPERM without CAP_SYS_MODULE, otherwise a harmless EFAULT/ENOEXEC/EINVAL.
    Probe("module_loading", "kernel module loading permitted",
          lambda c: _perl_syscall("init_module", 0, 0, ""), _judge_syscall("init_module", (14, 8, 22))),
    # settimeofday(NULL, NULL) checks CAP_SYS_TIME, then changes nothing.
    Probe("clock_setting", "system clock settable",
          lambda c: _perl_syscall("settimeofday", 0, 0), _judge_syscall("settimeofday")),
    # reboot with magic 0: EPERM without CAP_SYS_BOOT, else EINVAL (the magic is checked after the capability).
    Probe("reboot", "reboot(2) permitted",
          lambda c: _perl_syscall("reboot", 0, 0, 0, 0), _judge_syscall("reboot", (22,))),
    Probe("raw_sockets", "raw sockets on the host's network",
          lambda c: "perl -e 'socket(my $s, 17, 3, 0) ? print \"ok\\n\" : print \"errno=\" . ($!+0) . \"\\n\"'",
          _judge_raw),
    Probe("ptrace_host", "ptrace of a host process (the marker)",
          lambda c: _perl_syscall("ptrace", PTRACE_SEIZE, int(c.host.markers["marker_pid"]), 0, 0), _judge_ptrace),
    Probe("memory_total", "/proc/meminfo shows the host's memory instead of the limit",
          lambda c: "grep MemTotal /proc/meminfo", _judge_limit("memory")),
    Probe("cpu_total", "nproc shows the host's cpus instead of the limit",
          lambda c: "nproc", _judge_limit("cpus")),
)


SECTION = "@@isl-visibility"
SCRIPT_NAME = "isl-visibility.sh"


def batch_script(commands: list[tuple[str, str]], scratch: str) -> str:
    """One shell script that runs every probe in a subshell and frames its output, exit status, stderr
    and duration: one exec per repetition (a guest-agent round trip under TCG costs seconds). It runs
    from a file, so no process's command line holds the marker token while the process probe looks."""
    lines = ["#!/bin/sh", f"err={scratch}/.isl-visibility-err.$$"]
    for probe_id, command in commands:
        lines += [f'printf "\\n{SECTION} {probe_id} start %s\\n" "$(date +%s.%N)"',
                  f"( {command}\n) 2>\"$err\"",
                  "rc=$?",
                  f'printf "\\n{SECTION} {probe_id} end %s %s\\n" "$(date +%s.%N)" "$rc"',
                  'cat "$err"', f'printf "\\n{SECTION} {probe_id} done\\n"']
    lines.append('rm -f "$err"')
    return "\n".join(lines) + "\n"


def split_sections(output: str) -> dict[str, dict[str, object]]:
    """probe id -> {stdout, stderr, returncode, duration_s} from batch_script's framed output."""
    found: dict[str, dict[str, object]] = {}
    current: str | None = None
    part = "stdout"
    chunks: dict[str, list[str]] = {}
    started = 0.0
    for line in output.split("\n"):
        if line.startswith(SECTION + " "):
            _, probe_id, what, *rest = line.split()
            if what == "start":
                current, part, chunks = probe_id, "stdout", {"stdout": [], "stderr": []}
                started = float(rest[0]) if rest else 0.0
            elif what == "end" and current == probe_id:
                found[probe_id] = {"returncode": int(rest[1]), "duration_s": round(float(rest[0]) - started, 3)}
                part = "stderr"
            elif what == "done" and current == probe_id and probe_id in found:
                found[probe_id]["stdout"] = "\n".join(chunks["stdout"]).strip("\n") + "\n"
                found[probe_id]["stderr"] = "\n".join(chunks["stderr"]).strip("\n")
                current = None
            continue
        if current is not None:
            chunks[part].append(line)
    return found


def run(instance: Instance, params: dict[str, object], raw: RawSink) -> list[Sample]:
    samples: list[Sample] = []
    evidence: list[dict[str, object]] = []
    with HostMarkers() as markers, tempfile.TemporaryDirectory(prefix="isl-visibility-") as tmp:
        ctx = Context(HostFacts.read(markers), instance.spec, instance.ignored_limits(),
                      scratch=instance.scratch_dir)
        commands = [(probe.id, probe.command(ctx)) for probe in PROBES]
        script = Path(tmp) / SCRIPT_NAME
        script.write_text(batch_script(commands, instance.scratch_dir))
        remote = f"{instance.scratch_dir}/{SCRIPT_NAME}"
        instance.put_file(script, remote)
        result = instance.exec(["sh", remote], timeout=float(params["probe_timeout_s"]))  # type: ignore[arg-type]
        instance.exec(["rm", "-f", remote], timeout=60)
        raw("visibility-batch.txt", f"exit {result.returncode}\n{result.stdout}\n--- stderr\n{result.stderr}")
        sections = split_sections(result.stdout)
        for probe, (_, command) in zip(PROBES, commands, strict=True):
            section = sections.get(probe.id)
            if section is None:
                answer, why = NOT_APPLICABLE, f"probe produced no output (batch exit {result.returncode})"
                section = {"returncode": None, "duration_s": None, "stdout": "", "stderr": ""}
            elif section["returncode"] != 0:
                answer, why = NOT_APPLICABLE, f"probe exited {section['returncode']}: {section['stderr']}"[:300]
            else:
                answer, why = probe.judge(str(section["stdout"]), ctx)
            out = str(section["stdout"])
            evidence.append({"question": probe.id, "text": probe.question, "answer": answer, "why": why,
                             "command": command, "returncode": section["returncode"],
                             "duration_s": section["duration_s"],
                             "stdout": out[-4000:], "stderr": str(section["stderr"])[-2000:]})
            if answer != NOT_APPLICABLE:
                samples.append(Sample("exposed", 1.0 if answer == EXPOSED else 0.0, "yes/no",
                                      {"question": probe.id}))
            if probe.id == "memory_total" and out.split()[1:2]:
                samples.append(Sample("visible_memory_mib", int(out.split()[1]) / 1024, "MiB", {}))
            if probe.id == "cpu_total" and out.strip().isdigit():
                samples.append(Sample("visible_cpus", float(out.strip()), "cpus", {}))
    raw("visibility.json", json.dumps(evidence, indent=1))
    if not any(s.metric == "exposed" for s in samples):
        raise ScenarioError("visibility probe: no question could be answered (see visibility.json)")
    return samples


QUESTIONS: dict[str, str] = {probe.id: probe.question for probe in PROBES}
