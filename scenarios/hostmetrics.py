"""Host-side readings for footprint scenarios: proportional memory of processes, page cache size."""

from __future__ import annotations

import re
from pathlib import Path

from runtime.linux.process import descendants  # noqa: F401  (re-exported: scenarios measure instance trees)


def pss_bytes(pids: list[int]) -> int:
    """Sum of Pss (proportional set size) over the processes and their threads' shared mappings."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue  # exited meanwhile
        match = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
        if match:
            total += int(match.group(1)) * 1024
    return total


def meminfo_bytes(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    return int(match.group(1)) * 1024 if match else 0


def drop_page_cache() -> None:
    """Write back and drop clean page cache, so a read shows up as cache growth (root only)."""
    import os

    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("1\n")
