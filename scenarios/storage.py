"""Storage operations users feel: making an instance's root, the first write to a file of the image
(copy-up), committing an instance's changes, and disk per instance.

Per repetition, through the Platform interface only (every platform realises its own storage: layered
roots, a copy per instance, a copy-on-write disk image, or the host's directory):
  create    `instances` instances started one after another and kept alive: the time to a ready
            instance (first command answered) of the 1st (no other instance of the platform alive; an
            image's one-off preparation, such as importing it into a pool, happens once per run and lands
            in the first repetition only) and of the last (the 10th by default, beside the others)
  copy-up   in the 1st instance: open a large file of the image for appending, write one byte, fsync,
            close (the platform copies the file, or the touched blocks, into the instance's writable
            storage), then the same again (already copied: the plain write, which also shows the few ms
            of starting dd and date inside the instance); file_mib says how large
  disk      what the instance adds on the host's disk (Instance.disk_usage_bytes) right after create and
            after the copy-up write
  commit    write `commit_mib` MiB of new data plus small files into the 1st instance, then commit its
            changes as a new image (Instance.commit; a platform that cannot commit is recorded so, the
            image is removed right after)
Where an operation cannot apply (a read-only image root, a platform without commit) its samples are
absent and raw/storage.log says why; nothing is measured as if it had worked.
"""

from __future__ import annotations

import time

from runtime.platform import Instance, Platform
from runtime.spec import ExecResult, InstanceSpec
from scenarios.base import DAY_S, Range, RawSink, Sample, ScenarioError, check

NAME = "storage"
DESCRIPTION = "instance root create (1st, 10th), copy-up first write, commit, disk per instance"
TOOLS = ("date", "stat", "dd", "sync", "seq")
MIB = 2**20
MEMORY = 512 * MIB  # ten instances alive at once: a VM's default 1 GiB each would be 10 GiB of this host
PRECISION_METRICS = ("storage_create_s", "storage_copy_up_write_s")
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "storage_create_s": ("s", ("which",)),
    "storage_copy_up_write_s": ("s", ("file_mib", "write")),
    "storage_commit_s": ("s", ("change_mib",)),
    "storage_disk_mib": ("MiB", ("after",)),
}
_SECONDS = Range("lower", DAY_S, "a day")
RANGES: dict[str, Range] = {
    "storage_create_s": _SECONDS, "storage_copy_up_write_s": _SECONDS, "storage_commit_s": _SECONDS,
    "storage_disk_mib": Range("lower", zero_ok=True),  # a fresh instance may add nothing
}

PROFILES: dict[str, dict[str, object]] = {
    "quick": {"instances": 10, "copy_up_file": "/usr/lib/x86_64-linux-gnu/libicudata.so.72.1", "commit_mib": 16},
    "full": {"instances": 10, "copy_up_file": "/usr/lib/x86_64-linux-gnu/libicudata.so.72.1", "commit_mib": 64},
}

# open for append, write one byte, fsync, close (dd conv=fsync), timed by the instance's own clock: the time
# includes starting dd and date (a few ms, the same in the rewrite, which shows that floor)
WRITE_ONE = ('f="$1"; t0=$(date +%s%N) && dd if=/dev/zero of="$f" bs=1 count=1 oflag=append conv=notrunc,fsync '
             'status=none && t1=$(date +%s%N) && echo $(( t1 - t0 ))')


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _ready(platform: Platform) -> tuple[Instance, float]:
    begin = time.perf_counter()
    instance = platform.create(InstanceSpec(memory=MEMORY))
    try:
        check(instance.exec(["true"], timeout=300), instance)
    except BaseException:
        instance.destroy()
        raise
    return instance, time.perf_counter() - begin


def _nanoseconds(result: ExecResult, what: str) -> int:
    try:
        value = int(result.stdout.split()[-1])
    except (IndexError, ValueError):
        raise ScenarioError(f"storage: {what} printed no time: {result.stdout[-200:]!r}") from None
    if value <= 0:
        raise ScenarioError(f"storage: {what} took {value} ns by the instance's clock (not a measurement)")
    return value


def _disk(instance: Instance, after: str, log: list[str]) -> list[Sample]:
    used = instance.disk_usage_bytes()
    if used is None:
        log.append(f"disk after {after}: {instance.platform} does not say what an instance adds on the host's disk")
        return []
    return [Sample("storage_disk_mib", used / MIB, "MiB", {"after": after})]


def _copy_up(instance: Instance, params: dict[str, object], log: list[str]) -> list[Sample]:
    path = str(params["copy_up_file"])
    size = check(instance.exec(["stat", "-c", "%s", path], timeout=60), instance).stdout.strip()
    file_mib = round(int(size) / MIB, 1)
    probe = instance.exec(["sh", "-c", WRITE_ONE, "sh", path], timeout=600)
    if not probe.ok:
        log.append(f"copy-up: not measured on {instance.platform}: the image's {path} is not writable there "
                   f"({probe.stderr_tail() or probe.stdout.strip()})")
        return []
    first = _nanoseconds(probe, "the first write") / 1e9
    again = _nanoseconds(check(instance.exec(["sh", "-c", WRITE_ONE, "sh", path], timeout=600), instance),
                         "the second write") / 1e9
    log.append(f"copy-up of {path} ({size} bytes): first write {first:.6f} s, second {again:.6f} s")
    meta = {"file_mib": file_mib}
    return [Sample("storage_copy_up_write_s", first, "s", {**meta, "write": "first"}),
            Sample("storage_copy_up_write_s", again, "s", {**meta, "write": "second"})]


def _commit(instance: Instance, params: dict[str, object], repetition_tag: str, log: list[str]) -> list[Sample]:
    mib = int(params["commit_mib"])  # type: ignore[call-overload]
    if not instance.can_commit:
        log.append(f"commit: not measured on {instance.platform}: it has no images to commit an instance to")
        return []
    change = (f"mkdir -p /srv/isl-commit && dd if=/dev/urandom of=/srv/isl-commit/blob bs=1M count={mib} "
              "status=none && for i in $(seq 1 100); do echo $i > /srv/isl-commit/small-$i; done && "
              "rm -f /etc/motd && sync")
    check(instance.exec(["sh", "-c", change], timeout=600), instance)
    begin = time.perf_counter()
    remove = instance.commit(f"isl-storage-{repetition_tag}")
    elapsed = time.perf_counter() - begin
    remove()
    log.append(f"commit of {mib} MiB + 100 small files + 1 deletion: {elapsed:.6f} s")
    return [Sample("storage_commit_s", elapsed, "s", {"change_mib": mib})]


def run_platform(platform: Platform, params: dict[str, object], raw: RawSink) -> list[Sample]:
    count = int(params["instances"])  # type: ignore[call-overload]
    if count < 1:
        raise ScenarioError(f"storage: instances must be at least 1, not {count}")
    samples: list[Sample] = []
    log: list[str] = []
    instances: list[Instance] = []
    try:
        for index in range(count):
            instance, elapsed = _ready(platform)
            instances.append(instance)
            log.append(f"instance {index + 1} ({instance.instance_id}) ready in {elapsed:.6f} s")
            if index in (0, count - 1):
                samples.append(Sample("storage_create_s", elapsed, "s", {"which": _ordinal(index + 1)}))
        first = instances[0]
        samples += _disk(first, "create", log)
        copied = _copy_up(first, params, log)
        samples += copied
        if copied:
            samples += _disk(first, "copy-up", log)
        samples += _commit(first, params, first.instance_id.rsplit("-", 1)[-1], log)
    finally:
        for instance in instances:
            instance.destroy()
        raw("storage.log", "\n".join(log) + "\n")
    return samples
