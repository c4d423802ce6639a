"""bench.hostsetup reads each platform package's runtime/<pkg>/host.toml besides its own base list."""

from pathlib import Path

import pytest

from bench import hostsetup


def test_platform_packages_come_from_host_toml_files():
    found = hostsetup.platform_packages()
    assert found["crun"] == "/usr/bin/crun" and found["runc"] == "/usr/sbin/runc"
    assert "crun" not in hostsetup.PACKAGES  # declared by runtime/oci/host.toml, not by the harness
    assert set(hostsetup.PACKAGES) | set(found) == set(hostsetup.required_packages())


def test_a_bad_host_toml_is_one_clear_error(tmp_path: Path):
    (tmp_path / "runtime" / "x").mkdir(parents=True)
    (tmp_path / "runtime" / "x" / "host.toml").write_text('[packages]\nfoo = "usr/bin/foo"\n')
    with pytest.raises(hostsetup.SetupError, match="foo: the proof must be an absolute path"):
        hostsetup.platform_packages(tmp_path)
    (tmp_path / "runtime" / "x" / "host.toml").write_text("[packages\n")
    with pytest.raises(hostsetup.SetupError, match="cannot read it as TOML"):
        hostsetup.platform_packages(tmp_path)


def test_preseed_files_are_written_only_where_none_exists(tmp_path: Path):
    assert hostsetup.platform_preseeds()["/etc/default/lxc-net"] == 'USE_LXC_BRIDGE="false"\n'
    (tmp_path / "runtime" / "x").mkdir(parents=True)
    new, kept = tmp_path / "etc" / "new.conf", tmp_path / "kept.conf"
    kept.write_text("the admin's\n")
    (tmp_path / "runtime" / "x" / "host.toml").write_text(
        f'[packages]\nfoo = "/usr/bin/foo"\n[preseed]\n"{new}" = "A=1\\n"\n"{kept}" = "B=2\\n"\n')
    said: list[str] = []
    hostsetup.write_preseeds(said.append, tmp_path)
    assert new.read_text() == "A=1\n" and kept.read_text() == "the admin's\n" and len(said) == 1
    (tmp_path / "runtime" / "x" / "host.toml").write_text('[preseed]\n"relative" = "x"\n')
    with pytest.raises(hostsetup.SetupError, match="needs an absolute path"):
        hostsetup.platform_preseeds(tmp_path)
