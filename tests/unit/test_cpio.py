"""The initramfs writer emits the newc format the kernel unpacks."""

from runtime.image.cpio import Archive


def parse_newc(blob: bytes):
    entries, offset = [], 0
    while True:
        header = blob[offset:offset + 110]
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i: 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_start = offset + 110
        name = blob[name_start:name_start + namesize - 1].decode()
        data_start = name_start + namesize + (-(110 + namesize) % 4)
        data = blob[data_start:data_start + size]
        offset = data_start + size + (-size % 4)
        if name == "TRAILER!!!":
            return entries
        entries.append((name, mode, data))


def test_round_trip():
    archive = Archive()
    archive.add_dir("bin")
    archive.add_file("init", b"#!/bin/sh\necho hi\n", 0o755)
    archive.add_symlink("bin/sh", "busybox")
    archive.add_file("odd", b"x" * 5)
    entries = parse_newc(archive.finish())
    assert [e[0] for e in entries] == ["bin", "init", "bin/sh", "odd"]
    assert entries[0][1] == 0o040755
    assert entries[1][1] == 0o100755 and entries[1][2] == b"#!/bin/sh\necho hi\n"
    assert entries[2][1] == 0o120777 and entries[2][2] == b"busybox"
    assert entries[3][2] == b"xxxxx"
