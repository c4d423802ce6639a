"""fio JSON and iozone table parsers against captured real outputs, real failures and hand-made variants."""

import pytest

from scenarios.parsers import ParseError, fio, iozone


def read(fixtures_dir, name):
    return (fixtures_dir / name).read_text()


def test_randread_iops_bandwidth_and_latency_in_us(fixtures_dir):
    job = fio.job(read(fixtures_dir, "fio/randread-4k-qd32.json"))
    assert job.name == "randread"
    assert job.options["iodepth"] == "32" and job.options["direct"] == "1"
    assert set(job.directions) == {"read"}
    stats = job.directions["read"]
    assert stats.iops == pytest.approx(87534.821726)
    assert stats.bw_bytes_per_s == 358542629
    # clat_ns percentiles 337920 / 473088 / 3981312 ns
    assert stats.clat_us["p50"] == pytest.approx(337.92)
    assert stats.clat_us["p99"] == pytest.approx(473.088)
    assert stats.clat_us["p99_9"] == pytest.approx(3981.312)
    assert stats.clat_us["mean"] == pytest.approx(360.803328232)


def test_mixed_job_has_both_directions(fixtures_dir):
    job = fio.job(read(fixtures_dir, "fio/randrw-70-30-4k-qd32.json"), "randrw")
    assert set(job.directions) == {"read", "write"}
    read_iops, write_iops = job.directions["read"].iops, job.directions["write"].iops
    assert 0.6 < read_iops / (read_iops + write_iops) < 0.8


def test_sequential_1m(fixtures_dir):
    stats = fio.job(read(fixtures_dir, "fio/read-1m-qd32.json")).directions["read"]
    assert stats.bw_bytes_per_s == pytest.approx(stats.iops * 1024 * 1024, rel=0.01)


def test_real_note_before_json_is_skipped(fixtures_dir):
    text = read(fixtures_dir, "fio/note-before-json-psync.txt")
    assert text.startswith("note: both iodepth >= 1 and synchronous I/O engine")
    assert fio.job(text).directions["write"].iops > 0


def test_handmade_warnings_before_json(fixtures_dir):
    job = fio.job(read(fixtures_dir, "fio/handmade-warnings-before-json.txt"))
    assert job.directions["read"].iops == pytest.approx(87534.821726)


def test_old_fio_usec_fields_give_the_same_microseconds(fixtures_dir):
    new = fio.job(read(fixtures_dir, "fio/randread-4k-qd32.json")).directions["read"]
    old = fio.job(read(fixtures_dir, "fio/handmade-fio2-clat-usec.json")).directions["read"]
    for key in ("p50", "p99", "p99_9", "mean"):
        assert old.clat_us[key] == pytest.approx(new.clat_us[key], abs=1.0)
    assert old.bw_bytes_per_s == pytest.approx(new.bw_bytes_per_s, rel=0.01)  # from "bw" in KiB/s


def test_job_error_names_fios_reason(fixtures_dir):
    with pytest.raises(ParseError, match=r"fio job x failed with error 20: .*Not a directory"):
        fio.parse(read(fixtures_dir, "fio/bad-path-not-a-directory.txt"))


def test_bad_option_has_no_json(fixtures_dir):
    with pytest.raises(ParseError, match="fio printed no JSON: fio: failed parsing rw=bogus"):
        fio.parse(read(fixtures_dir, "fio/bad-rw-option.txt"))


def test_only_warnings(fixtures_dir):
    with pytest.raises(ParseError, match=r"no JSON.*Input/output error"):
        fio.parse(read(fixtures_dir, "fio/handmade-only-warnings-no-json.txt"))


def test_truncated_json(fixtures_dir):
    with pytest.raises(ParseError, match=r"not readable.*truncated or corrupt"):
        fio.parse(read(fixtures_dir, "fio/truncated.json"))


@pytest.mark.parametrize("text, reason", [
    ("", "no JSON"),
    ('{"fio version": "fio-3.33", "jobs": []}', "no jobs"),
    ('{"jobs": [{"jobname": "a", "error": 0, "read": {"io_bytes": 0}}]}', "did no I/O"),
    ('{"jobs": [{"jobname": "a", "error": 0, "read": {"io_bytes": 4096, "iops": "x"}}]}', "not a number"),
    ("[1, 2]", "no JSON"),
])
def test_malformed(text, reason):
    with pytest.raises(ParseError, match=reason):
        fio.parse(text)


def test_parse_errors_are_one_line(fixtures_dir):
    for name in ("bad-path-not-a-directory.txt", "bad-rw-option.txt", "truncated.json"):
        with pytest.raises(ParseError) as info:
            fio.parse(read(fixtures_dir, f"fio/{name}"))
        assert "\n" not in str(info.value)


def test_missing_job_name(fixtures_dir):
    with pytest.raises(ParseError, match="no job 'seqread'"):
        fio.job(read(fixtures_dir, "fio/randread-4k-qd32.json"), "seqread")


def test_iozone_table(fixtures_dir):
    table = iozone.parse(read(fixtures_dir, "iozone/write-read-random-1m-64m.txt"))
    assert set(table) == {"write", "rewrite", "read", "reread", "random_read", "random_write"}
    assert table["write"] == {(65536, 1024): 2260884.0}
    assert table["random_write"][(65536, 1024)] == 3527612.0


def test_iozone_several_record_sizes():
    text = ('iozone test complete.\nExcel output is below:\n\n"Writer report"\n        "4"  "1024"\n"65536"   10 20 \n'
            '"131072"   30 40 \n\n"Reader report"\n        "4"  "1024"\n"65536"   50 60 \n"131072"   70 80 \n')
    table = iozone.parse(text)
    assert table["write"] == {(65536, 4): 10, (65536, 1024): 20, (131072, 4): 30, (131072, 1024): 40}
    assert table["read"] == {(65536, 4): 50, (65536, 1024): 60, (131072, 4): 70, (131072, 1024): 80}


def test_iozone_failure(fixtures_dir):
    with pytest.raises(ParseError, match=r"Can not open temp file: /etc/hostname/iozone\.tmp"):
        iozone.parse(read(fixtures_dir, "iozone/bad-path-not-a-directory.txt"))


def test_iozone_cut_short(fixtures_dir):
    text = read(fixtures_dir, "iozone/write-read-random-1m-64m.txt")
    with pytest.raises(ParseError, match="ends mid-line"):
        iozone.parse(text[: text.index('"Writer report"') + len('"Writer report"')])
    with pytest.raises(ParseError, match="no values"):
        iozone.parse(text[: text.index('"Writer report"') + len('"Writer report"\n')])
