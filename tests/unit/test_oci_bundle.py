"""The OCI bundle builder (pure data) and the platform registry's default and `all` selections."""

from pathlib import Path

from bench.config import RunConfig, parse_selection
from runtime.oci import bundle
from runtime.platform import default_platform_names, platform_names
from runtime.spec import InstanceSpec


def test_limits_map_to_oci_resources():
    spec = InstanceSpec(cpus=1.5, cpuset="0-1", cpu_shares=512, memory=2**28, pids_max=99,
                        io_read_bps=10**6, io_write_iops=50, bandwidth=10**8)
    res, ignored = bundle.resources(spec, "8:0")
    assert res["cpu"] == {"quota": 150000, "period": 100000, "cpus": "0-1", "shares": 512}
    assert res["memory"]["limit"] == 2**28 and res["pids"] == {"limit": 99}
    assert res["blockIO"] == {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 10**6}],
                              "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 50}]}
    assert res["devices"] == [{"allow": False, "access": "rwm"}]
    assert ignored == {"bandwidth": 10**8}  # network "none": no link to shape


def test_io_limits_without_a_block_device_are_ignored_not_dropped():
    _res, ignored = bundle.resources(InstanceSpec(io_write_bps=10**6), None)
    assert ignored == {"io_write_bps": 10**6}


def test_config_has_dockers_lockdown_and_the_spec():
    cfg, _ = bundle.config(InstanceSpec(hostname="h1", env={"A": "b"}), Path("/r"), ["sleep", "infinity"],
                           "/isolab/crun-00000000", writable=True, volume=Path("/v"))
    assert cfg["root"] == {"path": "/r", "readonly": False} and cfg["hostname"] == "h1"
    assert "A=b" in cfg["process"]["env"] and cfg["process"]["noNewPrivileges"] is True
    assert "CAP_SYS_ADMIN" not in cfg["process"]["capabilities"]["bounding"]
    linux = cfg["linux"]
    assert {n["type"] for n in linux["namespaces"]} == {"pid", "network", "ipc", "uts", "mount"}
    assert "/proc/kcore" in linux["maskedPaths"] and "/proc/sys" in linux["readonlyPaths"]
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert any(m["destination"] == "/mnt" and m["source"] == "/v" for m in cfg["mounts"])
    unconfined, _ = bundle.config(InstanceSpec(seccomp="unconfined"), Path("/r"), ["true"], "/x")
    assert "seccomp" not in unconfined["linux"] and unconfined["root"]["readonly"] is True


def test_seccomp_masked_eq_uses_the_runtime_spec_order():
    section = bundle.seccomp_section("default")
    masked = [a for s in section["syscalls"] for a in s.get("args", []) if a["op"] == "SCMP_CMP_MASKED_EQ"]
    assert masked and all("valueTwo" in a for a in masked)


def test_default_platforms_and_all():
    assert set(default_platform_names()) < set(platform_names())
    assert RunConfig().platforms == tuple(default_platform_names())
    assert parse_selection(None, "cpu", "quick", None).platforms == tuple(default_platform_names())
    assert parse_selection("all", "cpu", "quick", None).platforms == tuple(platform_names())


def test_a_missing_runtime_binary_is_one_clear_reason(monkeypatch):
    import shutil

    import pytest

    from runtime.errors import PlatformUnavailable
    from runtime.oci.platform import CrunPlatform, RuncPlatform

    monkeypatch.setattr(shutil, "which", lambda name: None)
    for cls in (CrunPlatform, RuncPlatform):
        with pytest.raises(PlatformUnavailable, match=rf"^{cls.name}: the {cls.name} binary is not on PATH"):
            cls(image=None).check_available()
