"""isolab's front door.

  nox -s bench      host setup if needed, image if needed, the quick profile on every available
                    platform, then the report (its path is printed last). Extra args go to
                    `python -m bench run`, e.g. `nox -s bench -- --profile full --platform container,vm`.
  nox -s tests      lint (ruff) and the whole test suite, unit and real integration tests (as root);
                    it includes the container smoke subset in a cgroup v2 VM guest.
  nox -s tests_v2   the full container test subset in a cgroup v2 VM guest (cgroup_no_v1=all); extra
                    args are pytest node ids to run there instead, e.g. `nox -s tests_v2 -- tests/...`.
  nox -s setup      only the host setup (Debian packages, libvirtd) and the image.
  nox -s report     rebuild the report of a run: `nox -s report -- RUN_ID` (default: latest);
                    `nox -s report -- --compare RUN_A RUN_B`: what changed, per metric, with a verdict.
  nox -s cleanup    remove leftovers of crashed runs (mounts, cgroups, links, netns, domains).

Host setup runs before the virtualenv is filled, because libvirt-python compiles against the
libvirt headers that setup installs. The virtualenv is reused, and dependencies are installed again
only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT))

from bench import hostsetup  # noqa: E402  (standard library only)

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]


def _host(session: nox.Session) -> None:
    try:
        hostsetup.ensure_host(lambda msg: session.log(f"setup: {msg}"))
    except hostsetup.SetupError as exc:
        session.error(f"isolab setup: {exc}")


def _install(session: nox.Session, extras: str = "") -> None:
    """pip install the project into the session's venv, skipped when pyproject.toml is unchanged."""
    stamp = Path(session.virtualenv.location) / ".isolab-deps"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    session.install("-e", f".{extras}" if extras else ".")
    stamp.write_text(digest)


@nox.session(python=False)
def setup(session: nox.Session) -> None:
    """Install Debian packages, start libvirtd; then build (or reuse) the image."""
    _host(session)
    session.notify("image")


@nox.session
def image(session: nox.Session) -> None:
    _host(session)
    _install(session)
    session.run("python", "-m", "bench", "image", "build", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The main job: setup, image, quick profile on every available platform, report."""
    _host(session)
    _install(session)
    session.run("python", "-m", "bench", "run", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """ruff, then pytest (unit + real integration tests); 'no tests collected' is a failure."""
    _host(session)
    _install(session, "[test]")
    session.run("ruff", "check", ".")
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def tests_v2(session: nox.Session) -> None:
    """The container tests on a real cgroup v2 kernel: a VM guest booted with cgroup_no_v1=all runs them."""
    _host(session)
    _install(session, "[test]")
    session.run("python", "-m", "bench.v2guest", "--subset", "full", *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    _install(session)
    session.run("python", "-m", "bench", "report", *session.posargs)


@nox.session
def cleanup(session: nox.Session) -> None:
    _install(session)
    session.run("python", "-m", "bench", "cleanup")
