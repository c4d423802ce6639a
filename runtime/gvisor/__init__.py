"""gVisor (`runsc`, Debian package runsc) as a platform of its own: a sandboxed container.

`probe` finds which gVisor platform (kvm, systrap, ptrace) runs a sandbox on this host; `platform` is the
Platform, which reuses runtime/oci (bundle, state dirs, overlay root, cgroups, cleanup) with runsc as the
OCI runtime and adds what differs: runsc's global flags, exec and file transfer through the sentry.
"""
