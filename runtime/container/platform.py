"""The `container` platform of the harness: InstanceSpec -> a running container of our own runtime.

Each instance is a container running the tiny init (a sleeping pid 1); the harness `exec`s commands
into it through setns. Options: `image_name` (a committed image, default `base` = the shared rootfs),
`layers` (explicit extra read-only layer directories stacked on top of it, base first) and
`storage_driver` (runtime.container.storage; every instance's `InstanceSpec.storage_driver`).

Variants: `container[btrfs]` (any driver in runtime.container.storage.DRIVERS) is this platform with that
storage driver, named so in results and the report; its description names the driver.

`container-userns` is the same platform with a user namespace forced on for every instance
(`InstanceSpec.userns`; runtime.container.userns): the container's root is an unprivileged host uid.
"""

from __future__ import annotations

import dataclasses
import os
import platform as host_platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from runtime.container import init as pid1
from runtime.container import seccomp, userns
from runtime.container.cgroups import cgroup_version
from runtime.container.container import Container
from runtime.container.hardening import DEFAULT_CAP_NAMES
from runtime.container.layers import BASE, LayerStore
from runtime.container.storage import DEFAULT_DRIVER, StorageDriver, get_driver, validate_driver
from runtime.errors import InstanceError, IsolabError, PlatformUnavailable, SpecError
from runtime.image.store import Image
from runtime.linux import transfer
from runtime.platform import KIND_CONTAINER, ROLE_OURS, Instance, Platform, PlatformInfo, RunOnce
from runtime.spec import ExecResult, InstanceSpec


class ContainerInstance(Instance):
    platform = "container"

    def __init__(self, container: Container, platform_name: str | None = None) -> None:
        self.container = container
        if platform_name is not None:
            self.platform = platform_name
        elif container.mapping is not None:
            self.platform = ContainerUsernsPlatform.name
        self.instance_id = container.instance_id
        self.spec = container.spec
        self.start_phases = container.start_phases

    def exec(self, argv: Sequence[str], timeout: float = 600.0,
             env: dict[str, str] | None = None) -> ExecResult:
        return self.container.exec(argv, timeout=timeout, env=env)

    def put_file(self, local: Path, remote: str) -> None:
        """Resolved inside the container's root (openat2 RESOLVE_IN_ROOT): its symlinks cannot reach the host."""
        mapping = self.container.mapping
        transfer.put_file(self.container.root_path(), Path(local), remote, f"container {self.instance_id}",
                          owner=None if mapping is None else (mapping.first, mapping.first))

    def host_pids(self) -> list[int]:
        """The container's init (pid 1 inside); its descendants are the rest of the container."""
        pid = getattr(self.container, "pid", None)
        return [pid] if pid else []

    def get_file(self, remote: str, local: Path) -> None:
        transfer.get_file(self.container.root_path(), remote, Path(local), f"container {self.instance_id}")

    @property
    def address(self) -> str | None:
        return self.container.network.address

    @property
    def published_address(self) -> str | None:
        return self.container.network.published_address

    def ignored_limits(self) -> dict[str, object]:
        return dict(self.container.ignored)

    def disk_usage_bytes(self) -> int:
        return self.container.disk_usage_bytes()

    def metadata(self) -> dict[str, object]:
        meta: dict[str, object] = {"cgroup_version": cgroup_version(), "image": self.container.image_name,
                                   "seccomp": self.container.seccomp_description(),
                                   "storage_driver": self.container.spec.storage_driver}
        if self.container.mapping is not None:
            meta["userns"] = userns.describe(self.container.mapping)
            meta["userns_layers"] = self.container.userns_layers or "unknown"
        meta.update(self.container.quota_facts)
        if self.container.ignored:
            meta["limits_ignored"] = sorted(self.container.ignored)
        return meta

    can_commit = True

    def commit(self, name: str) -> Callable[[], None]:
        """The container's changes as the image `name` (runtime.container.layers), frozen meanwhile (as
        `docker commit` pauses by default); returns what removes that image."""
        store = LayerStore(self.container.layers[0])
        mapping = self.container.mapping
        self.container.cgroup.freeze(True)
        try:
            store.commit(self.container.write_layer, self.container.image_name, name,
                         fix_ids=None if mapping is None else lambda top: userns.unshift_tree(top, mapping))
        finally:
            self.container.cgroup.freeze(False)
        return lambda: store.remove(name)

    def quiesce(self) -> str | None:
        self.container.cgroup.freeze(True)
        return "cgroup freezer"

    def wake(self) -> None:
        self.container.cgroup.freeze(False)

    def destroy(self) -> None:
        self.container.destroy()


#: Plot colours of the storage-driver variants (the default driver keeps the platform's colour).
STORAGE_COLOURS = {"overlay": "#55a868", "btrfs": "#2a9d8f", "vfs": "#a1a14a", "devicemapper": "#6b6b6b"}


def _unavailable_drivers() -> dict[str, str]:
    """Storage drivers this host cannot use, with the reason (for the report's storage section)."""
    from runtime.container.storage import DRIVER_NAMES

    return {name: reason for name in DRIVER_NAMES if (reason := get_driver(name).unavailable()) is not None}


class ContainerPlatform(Platform):
    name = "container"
    #: Every instance gets a user namespace (the container-userns variant), whatever its spec says.
    userns = False

    @property  # type: ignore[override]
    def network_modes(self) -> tuple[str, ...]:
        """none, host, bridge, and nat where the host has nftables with DNAT (runtime.network.nat)."""
        from runtime.network.nat import nat_unavailable

        return ("none", "host", "bridge") + (("nat",) if nat_unavailable() is None else ())

    def __init__(self, image: Image | None = None, *, image_name: str = BASE,
                 layers: Sequence[str | Path] = (), storage_driver: str | None = None, **_options: object) -> None:
        self.image = image
        self.image_name = image_name
        self.extra_layers = [Path(p) for p in layers]
        self.storage_driver = validate_driver(storage_driver or DEFAULT_DRIVER)
        if storage_driver is not None:  # a variant: its own name in results and the report
            self.name = f"{type(self).name}[{storage_driver}]"

    @classmethod
    def variant_options(cls, variant: str) -> dict[str, object]:
        """`container[btrfs]`: the storage driver (runtime.container.storage.DRIVERS)."""
        try:
            return {"storage_driver": validate_driver(variant)}
        except SpecError as exc:
            raise SpecError(f"platform {cls.name}[{variant}]: {exc}") from None

    @property
    def storage(self) -> StorageDriver:
        return get_driver(self.storage_driver)

    def _storage_text(self) -> str:
        return f"storage {self.storage_driver}: {self.storage.mechanism}"

    def layer_store(self) -> LayerStore:
        if self.image is None:
            raise InstanceError("container: no image given")
        return LayerStore(self.image.rootfs)

    def check_available(self) -> None:
        if os.geteuid() != 0:
            raise PlatformUnavailable("container: needs root (namespaces, cgroups, overlayfs)")
        if (reason := self.storage.unavailable()) is not None:
            raise PlatformUnavailable(f"{self.name}: storage driver {self.storage_driver}: {reason}")
        try:
            cgroup_version()
            import pyroute2  # noqa: F401
        except (IsolabError, ImportError) as exc:
            raise PlatformUnavailable(f"container: {exc}") from exc
        seccomp.program("default", DEFAULT_CAP_NAMES)  # libseccomp's bindings are there
        pid1.build()  # the container init is built (or can be)

    def create(self, spec: InstanceSpec) -> ContainerInstance:
        if self.userns and not spec.userns:
            spec = dataclasses.replace(spec, userns=True)
        if spec.storage_driver != self.storage_driver:
            spec = dataclasses.replace(spec, storage_driver=self.storage_driver)
        layers = self.layer_store().resolve(self.image_name) + self.extra_layers
        container = Container(spec, layers, None, image_name=self.image_name)
        try:
            container.create()
            container.start()
        except BaseException:
            container.destroy()
            raise
        return ContainerInstance(container, self.name)

    def _display(self, text: str) -> str:
        return text if self.storage_driver == DEFAULT_DRIVER else f"{text} ({self.storage_driver})"

    @property  # type: ignore[override]
    def one_shot(self) -> str:
        return ("the command as pid 1, writable layer on a tmpfs in the container's mount namespace, waited "
                "for and removed in-process" if not self.userns and self.storage_driver == DEFAULT_DRIVER else
                "the command as pid 1, volatile writable layer, waited for and removed in-process")

    def run_once(self, argv: Sequence[str], spec: InstanceSpec | None = None, timeout: float = 120.0) -> RunOnce:
        """The command itself as pid 1 (no init, like crun), stdio on the container's /dev/null, the same
        lockdown as every container; the writable layer is thrown away with it (ephemeral where it can be,
        else volatile)."""
        spec = spec or InstanceSpec()
        if self.userns and not spec.userns:
            spec = dataclasses.replace(spec, userns=True)
        if spec.storage_driver != self.storage_driver:
            spec = dataclasses.replace(spec, storage_driver=self.storage_driver)
        begin = time.perf_counter()
        layers = self.layer_store().resolve(self.image_name) + self.extra_layers
        ephemeral = not (spec.userns or spec.volume or spec.disk_quota is not None
                         or spec.storage_driver != DEFAULT_DRIVER)
        container = Container(spec, layers, list(argv), init=False, quiet=True, volatile=True,
                              ephemeral=ephemeral, image_name=self.image_name)
        try:
            container.start()
            code = container.wait(timeout=timeout)
        finally:
            container.destroy()
        return RunOnce(time.perf_counter() - begin, code, self.one_shot, dict(container.start_phases.phases),
                       instance_id=container.instance_id)

    def describe(self) -> PlatformInfo:
        return PlatformInfo(name=self.name, kind=KIND_CONTAINER, display_name=self._display("isolab container"),
                            colour=STORAGE_COLOURS.get(self.storage_driver, "#55a868"),
                            mechanism=f"namespaces + cgroup v{cgroup_version()}, {self._storage_text()}",
                            emulated=False, baseline=False, role=ROLE_OURS)

    def environment(self) -> dict[str, object]:
        return {"runtime": "isolab container runtime (in-process fork, pivot_root)",
                "storage_driver": self.storage_driver, "storage": self.storage.mechanism,
                "storage_drivers_unavailable": _unavailable_drivers(),
                "cgroup_version": cgroup_version(), "kernel": host_platform.release(),
                "namespaces": "pid mnt uts ipc net", "image": self.image_name,
                "seccomp": seccomp.describe("default", DEFAULT_CAP_NAMES)}

    def cleanup_leftovers(self) -> list[str]:
        """Storage drivers' own leftovers (a btrfs pool nobody uses); instances' roots go with runtime.sweep."""
        from runtime.container.storage.sweep import sweep_storage

        return sweep_storage(everything=False)




class ContainerUsernsPlatform(ContainerPlatform):
    """The container platform with a user namespace for every instance (root inside is host uid 100000)."""

    name = "container-userns"
    userns = True
    default_scope = "isolation"  # by default only the isolation scenarios; name it to run it on any scenario

    def describe(self) -> PlatformInfo:
        return PlatformInfo(name=self.name, kind=KIND_CONTAINER,
                            display_name=self._display("isolab container + userns"), colour="#8172b2",
                            mechanism=f"namespaces + user namespace + cgroup v{cgroup_version()}, "
                                      f"{self._storage_text()}",
                            emulated=False, baseline=False, role=ROLE_OURS)

    def environment(self) -> dict[str, object]:
        return {**super().environment(), "namespaces": "user pid mnt uts ipc net",
                "userns": userns.describe(),
                "layers": "idmapped mounts (mount_setattr MOUNT_ATTR_IDMAP) where the layers' filesystem allows, "
                          "else chowned copies cached beside the layer (per sample: userns_layers)"}


__all__ = ["ContainerInstance", "ContainerPlatform", "ContainerUsernsPlatform", "Instance"]
