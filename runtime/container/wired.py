"""The part of an instance that the production-runtime platforms (LXC, Docker, the OCI runtimes) share:
its network wired by our own code (runtime.container.netsetup) and the spec's limits it did not enforce."""

from __future__ import annotations

from runtime.container.netsetup import ContainerNetwork
from runtime.platform import Instance


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
