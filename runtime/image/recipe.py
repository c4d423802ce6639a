"""What the shared root filesystem is made of, and the hash that names a built image.

The hash covers everything that changes the image's content: suite, variant, components, packages,
the guest files we add, the initramfs module list and /init script, and the builder's format
version. It does not cover the mirror (the same packages from another mirror are the same image).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib import resources

# Bump when the build procedure changes what lands in the cache directory.
BUILD_FORMAT = 1

WORKLOAD_PACKAGES = (
    "fio", "iozone3", "iperf3", "netperf", "sockperf", "stress-ng", "sysbench",
    "xz-utils", "procps", "busybox-static", "iproute2", "kmod",
    "hpcc",  # HPC Challenge (HPL, STREAM, RandomAccess): the felter2015 study profile's hpcc scenario
)
GUEST_PACKAGES = ("linux-image-amd64", "qemu-guest-agent")
# What our container runtime needs when it runs inside a guest (the cgroup v2 guest runs the container
# tests): nft for the nat network mode, libseccomp's Python bindings for the seccomp filter. Python 3
# itself is in the tree already (fio depends on it).
RUNTIME_PACKAGES = ("nftables", "python3-seccomp")

# Load order for the VM's initramfs: virtio transport, disk, net, console (agent channel), ext4.
# Names are resolved with `modprobe --show-depends` against the image's own modules.dep.
INITRAMFS_MODULES = (
    "virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "crc32c_generic", "ext4",
)

GUEST_FILES = {
    # path inside the image -> (resource name under runtime/image/guest, mode)
    "/sbin/isolab-init": ("isolab-init", 0o755),
}


def guest_file_text(resource: str) -> str:
    return resources.files("runtime.image").joinpath("guest", resource).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Recipe:
    suite: str = "bookworm"
    variant: str = "minbase"
    components: tuple[str, ...] = ("main", "non-free")
    packages: tuple[str, ...] = WORKLOAD_PACKAGES + GUEST_PACKAGES + RUNTIME_PACKAGES
    initramfs_modules: tuple[str, ...] = INITRAMFS_MODULES
    ext4_headroom_mib: int = 3072
    guest_files: dict[str, tuple[str, int]] = field(default_factory=lambda: dict(GUEST_FILES))

    def canonical(self) -> dict[str, object]:
        data = asdict(self)
        data["packages"] = sorted(self.packages)
        data["guest_files"] = {
            path: {"sha256": hashlib.sha256(guest_file_text(res).encode()).hexdigest(), "mode": mode}
            for path, (res, mode) in sorted(self.guest_files.items())
        }
        data["build_format"] = BUILD_FORMAT
        from runtime.image.build import INITRAMFS_INIT  # late: build.py imports this module

        data["initramfs_init_sha256"] = hashlib.sha256(INITRAMFS_INIT.encode()).hexdigest()
        return data

    def digest(self) -> str:
        """Short, stable name of the image this recipe produces."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
