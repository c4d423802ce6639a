"""What the host's LXC installation is: its tools and version, the lxc-net setting, AppArmor.

isolab never starts Debian's lxc-net service (it makes the bridge lxcbr0 with dnsmasq and a masquerade
rule): setup writes USE_LXC_BRIDGE="false" to /etc/default/lxc-net before the lxc package is installed
(runtime/lxc/host.toml), and the platform only records what the file says and whether lxcbr0 exists.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path

TOOLS = ("lxc-start", "lxc-attach", "lxc-stop", "lxc-info", "lxc-freeze", "lxc-unfreeze")
LXC_NET_DEFAULTS = Path("/etc/default/lxc-net")
LXC_BRIDGE = "lxcbr0"
APPARMOR_ENABLED = Path("/sys/module/apparmor/parameters/enabled")


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


@functools.cache
def version() -> str:
    """LXC's version as `lxc-start --version` prints it (e.g. '5.0.2'), '?' if it says nothing."""
    try:
        out = subprocess.run(["lxc-start", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


def lxc_net_setting(path: Path = LXC_NET_DEFAULTS) -> str | None:
    """USE_LXC_BRIDGE as /etc/default/lxc-net sets it ('false', 'true'), None when the file or line is absent."""
    try:
        text = path.read_text()
    except OSError:
        return None
    value = None
    for line in text.splitlines():
        match = re.fullmatch(r"\s*USE_LXC_BRIDGE\s*=\s*['\"]?([^'\"\s#]*)['\"]?\s*(#.*)?", line)
        if match:
            value = match.group(1)  # the last assignment wins, as in the shell
    return value


def lxc_bridge_present() -> bool:
    return Path(f"/sys/class/net/{LXC_BRIDGE}").exists()


def apparmor() -> tuple[str | None, str]:
    """(the lxc.apparmor.profile to set, or None to set none; what that means, for env.json).

    Debian's default.conf asks for LXC's `generated` profile; that needs the kernel's AppArmor and
    apparmor_parser. Without AppArmor in the kernel there is no profile to set at all."""
    try:
        enabled = APPARMOR_ENABLED.read_text().strip() == "Y"
    except OSError:
        enabled = False
    if not enabled:
        return None, "none: AppArmor is not in this kernel (no LSM confinement; LXC's generated profile not applied)"
    if shutil.which("apparmor_parser") is None:
        return "unconfined", "unconfined: the kernel has AppArmor but apparmor_parser is not installed"
    return "generated", "generated (LXC's per-container profile, as Debian's default.conf)"
