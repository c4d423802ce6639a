"""The harness (bench/) and the report (reporting/) never name a platform: platforms describe themselves.

Mirrors the house check in shared/hooks/before-stop: a platform name as a string literal in bench/ or
reporting/ fails. Exempt: bench/overhead.py and bench/*bench.py (benchmarks of one platform, as in the
hook). Platform packages declare their Debian packages in runtime/<pkg>/host.toml and report their
runtime's version in Platform.environment(), so hostsetup.py and envinfo.py are not exempt.
"""

import re
from pathlib import Path

from runtime.platform import PLATFORMS, load_platform

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("native", "container", "container-userns", "vm", "lxc", "docker", "gvisor", "crun", "runc")
EXEMPT = ("overhead.py",)
LITERAL = re.compile(r"""(?<![\w])(['"])(""" + "|".join(NAMES) + r""")\1(?![\w])""")


def offending_lines() -> list[str]:
    found = []
    for folder in ("bench", "reporting"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name in EXEMPT or path.name.endswith("bench.py"):
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if LITERAL.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_pattern_catches_names():
    assert LITERAL.search('if name == "vm":') and LITERAL.search("x = 'docker'")
    assert not LITERAL.search('"ratio_to_native"') and not LITERAL.search('"vm_defaults"')


def test_harness_and_report_name_no_platform():
    assert offending_lines() == []


def test_every_registered_platform_describes_itself_and_declares_options():
    from bench.config import RunConfig

    config_fields = set(RunConfig.__dataclass_fields__)
    for name in PLATFORMS:
        platform = load_platform(name, image=None)
        assert set(platform.options) <= config_fields, name
        info = platform.describe()
        assert info.name == name and info.colour.startswith("#")
    baselines = [n for n in PLATFORMS if load_platform(n, image=None).describe().baseline]
    assert len(baselines) == 1
