"""iperf3 -J parser against captured real outputs (loopback), real failures and hand-made variants."""

import pytest

from scenarios.parsers import ParseError, iperf3


def read(fixtures_dir, name):
    return (fixtures_dir / name).read_text()


def test_one_stream_forward(fixtures_dir):
    result = iperf3.parse(read(fixtures_dir, "iperf3/tcp-1stream.json"))
    assert result.received_bits_per_s == pytest.approx(16308483827.074837)
    assert result.sent_bits_per_s == pytest.approx(16340307148.963827)
    assert result.streams == 1 and not result.reverse
    assert result.retransmits == 23
    assert result.seconds == pytest.approx(2.00341)
    assert result.cpu_host_percent == pytest.approx(41.66021573255476)


def test_four_streams_reverse(fixtures_dir):
    result = iperf3.parse(read(fixtures_dir, "iperf3/tcp-4streams-reverse.json"))
    assert result.streams == 4 and result.reverse
    assert result.received_bits_per_s == pytest.approx(18243854556.54526)
    assert result.retransmits == 37


def test_nan_in_cpu_fields_is_tolerated(fixtures_dir):
    text = read(fixtures_dir, "iperf3/handmade-nan-cpu.json")
    assert "-nan" in text
    result = iperf3.parse(text)
    assert result.cpu_host_percent is None and result.cpu_remote_percent is None
    assert result.received_bits_per_s == pytest.approx(16308483827.074837)


def test_nan_throughput_is_a_parse_error(fixtures_dir):
    with pytest.raises(ParseError, match="nan"):
        iperf3.parse(read(fixtures_dir, "iperf3/handmade-nan-throughput.json"))


@pytest.mark.parametrize("name, reason", [
    ("bad-no-server.json", "iperf3 failed: unable to connect to server: Connection refused"),
    ("bad-no-server-plain.txt", "iperf3 failed: unable to connect to server: Connection refused"),
    ("bad-server-killed.json", "iperf3 failed: unable to write to stream socket: Connection reset by peer"),
    ("bad-server-killed-reverse.json", "iperf3 failed: control socket has closed unexpectedly"),
    ("bad-server-busy.json", "iperf3 failed: the server is busy running a test"),
    ("handmade-error-text-after-json.txt", "after its report: control socket has closed unexpectedly"),
    ("truncated.json", "not readable.*truncated"),
])
def test_failures_name_iperf3s_reason(fixtures_dir, name, reason):
    with pytest.raises(ParseError, match=reason) as info:
        iperf3.parse(read(fixtures_dir, f"iperf3/{name}"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, reason", [
    ("", "no JSON"),
    ("{}", "no end summary"),
    ('{"end": {"sum_received": {"seconds": 0, "bits_per_second": 0}}}', "covers 0"),
    ('{"end": {"sum_received": {"seconds": 1, "bits_per_second": "fast"}}}', "non-number"),
])
def test_malformed(text, reason):
    with pytest.raises(ParseError, match=reason):
        iperf3.parse(text)


def test_nan_inside_a_string_is_left_alone():
    text = '{"end": {"sum_received": {"seconds": 1.0, "bits_per_second": 8e9}}, "title": "x: nan"}'
    assert iperf3.parse(text).received_bits_per_s == 8e9
