"""Whether an instance runs on the host's own kernel, told from inside it.

Two kernel-wide facts, printed by `COMMAND` inside the instance and compared with the host's: the boot
id (/proc/sys/kernel/random/boot_id) and the boot time (`btime` in /proc/stat). Either matching means
the host's kernel. The boot id alone is not enough: LXC mounts a per-container boot id over that file,
so a container would pass for a kernel of its own; a guest kernel differs in both.
"""

from __future__ import annotations

from pathlib import Path

#: Run by `sh -c` inside an instance: the boot id, then `btime <seconds>` (nothing if /proc/stat lacks it).
COMMAND = "cat /proc/sys/kernel/random/boot_id; grep '^btime ' /proc/stat; true"


def _btime(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("btime "):
            return line.split()[1] if len(line.split()) > 1 else ""
    return ""


def host_ids() -> tuple[str, str]:
    """The host's (boot id, boot time)."""
    return (Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
            _btime(Path("/proc/stat").read_text()))


def parse(out: str) -> tuple[str, str]:
    """(boot id, boot time) from COMMAND's output ('' for what is missing)."""
    words = out.split()
    return (words[0] if words and words[0] != "btime" else "", _btime(out))


def shares_host_kernel(out: str, host: tuple[str, str] | None = None) -> bool:
    boot_id, btime = parse(out)
    host_boot_id, host_btime = host if host is not None else host_ids()
    return bool(boot_id and boot_id == host_boot_id) or bool(btime and btime == host_btime)
