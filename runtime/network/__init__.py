"""The suite's isolated network: a bridge with no uplink, addresses, veths, tc, the peer netns, and
the port-forward of `nat` mode.

Shared by the container runtime and the VM driver. Traffic only ever flows between the suite's own
namespaces and bridges; there is no uplink and no NAT to the outside. The one exception to "no
forwarding" is `nat` mode (runtime.network.nat): DNAT from the suite bridge's host address to a
private suite bridge, with IPv4 forwarding switched on only on those two bridges and an nftables
table `ip isolab` that drops anything else entering or leaving them.
"""
