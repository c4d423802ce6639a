"""The `vm` platform: the shared rootfs booted as a libvirt guest (KVM where it can run, else TCG)."""
