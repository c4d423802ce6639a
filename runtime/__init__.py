"""isolab's platforms: the shared image, the native baseline, our container runtime and the libvirt VM driver."""
