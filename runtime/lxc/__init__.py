"""LXC 5 (Debian's lxc package) as a platform of its own, on the suite's shared rootfs.

`config` renders an LXC container config from an `InstanceSpec`, `host` knows the host's LXC (tools,
version, lxc-net setting, AppArmor), and `platform` drives the container through the LXC tools.
"""
