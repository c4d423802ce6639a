"""The visibility audit's judgements, as pure logic: a privilege counts as exposed only on the host's
own kernel, and a question that does not apply yields n/a rather than a guess."""

from runtime.spec import InstanceSpec
from scenarios import isolation_visibility as v

HOST = v.HostFacts(boot_id="host-boot", uts_ns="uts:[4026531838]", macs=frozenset({"aa:bb:cc:dd:ee:ff"}),
                   root_disk=(254, 0), root_disk_readable=True, mem_total_kib=24_000_000, cpus=2,
                   markers={"token": "isl-probe-1-abcdef", "marker_pid": 4242, "marker_file": "/run/isolab/x/marker",
                            "msg_key": 352387072, "mq_name": "isl-probe-1-abcdef"})


def ctx(shares_kernel: bool, **spec) -> v.Context:
    return v.Context(HOST, InstanceSpec(**spec), {}, shares_kernel=shares_kernel)


def test_own_kernel_makes_kernel_wide_privileges_isolated():
    vm_like = ctx(shares_kernel=False)
    assert v._judge_syscall("reboot", (22,))("errno=22", vm_like)[0] == "isolated"
    assert v._judge_writable("/proc/sys")("writable", vm_like)[0] == "isolated"
    assert v._judge_root("0 0 4294967295", vm_like)[0] == "isolated"
    host_like = ctx(shares_kernel=True)
    assert v._judge_syscall("reboot", (22,))("errno=22", host_like)[0] == "exposed"
    assert v._judge_syscall("reboot", (22,))("errno=1", host_like)[0] == "isolated"
    assert v._judge_root("0 100000 65536", host_like)[0] == "isolated"


def test_same_kernel_is_decided_by_boot_id():
    c = ctx(shares_kernel=False)
    assert v._judge_kernel("host-boot\n6.1.0\n", c)[0] == "exposed" and c.shares_kernel
    c = ctx(shares_kernel=True)
    assert v._judge_kernel("guest-boot\n6.1.0\n", c)[0] == "isolated" and not c.shares_kernel


def test_not_applicable_answers():
    c = ctx(shares_kernel=True)
    assert v._judge_syscall("init_module")("errno=38", c)[0] == "n/a"
    assert v._judge_syscall("x")("arch-unsupported", c)[0] == "n/a"
    assert v._judge_kcore("absent", c)[0] == "n/a"
    assert v._judge_limit("memory")("MemTotal: 24000000 kB", c)[0] == "n/a"  # no limit asked


def test_limits_against_what_is_seen():
    c = ctx(shares_kernel=True, memory=512 * 2**20, cpus=1.0)
    assert v._judge_limit("memory")("MemTotal: 24000000 kB", c)[0] == "exposed"
    assert v._judge_limit("memory")("MemTotal: 500000 kB", c)[0] == "isolated"
    assert v._judge_limit("cpus")("1", c)[0] == "isolated"
    assert v._judge_limit("cpus")("2", c)[0] == "exposed"


def test_raw_sockets_need_the_host_network():
    c = ctx(shares_kernel=True)
    assert v._judge_network("11:22:33:44:55:66\n", c)[0] == "isolated" and not c.shares_netns
    assert v._judge_raw("ok\n", c)[0] == "isolated"
    assert v._judge_network("aa:bb:cc:dd:ee:ff\n", c)[0] == "exposed"
    assert v._judge_raw("ok\n", c)[0] == "exposed"


def test_process_pattern_never_matches_its_own_text():
    import re
    pattern = v._self_excluding("isl-probe-1-abcdef")
    assert re.search(pattern, "isl-probe-1-abcdef 900")
    assert not re.search(pattern, f"grep -a {pattern}")


def test_batch_script_frames_every_probe(tmp_path):
    import subprocess

    commands = [("one", "echo out; echo err >&2"), ("two", "[ -e /nonexistent ] || { echo absent; exit 0; }"),
                ("three", "exit 3"), ("four", "printf 'no newline'")]
    script = tmp_path / "s.sh"
    script.write_text(v.batch_script(commands, str(tmp_path)))
    output = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=True).stdout
    sections = v.split_sections(output)
    assert sections["one"]["stdout"] == "out\n" and sections["one"]["stderr"] == "err"
    assert sections["two"]["stdout"] == "absent\n" and sections["two"]["returncode"] == 0
    assert sections["three"]["returncode"] == 3
    assert sections["four"]["stdout"] == "no newline\n"
    assert all(s["duration_s"] >= 0 for s in sections.values())
    assert not list(tmp_path.glob(".isl-visibility-err*"))


def test_a_masked_boot_id_does_not_hide_the_host_kernel():
    """LXC mounts a per-container boot id over /proc/sys/kernel/random/boot_id; the boot time gives it away."""
    host = v.HostFacts(**{**HOST.__dict__, "btime": "1795860000"})
    c = v.Context(host, InstanceSpec(), {}, shares_kernel=False)
    verdict = v._judge_kernel("lxc-fake-boot\nbtime 1795860000\n6.1.0\n", c)
    assert verdict[0] == "exposed" and c.shares_kernel and "boot time" in verdict[1]
    c = v.Context(host, InstanceSpec(), {}, shares_kernel=True)
    assert v._judge_kernel("guest-boot\nbtime 1795861234\n6.1.0\n", c)[0] == "isolated" and not c.shares_kernel
