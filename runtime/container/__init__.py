"""isolab's own container runtime: namespaces, layered overlay root, cgroups, network, hardening."""
