"""Build the shared root filesystem from a Recipe and derive the VM artefacts from it.

Steps, in order: debootstrap (minbase, with the workload tools, the guest kernel and agent),
add our guest files, trim the apt cache, extract the uncompressed vmlinux from /boot/vmlinuz-*,
assemble the initramfs, and make the ext4 image with `mkfs.ext4 -d` (no loop mount). Progress is
reported through a callback; this module prints nothing itself.
"""

from __future__ import annotations

import fcntl
import json
import lzma
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from runtime.errors import ImageError
from runtime.image import cpio
from runtime.image.recipe import Recipe, guest_file_text
from runtime.image.store import MANIFEST, Image, ImageStore

Progress = Callable[[str], None]

DEFAULT_MIRROR = "http://deb.debian.org/debian"
_XZ_MAGIC = b"\xfd7zXZ\x00"


def host_mirror() -> str:
    """The Debian mirror the host's apt uses (ISOLAB_MIRROR overrides), else deb.debian.org."""
    if os.environ.get("ISOLAB_MIRROR"):
        return os.environ["ISOLAB_MIRROR"]
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"(?:^URIs:\s*|^deb\s+(?:\[[^\]]*\]\s+)?)(\S+/debian)/?\s*$", text, re.M):
            return match.group(1)
    return DEFAULT_MIRROR


@contextmanager
def _build_lock(store: ImageStore) -> Iterator[None]:
    store.root.mkdir(parents=True, exist_ok=True)
    with open(store.root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def sweep_partial_builds(store: ImageStore | None = None) -> list[str]:
    """For cleanup: remove interrupted builds (`<hash>.partial-<pid>`), unless a build is running now
    (its lock is held). What a killed build left running is killed first (debootstrap and the
    processes chrooted into or working in the partial tree), then its mounts (debootstrap's /proc,
    /sys) are detached; a tree that still has mounts is left alone rather than deleted through them."""
    from runtime.linux import syscalls as sc
    from runtime.linux.process import kill_matching, process_cmdline, process_cwd, process_root

    store = store or ImageStore()
    partials = store.partial_dirs()
    if not partials:
        return []
    removed: list[str] = []
    with open(store.root / ".build.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []  # a live run is building: its partial tree is not a leftover
        prefixes = tuple(f"{p}/" for p in partials)

        def match(pid: int) -> str | None:
            for where in (process_root(pid), process_cwd(pid)):
                if where and (where + "/").startswith(prefixes):
                    return f"in the interrupted image build {where}"
            if any(arg.startswith(prefixes) or f"{arg}/" in prefixes for arg in process_cmdline(pid)):
                return "working on an interrupted image build"
            return None

        removed += kill_matching(match)
        for partial in partials:
            removed += sc.detach_all_under(partial)
            if sc.mounts_under(partial):
                continue
            shutil.rmtree(partial, ignore_errors=True)
            removed.append(str(partial))
    return removed


def ensure_image(recipe: Recipe | None = None, store: ImageStore | None = None, *,
                 rebuild: bool = False, progress: Progress = lambda _msg: None) -> Image:
    """Return the cached image for `recipe`, building it first if absent (or if rebuild)."""
    recipe = recipe or Recipe()
    store = store or ImageStore()
    digest = recipe.digest()
    if not rebuild and (image := store.get(digest)):
        return image
    for tool in ("debootstrap", "mkfs.ext4", "modprobe"):
        if shutil.which(tool) is None:
            raise ImageError(f"cannot build the image: '{tool}' is not installed (run 'nox -s setup')")
    with _build_lock(store):
        if not rebuild and (image := store.get(digest)):
            return image  # another process built it while we waited
        for leftover in store.partial_dirs():
            shutil.rmtree(leftover, ignore_errors=True)
        partial = store.root / f"{digest}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            manifest = _build_into(partial, recipe, progress)
            (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
            final = store.path_for(digest)
            if final.exists():
                old = final.with_name(f"{digest}.old-{os.getpid()}")
                final.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            partial.rename(final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return store.require(digest)


def _run(argv: list[str], what: str, progress: Progress | None = None, **kwargs: object) -> str:
    """Run a build step; on failure raise ImageError naming the step and the tool's last words."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
        if progress and line.startswith("I: "):
            progress(line[3:].rstrip())
    if proc.wait() != 0:
        errors = [line for line in lines if line.startswith("E: ")]
        tail = " | ".join(errors[-2:] or [line for line in lines[-4:] if line])
        raise ImageError(f"image build failed at {what} ({argv[0]} exited {proc.returncode}): {tail}")
    return "\n".join(lines)


def _build_into(target: Path, recipe: Recipe, progress: Progress) -> dict[str, object]:
    started = time.monotonic()
    rootfs = target / "rootfs"
    mirror = host_mirror()
    progress(f"debootstrap {recipe.suite} ({recipe.variant}, {len(recipe.packages)} extra packages) "
             f"from {mirror}")
    _run(["debootstrap", f"--variant={recipe.variant}", f"--components={','.join(recipe.components)}",
          f"--include={','.join(recipe.packages)}", recipe.suite, str(rootfs), mirror],
         "debootstrap", progress)

    progress("adding guest files")
    for inside, (resource, mode) in recipe.guest_files.items():
        path = rootfs / inside.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(guest_file_text(resource))
        path.chmod(mode)
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    for initrd in (rootfs / "boot").glob("initrd.img-*"):
        initrd.unlink()  # the distribution's initramfs; the VM boots ours

    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise ImageError(f"image build: no kernel in {rootfs / 'boot'} (is linux-image-amd64 in the recipe?)")
    kernel_version = kernels[-1].name.removeprefix("vmlinuz-")
    progress(f"extracting uncompressed vmlinux {kernel_version}")
    extract_vmlinux(kernels[-1], target / "vmlinux")

    progress("assembling initramfs")
    modules = module_load_order(rootfs, kernel_version, recipe.initramfs_modules)
    build_initramfs(rootfs, modules, target / "initramfs.img")

    size_mib = _tree_size_mib(rootfs) + recipe.ext4_headroom_mib
    progress(f"mkfs.ext4 -d ({size_mib} MiB, sparse)")
    _run(["mkfs.ext4", "-q", "-F", "-L", "isolab-root", "-E", "root_owner=0:0", "-d", str(rootfs),
          str(target / "rootfs.ext4"), f"{size_mib}M"], "mkfs.ext4")

    return {
        "recipe": recipe.canonical(),
        "digest": recipe.digest(),
        "mirror": mirror,
        "kernel_version": kernel_version,
        "initramfs_modules": [m.name for m in modules],
        "packages": _package_versions(rootfs),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.monotonic() - started, 1),
    }


def extract_vmlinux(bzimage: Path, out: Path) -> None:
    """Write the ELF kernel inside a bzImage whose payload is xz-compressed."""
    data = bzimage.read_bytes()
    offset = data.find(_XZ_MAGIC)
    if offset < 0:
        raise ImageError(f"{bzimage}: no xz payload found (only xz-compressed kernels are supported)")
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        elf = decompressor.decompress(data[offset:])
    except lzma.LZMAError as exc:
        raise ImageError(f"{bzimage}: xz payload at offset {offset} does not decompress: {exc}") from exc
    if not elf.startswith(b"\x7fELF"):
        raise ImageError(f"{bzimage}: decompressed payload is not an ELF kernel")
    out.write_bytes(elf)


def module_load_order(rootfs: Path, kernel_version: str, wanted: tuple[str, ...]) -> list[Path]:
    """Module files to insmod, dependencies first, each once (modprobe --show-depends on the image)."""
    order: list[Path] = []
    for module in wanted:
        text = _run(["modprobe", "-S", kernel_version, "-d", str(rootfs), "--show-depends", module],
                    f"resolving module {module}")
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "insmod":
                path = Path(parts[1])
                if path not in order:
                    order.append(path)
    return order


def build_initramfs(rootfs: Path, modules: list[Path], out: Path) -> None:
    """An uncompressed newc cpio: static busybox, the modules, and an /init that mounts /dev/vda."""
    busybox = rootfs / "bin/busybox"
    if not busybox.is_file():
        raise ImageError(f"image build: {busybox} missing (busybox-static belongs in the recipe)")
    archive = cpio.Archive()
    for directory in ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"):
        archive.add_dir(directory)
    archive.add_file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in ("sh", "mount", "insmod", "switch_root", "umount", "mkdir", "cat", "sleep", "echo"):
        archive.add_symlink(f"bin/{applet}", "busybox")
    names = []
    for module in modules:
        name = module.name
        archive.add_file(f"lib/modules/{name}", module.read_bytes(), 0o644)
        names.append(name)
    init = INITRAMFS_INIT.replace("@MODULES@", " ".join(names))
    archive.add_file("init", init.encode(), 0o755)
    out.write_bytes(archive.finish())


INITRAMFS_INIT = """#!/bin/sh
# isolab initramfs: load virtio + ext4, mount the root disk, hand over to its init.
# Marker on ttyS0: ISOLAB-INITRAMFS (the kernel has booted and run its first userspace program).
mount -t devtmpfs devtmpfs /dev
echo ISOLAB-INITRAMFS > /dev/ttyS0
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in @MODULES@; do insmod /lib/modules/$m 2>/dev/null; done
root=/dev/vda
for word in $(cat /proc/cmdline); do
  case "$word" in root=/dev/*) root="${word#root=}" ;; esac
done
i=0
while [ ! -b "$root" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
if ! mount -t ext4 -o rw "$root" /newroot; then
  echo "isolab initramfs: cannot mount $root" > /dev/console
  sleep 2; echo o > /proc/sysrq-trigger
fi
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /sbin/isolab-init
"""


def _tree_size_mib(path: Path) -> int:
    out = subprocess.run(["du", "-sm", "--apparent-size", str(path)], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.split()[0])


def _package_versions(rootfs: Path) -> dict[str, str]:
    out = subprocess.run(["dpkg-query", f"--admindir={rootfs}/var/lib/dpkg", "-W",
                          "-f", "${Package}\t${Version}\n"], capture_output=True, text=True)
    versions = {}
    for line in out.stdout.splitlines():
        name, _, version = line.partition("\t")
        versions[name] = version
    return versions
