"""Production OCI runtimes (crun, runc) as platforms of their own, on the suite's shared rootfs.

`bundle` builds an OCI runtime config from an `InstanceSpec` (shared with the container start
benchmark), `hybrid` hides the cgroup2 mount of a cgroup v1 hybrid host from crun, and `platform` is the
one Platform class, parametrised by the runtime binary, behind the `crun` and `runc` registry lines.
"""
