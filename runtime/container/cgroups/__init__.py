"""cgroups behind one interface: v1 (per-controller hierarchies) and v2 (unified), chosen by detection."""

from runtime.container.cgroups.base import Cgroup, CgroupLimits, CgroupStats
from runtime.container.cgroups.detect import cgroup_version, make_cgroup

__all__ = ["Cgroup", "CgroupLimits", "CgroupStats", "cgroup_version", "make_cgroup"]
