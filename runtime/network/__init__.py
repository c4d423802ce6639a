"""The suite's isolated network: a bridge with no uplink, addresses, veths, tc and the peer netns.

Shared by the container runtime and the VM driver. Traffic only ever flows between the suite's own
namespaces and the bridge; there is no NAT, no uplink and no forwarding to other interfaces.
"""
