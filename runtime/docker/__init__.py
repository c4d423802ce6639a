"""The `docker` platform: Docker Engine (Debian's docker.io) as a reference container runtime.

`daemon` owns the suite's own dockerd (started on demand, stopped when its last user exits or by
`cleanup`), `image` imports the shared rootfs as an image, `hostconfig` maps an InstanceSpec onto
Docker's create arguments, `streams` and `archive` carry exec output and files, `platform` is the
Platform and Instance the harness sees.
"""
