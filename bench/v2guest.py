"""The container tests on a real cgroup v2 kernel: a VM guest booted with `cgroup_no_v1=all`.

This host may be a cgroup v1 hybrid; most users' hosts are v2-only. The guest boots from the shared
image through the vm platform (its PID-1 script mounts cgroup2 at /sys/fs/cgroup in that mode) and has
no network. What it needs arrives through the guest agent as one tarball, unpacked on a tmpfs:
  src/   the project tree (git's list: tracked files and untracked ones that are not ignored)
  site/  the Python distributions the tests import beyond the image's Python 3.11 (GUEST_DISTRIBUTIONS
         and their requirements), copied with their metadata from the environment running this module
  cache/ what the runtime builds on the host into its cache directory and the guest cannot build (no
         compiler there): the static container init; copied to the guest's cache directory
Python files are byte-compiled here (the same CPython 3.11): compiling them under TCG costs minutes.
In the guest the image store (on the data volume, see GUEST_CACHE) holds the host image's manifest and,
as its rootfs, a read-only bind of the guest's own root (the same tree), so `ensure_image()` in the guest
finds the image without a build and containers get it as their base layer.
pytest runs there with a JUnit XML report, which is read back and parsed here: per-test outcome,
pytest's summary line, and the wall time in the guest.

  python -m bench.v2guest [--subset smoke|full] [--timeout S] [--junit PATH] [NODE_ID ...]

Exit status: 0 when the guest's pytest passed (or the capability is absent: no libvirt/QEMU, the
reason is printed), 1 when a test failed or the guest run broke, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from runtime.errors import InstanceError, PlatformUnavailable
from runtime.image.store import Image
from runtime.naming import CACHE_ROOT
from runtime.spec import InstanceSpec

ROOT = Path(__file__).resolve().parents[1]
Progress = Callable[[str], None]

#: Distributions the container tests import that the image's Python lacks (their requirements follow).
GUEST_DISTRIBUTIONS = ("pytest", "pyroute2")
#: Where the tarball is unpacked in the guest: a tmpfs, outside the tree containers use as base layer.
GUEST_DIR = "/run/isolab-tests"
#: The guest's data volume (ext4 on its own disk, mounted at /mnt) holds the runtime's cache directory
#: (ISOLAB_CACHE_DIR: image store, committed layers, init) and pytest's temporary directories (TMPDIR):
#: overlayfs refuses a layer inside another layer's tree, and the base layer is the guest's whole root fs;
#: ext4 also takes idmapped mounts (user-namespace containers), which tmpfs does not before Linux 6.3.
GUEST_CACHE = "/mnt/isolab-cache"
GUEST_TMP = "/mnt/tmp"
GUEST_CMDLINE = "cgroup_no_v1=all"
#: Under TCG commands run 10-70x slower than on the host: the containers' exec timeouts (hang guards) are
#: scaled by this in the guest (runtime.linux.process.TIMEOUT_SCALE); assertions on results are unchanged.
TCG_TIMEOUT_SCALE = 10
GUEST_SPEC = InstanceSpec(memory=2 * 1024**3, hostname="islv2guest", volume=True)
#: v2 controllers the container runtime uses (runtime.container.cgroups.v2.WANTED minus cpuset, optional).
REQUIRED_CONTROLLERS = ("cpu", "memory", "io", "pids")

#: Every test of our container runtime (the device policy tests too: on v2 they try the BPF device filter).
FULL = ("tests/integration/test_container_*.py", "tests/integration/test_device_policy.py")
#: A test per v2 code path that differs from v1, where it fits the CI budget: limits in memory.max, cpu.max,
#: pids.max (read back, and held against a workload's attempt to lift them), memory.events (the OOM kill),
#: io.max and the platform contract, pid 1 in the one cgroup, the BPF device filter (mknod + read of the
#: guest's root disk, Docker's default devices still usable, the filter on the bare cgroup2 hierarchy).
#: ("[plain]": without a user namespace; the full subset runs the "[userns]" variants too.)
SMOKE = (
    "tests/integration/test_container_limits.py::test_limits_read_back_from_the_kernel",
    "tests/integration/test_container_limits.py::test_memory_limit_oom_kills_hog_not_host[plain]",
    "tests/integration/test_container_limits.py::test_pids_max_stops_fork_bomb[plain]",
    "tests/integration/test_container_lifecycle.py::test_platform_contract",
    "tests/integration/test_container_lockdown.py::test_workload_cannot_lift_its_own_limits[plain]",
    "tests/integration/test_container_lockdown.py::test_pid1_is_in_every_cgroup_of_the_container[plain]",
    "tests/integration/test_device_policy.py::test_bpf_device_filter_on_cgroup2",
    "tests/integration/test_device_policy.py::test_mknod_and_read_of_host_root_disk_fail[plain]",
    "tests/integration/test_device_policy.py::test_default_devices_still_work[plain]",
)
SUBSETS = {"smoke": SMOKE, "full": FULL}


class V2GuestError(InstanceError):
    """The guest could not be prepared or did not run the tests (not a test failure)."""


@dataclass
class TestOutcome:
    node_id: str
    outcome: str  # passed, failed, error, skipped
    seconds: float
    message: str = ""


@dataclass
class GuestRun:
    tests: list[str]
    returncode: int
    outcomes: list[TestOutcome]
    summary: str  # pytest's last line, e.g. "7 passed in 80.12s (0:01:20)"
    output: str  # pytest's stdout and stderr
    timings: dict[str, float] = field(default_factory=dict)  # boot, upload, pytest, total (s)
    guest: dict[str, str] = field(default_factory=dict)  # kernel, cgroup controllers
    junit_xml: str = ""

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and not self.failures()

    def failures(self) -> list[TestOutcome]:
        return [o for o in self.outcomes if o.outcome in ("failed", "error")]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            counts[o.outcome] = counts.get(o.outcome, 0) + 1
        return counts


# ---- pure parts ---------------------------------------------------------------------------------
def parse_junit(text: str) -> list[TestOutcome]:
    """Per-test outcomes from pytest's JUnit XML. A test with a setup/teardown error may appear twice."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise V2GuestError(f"v2 guest: the JUnit report is not XML ({exc}): {text[:200]!r}") from exc
    outcomes = []
    for case in root.iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        module, _, klass = _split_classname(classname)
        node_id = f"{module.replace('.', '/')}.py::{klass + '::' if klass else ''}{name}"
        outcome, message = "passed", ""
        for child, kind in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            element = case.find(child)
            if element is not None:
                outcome, message = kind, element.get("message") or (element.text or "").strip()
                break
        outcomes.append(TestOutcome(node_id, outcome, float(case.get("time") or 0), message))
    return outcomes


def _split_classname(classname: str) -> tuple[str, str, str]:
    """'tests.integration.test_x' or 'tests.integration.test_x.TestY' -> (module, '.', class)."""
    parts = classname.split(".")
    if len(parts) > 1 and parts[-1][:1].isupper():
        return ".".join(parts[:-1]), ".", parts[-1]
    return classname, "", ""


def summary_line(output: str) -> str:
    """pytest's final '=== N passed, M failed in Xs ===' line, without the rule."""
    for line in reversed(output.splitlines()):
        if re.search(r"\b(passed|failed|error|errors|skipped|no tests ran)\b.* in [0-9.]+s", line):
            return line.strip("= \n")
    return ""


def resolve_tests(patterns: Iterable[str], root: Path = ROOT) -> list[str]:
    """Node ids as given; file globs (no '::') expanded against the project, sorted."""
    tests: list[str] = []
    for pattern in patterns:
        if "::" in pattern or not any(c in pattern for c in "*?["):
            tests.append(pattern)
        else:
            tests += sorted(str(p.relative_to(root)) for p in root.glob(pattern))
    return tests


# ---- the bundle ---------------------------------------------------------------------------------
def project_files(root: Path = ROOT) -> list[Path]:
    """The project's files (relative): git's tracked and untracked-not-ignored ones, else a walk."""
    proc = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
                           "--exclude-standard"], capture_output=True, timeout=60)
    if proc.returncode == 0:
        names = [n for n in proc.stdout.decode().split("\0") if n]
    else:  # not a git checkout (e.g. a release tarball)
        skip = {".git", ".nox", "results", "reports", "__pycache__", ".ruff_cache", ".pytest_cache"}
        names = [str(p.relative_to(root)) for p in root.rglob("*")
                 if p.is_file() and not skip & set(p.relative_to(root).parts)]
    return [Path(n) for n in sorted(set(names)) if (root / n).is_file() and not n.startswith(("results/", "reports/"))]


def distribution_closure(names: Iterable[str]) -> list[metadata.Distribution]:
    """The installed distributions `names` and, recursively, their unconditional requirements."""
    from packaging.requirements import Requirement  # pytest's own dependency

    found: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as exc:
            raise V2GuestError(f"v2 guest: the tests need the Python distribution {name!r}, which is not "
                               f"installed here ({sys.executable})") from exc
        found[key] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return [found[k] for k in sorted(found)]


def build_bundle(out: Path, root: Path = ROOT, distributions: Iterable[str] = GUEST_DISTRIBUTIONS) -> dict[str, int]:
    """Write the tar.gz of src/ and site/ (byte-compiled); returns file counts and size."""
    counts = {"src_files": 0, "site_files": 0, "cache_files": 0}
    with tempfile.TemporaryDirectory(prefix="isolab-v2bundle-") as tmp:
        stage = Path(tmp)
        for rel in project_files(root):
            _copy(root / rel, stage / "src" / rel)
            counts["src_files"] += 1
        for dist in distribution_closure(distributions):
            for rel in dist.files or []:
                source = Path(str(dist.locate_file(rel)))
                if rel.parts[0] == ".." or "__pycache__" in rel.parts or not source.is_file():
                    continue  # console scripts live outside site-packages; caches are rebuilt below
                _copy(source, stage / "site" / rel)
                counts["site_files"] += 1
        for source in host_built_files():
            _copy(source, stage / "cache" / source.relative_to(CACHE_ROOT))
            counts["cache_files"] += 1
        compileall.compile_dir(stage, quiet=2, workers=1)
        with tarfile.open(out, "w:gz", compresslevel=6) as tar:
            for part in ("src", "site", "cache"):
                if (stage / part).is_dir():
                    tar.add(stage / part, arcname=part)
    counts["bytes"] = out.stat().st_size
    return counts


def host_built_files() -> list[Path]:
    """Files under CACHE_ROOT that the runtime compiles on the host (built now if missing)."""
    from runtime.container import init

    return [init.build()]


def _copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(source.read_bytes())
    stat = source.stat()
    os.utime(dest, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    dest.chmod(stat.st_mode & 0o777)


# ---- the guest ----------------------------------------------------------------------------------
def check_capability() -> str | None:
    """None when a VM can be booted here; otherwise why not (no libvirt/QEMU)."""
    try:
        from runtime.vm.platform import VmPlatform
    except ImportError as exc:
        return f"libvirt-python is not importable: {exc}"
    try:
        VmPlatform(None).check_available()
    except PlatformUnavailable as exc:
        return str(exc)
    return None


def _guest_exec(vm: object, script: str, what: str, timeout: float = 120) -> str:
    result = vm.exec(["sh", "-c", script], timeout=timeout)  # type: ignore[attr-defined]
    if not result.ok:
        raise V2GuestError(f"v2 guest: {what} failed (exit {result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[-600:]}")
    return result.stdout


def _prepare_guest(vm: object, image: Image, bundle: Path) -> dict[str, str]:
    """Check the guest is cgroup v2; unpack the bundle; point the image store at a read-only bind of /."""
    info = {"kernel": _guest_exec(vm, "uname -r", "uname").strip()}
    mounts = _guest_exec(vm, "cat /proc/self/mounts", "reading the guest's mounts")
    cgroup_mounts = [fields[1:3] for fields in map(str.split, mounts.splitlines())
                     if fields[2:3] in (["cgroup"], ["cgroup2"])]
    controllers = _guest_exec(vm, "cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null || true", "cgroup").split()
    info["cgroup_mounts"] = " ".join(f"{fs}@{path}" for path, fs in cgroup_mounts)
    info["cgroup_controllers"] = " ".join(controllers)
    missing = [c for c in REQUIRED_CONTROLLERS if c not in controllers]
    if cgroup_mounts != [["/sys/fs/cgroup", "cgroup2"]] or missing:
        raise V2GuestError(f"v2 guest: not a cgroup v2-only guest (cgroup mounts: {cgroup_mounts}, "
                           f"controllers at /sys/fs/cgroup: {controllers or 'none'}, missing: {missing})")
    vm.put_file(bundle, f"{GUEST_DIR}.tgz")  # type: ignore[attr-defined]
    store = f"{GUEST_CACHE}/images/{image.digest}"
    with tempfile.NamedTemporaryFile("w", suffix=".json") as manifest:
        json.dump(image.manifest, manifest)
        manifest.flush()
        _guest_exec(vm, f"mkdir -p {store}/rootfs", "making the image store")
        vm.put_file(Path(manifest.name), f"{store}/manifest.json")  # type: ignore[attr-defined]
    _guest_exec(vm, f"set -e; mkdir -p {GUEST_DIR} {GUEST_TMP}; chmod 1777 {GUEST_TMP}; "
                    f"tar -xzf {GUEST_DIR}.tgz -C {GUEST_DIR}; rm {GUEST_DIR}.tgz; "
                    f"if [ -d {GUEST_DIR}/cache ]; then cp -a {GUEST_DIR}/cache/. {GUEST_CACHE}/; fi; "
                    f"mount --bind / {store}/rootfs; mount -o remount,bind,ro {store}/rootfs",
                "unpacking the bundle and binding / as the image's rootfs", timeout=300)
    return info


def run_in_guest(image: Image, tests: list[str], *, timeout: float = 3600, boot_timeout: float = 300,
                 progress: Progress = lambda _msg: None) -> GuestRun:
    """Boot the v2 guest, run pytest on `tests` (node ids or files relative to the project) inside it."""
    from runtime.vm.platform import VmPlatform

    timings: dict[str, float] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="isolab-v2guest-") as tmp:
        bundle = Path(tmp) / "bundle.tgz"
        counts = build_bundle(bundle)
        progress(f"bundle: {counts['src_files']} project files, {counts['site_files']} files of "
                 f"{', '.join(GUEST_DISTRIBUTIONS)} and their requirements, {counts['bytes'] / 2**20:.1f} MiB")
        platform = VmPlatform(image, accel="auto", extra_cmdline=GUEST_CMDLINE, boot_timeout=boot_timeout)
        platform.check_available()
        progress(f"booting the guest ({platform.accel.accel}, {GUEST_CMDLINE})")
        t0 = time.perf_counter()
        vm = platform.create(GUEST_SPEC)
        try:
            timings["boot_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            guest = _prepare_guest(vm, image, bundle)
            guest["accelerator"] = platform.accel.accel
            timings["upload_s"] = time.perf_counter() - t0
            progress(f"guest ready: kernel {guest['kernel']}, cgroup2 controllers {guest['cgroup_controllers']}")
            junit = f"{GUEST_DIR}/junit.xml"
            argv = ["python3", "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs",
                    f"--junitxml={junit}", *tests]
            # past the timeout pytest gets SIGINT: it stops and still writes the report of what ran
            script = f"cd {GUEST_DIR}/src && exec timeout -s INT -k 120 {int(timeout)} {shlex.join(argv)}"
            env = {"PYTHONPATH": f"{GUEST_DIR}/src:{GUEST_DIR}/site", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
                   "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": GUEST_TMP, "ISOLAB_CACHE_DIR": GUEST_CACHE}
            if platform.accel.accel == "tcg":
                env["ISOLAB_TIMEOUT_SCALE"] = str(TCG_TIMEOUT_SCALE)
            progress(f"running pytest on {len(tests)} test path(s) in the guest")
            t0 = time.perf_counter()
            result = vm.exec(["sh", "-c", script], timeout=timeout + 300, env=env)
            timings["pytest_s"] = time.perf_counter() - t0
            local = Path(tmp) / "junit.xml"
            try:
                vm.get_file(junit, local)
                junit_xml = local.read_text()
                outcomes = parse_junit(junit_xml)
            except InstanceError:
                junit_xml, outcomes = "", []  # pytest did not write it (collection error, crash): see output
        except BaseException:
            with contextlib.suppress(InstanceError):  # the first error is the one to report
                vm.destroy()
            raise
        vm.destroy()
    timings["total_s"] = time.perf_counter() - started
    output = result.stdout + (("\n" + result.stderr) if result.stderr.strip() else "")
    run = GuestRun(tests, result.returncode, outcomes, summary_line(output), output, timings, guest, junit_xml)
    if result.returncode != 0 and not outcomes:
        raise V2GuestError(f"v2 guest: pytest exited {result.returncode} without a report: "
                           f"{output.strip()[-1500:]}")
    return run


def format_run(run: GuestRun) -> str:
    lines = [f"{o.outcome.upper():8} {o.node_id} ({o.seconds:.1f} s)"
             + (f"\n         {o.message.splitlines()[0][:300]}" if o.message and o.outcome != "passed" else "")
             for o in run.outcomes]
    t = run.timings
    lines.append(f"guest: kernel {run.guest.get('kernel')}, {run.guest.get('accelerator', '?').upper()}, "
                 f"cgroup2 controllers: {run.guest.get('cgroup_controllers')}")
    lines.append(f"times: boot {t.get('boot_s', 0):.1f} s, upload {t.get('upload_s', 0):.1f} s, "
                 f"pytest {t.get('pytest_s', 0):.1f} s, total {t.get('total_s', 0):.1f} s")
    lines.append(f"pytest in the v2 guest: {run.summary or '(no summary line)'} (exit {run.returncode})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.v2guest", description=__doc__.split("\n")[0])
    parser.add_argument("--subset", choices=sorted(SUBSETS), default="full")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds for pytest in the guest")
    parser.add_argument("--junit", type=Path, help="also keep the guest's JUnit XML report here")
    parser.add_argument("tests", nargs="*", help="node ids or files instead of the subset")
    args = parser.parse_args(argv)
    reason = check_capability()
    if reason is not None:
        print(f"v2 guest: SKIPPED, no VM can run here: {reason}", flush=True)
        return 0
    from runtime.image.build import ensure_image

    image = ensure_image(progress=lambda msg: print(f"image: {msg}", flush=True))
    tests = resolve_tests(args.tests or SUBSETS[args.subset])
    try:
        run = run_in_guest(image, tests, timeout=args.timeout, progress=lambda m: print(f"v2 guest: {m}", flush=True))
    except (InstanceError, PlatformUnavailable) as exc:
        print(f"v2 guest: {exc}", file=sys.stderr)
        return 1
    print(run.output.rstrip())
    print(format_run(run))
    if args.junit:
        args.junit.write_text(run.junit_xml)
    return 0 if run.passed else 1


if __name__ == "__main__":
    sys.exit(main())
