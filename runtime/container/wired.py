"""The part of an instance that the production-runtime platforms (LXC, Docker, the OCI runtimes) share:
its network wired by our own code (runtime.container.netsetup), the spec's limits it did not enforce, and, for
those whose root the host can see (LXC, crun, runc), file transfer through that view."""

from __future__ import annotations

import os
from pathlib import Path

from runtime.container.netsetup import ContainerNetwork
from runtime.linux import transfer
from runtime.platform import Instance
from runtime.spec import VOLUME_DIR


class WiredInstance(Instance):
    """An Instance whose subclass sets `network` (its ContainerNetwork) and `ignored` (limit -> why)."""

    network: ContainerNetwork
    ignored: dict[str, object]

    @property
    def address(self) -> str | None:
        return self.network.address

    @property
    def published_address(self) -> str | None:
        return self.network.published_address

    def ignored_limits(self) -> dict[str, object]:
        return dict(self.ignored)


class HostRootInstance(WiredInstance):
    """A WiredInstance whose subclass sets `root` (the container's root as the host mounts it) and `volume` (the
    host directory behind VOLUME_DIR, or None): files move through openat2 RESOLVE_IN_ROOT on that view."""

    root: Path
    volume: Path | None

    def _root_for(self, remote: str) -> tuple[Path, str]:
        """The host directory that holds `remote` and the path below it (the volume is not in the root)."""
        norm = os.path.normpath("/" + remote.lstrip("/"))  # (normpath keeps a leading "//")
        if self.volume is not None and (norm == VOLUME_DIR or norm.startswith(VOLUME_DIR + "/")):
            return self.volume, norm[len(VOLUME_DIR):] or "/"
        return self.root, remote

    def put_file(self, local: Path, remote: str) -> None:
        """Resolved inside the container's root (openat2 RESOLVE_IN_ROOT): its symlinks cannot reach the host."""
        root, path = self._root_for(remote)
        transfer.put_file(root, Path(local), path, f"{self.platform} {self.instance_id}")

    def get_file(self, remote: str, local: Path) -> None:
        root, path = self._root_for(remote)
        transfer.get_file(root, path, Path(local), f"{self.platform} {self.instance_id}")
