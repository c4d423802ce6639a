"""scenarios.kernelid: the host's kernel is recognised by its boot id or its boot time."""

from scenarios import kernelid

HOST = ("host-boot", "1795860000")


def test_either_id_names_the_host_kernel():
    assert kernelid.shares_host_kernel("host-boot\nbtime 1795860000\n", HOST)
    assert kernelid.shares_host_kernel("masked-boot\nbtime 1795860000\n", HOST)  # LXC's own boot_id
    assert kernelid.shares_host_kernel("host-boot\n", HOST)  # no /proc/stat btime line
    assert not kernelid.shares_host_kernel("guest-boot\nbtime 1795861234\n", HOST)
    assert not kernelid.shares_host_kernel("", HOST)
    assert kernelid.parse("btime 5\n") == ("", "5")


def test_the_host_reads_both():
    boot_id, btime = kernelid.host_ids()
    assert len(boot_id) == 36 and btime.isdigit()
