"""Which gVisor platform is chosen from what the probes found (the probes themselves run for real in
tests/integration/test_gvisor_platform.py), and how the run's --accel maps onto a request."""

import pytest

from runtime.errors import SpecError
from runtime.gvisor import probe
from runtime.gvisor.platform import GvisorPlatform


@pytest.fixture
def fake_runsc(monkeypatch):
    """A runsc built with `built`, whose probes answer from `works` (platform -> None or why not)."""
    calls: list[str] = []

    def install(built: list[str], works: dict[str, str | None]) -> list[str]:
        monkeypatch.setattr(probe, "_CHOICES", {})
        monkeypatch.setattr(probe, "built_platforms", lambda binary: built)
        monkeypatch.setattr(probe, "probe", lambda binary, p: calls.append(p) or works[p])
        return calls

    return install


def test_auto_takes_the_first_that_runs_in_preference_order(fake_runsc):
    calls = fake_runsc(["kvm", "ptrace"], {"kvm": "no answer within 8 s (killed)", "ptrace": None})
    choice = probe.choose("/usr/bin/runsc")
    assert choice.platform == "ptrace" and calls == ["kvm", "ptrace"]
    assert choice.tried["kvm"].startswith("no answer") and choice.tried["ptrace"].startswith("ok")
    assert probe.choose("/usr/bin/runsc") is choice and calls == ["kvm", "ptrace"]  # cached


def test_a_working_kvm_is_preferred_and_the_rest_untried(fake_runsc):
    calls = fake_runsc(["kvm", "ptrace", "systrap"], {"kvm": None, "ptrace": None, "systrap": None})
    choice = probe.choose("/usr/bin/runsc")
    assert choice.platform == "kvm" and calls == ["kvm"]
    assert choice.tried["systrap"] == choice.tried["ptrace"] == "not tried (a preferred platform runs)"


def test_software_never_tries_kvm(fake_runsc):
    calls = fake_runsc(["kvm", "ptrace", "systrap"], {"kvm": None, "ptrace": None, "systrap": "exited 1"})
    choice = probe.choose("/usr/bin/runsc", "software")
    assert choice.platform == "ptrace" and calls == ["systrap", "ptrace"]
    assert choice.tried["kvm"] == "not tried (software was asked for)"


def test_nothing_runs_gives_one_reason_naming_each(fake_runsc):
    fake_runsc(["kvm", "ptrace"], {"kvm": "no answer", "ptrace": "exited 1: permission denied"})
    choice = probe.choose("/usr/bin/runsc")
    assert choice.platform is None
    assert choice.reason == ("no gVisor platform runs a sandbox here (kvm: no answer; "
                             "ptrace: exited 1: permission denied)")


def test_a_forced_platform_this_build_lacks(fake_runsc):
    calls = fake_runsc(["kvm", "ptrace"], {})
    choice = probe.choose("/usr/bin/runsc", "systrap")
    assert choice.platform is None and calls == []
    assert "systrap: not built into this runsc (it has kvm, ptrace)" in choice.reason


def test_accel_maps_onto_a_request():
    assert GvisorPlatform(None).requested == "auto"
    assert GvisorPlatform(None, accel="kvm").requested == "kvm"
    assert GvisorPlatform(None, accel="tcg").requested == "software"
    assert GvisorPlatform(None, accel="tcg", runsc_platform="ptrace").requested == "ptrace"
    with pytest.raises(SpecError, match="unknown gVisor platform 'vmx'"):
        GvisorPlatform(None, runsc_platform="vmx")
