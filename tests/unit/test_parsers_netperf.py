"""netperf omni `-o` parser against captured real outputs and real failures (netperf 2.7.0 from the image)."""

import pytest

from scenarios.network import RR_SELECTORS
from scenarios.parsers import ParseError, netperf

OTHER_ORDER = ("THROUGHPUT", "THROUGHPUT_UNITS", "MEAN_LATENCY", "P50_LATENCY", "P90_LATENCY", "P99_LATENCY",
               "STDDEV_LATENCY", "MIN_LATENCY", "MAX_LATENCY", "TRANSACTION_RATE", "ELAPSED_TIME", "PROTOCOL")


def read(fixtures_dir, name):
    return (fixtures_dir / name).read_text()


def test_tcp_rr_with_the_scenarios_selectors(fixtures_dir):
    values = netperf.parse(read(fixtures_dir, "netperf/tcp-rr.txt"), RR_SELECTORS)
    assert values["P50_LATENCY"] == 14 and values["P99_LATENCY"] == 16
    assert values["MEAN_LATENCY"] == pytest.approx(14.60)
    assert values["TRANSACTION_RATE"] == pytest.approx(68290.618)
    assert values["THROUGHPUT_UNITS"] == "Trans/s" and values["PROTOCOL"] == "TCP"


@pytest.mark.parametrize("name, protocol", [("tcp-rr-other-order.txt", "TCP"), ("udp-rr-other-order.txt", "UDP")])
def test_columns_follow_the_selectors(fixtures_dir, name, protocol):
    values = netperf.parse(read(fixtures_dir, f"netperf/{name}"), OTHER_ORDER)
    assert values["PROTOCOL"] == protocol
    assert values["P50_LATENCY"] <= values["P99_LATENCY"] <= values["MAX_LATENCY"]
    assert values["THROUGHPUT"] == pytest.approx(values["TRANSACTION_RATE"], rel=1e-4)


def test_wrong_selector_order_is_caught(fixtures_dir):
    with pytest.raises(ParseError, match="not a number"):
        netperf.parse(read(fixtures_dir, "netperf/tcp-rr-other-order.txt"), RR_SELECTORS)


@pytest.mark.parametrize("name, reason", [
    ("bad-no-server.txt", "no netserver answered: establish control"),
    ("bad-server-killed.txt", "control connection broke.*recv_response: partial response received"),
])
def test_failures(fixtures_dir, name, reason):
    with pytest.raises(ParseError, match=reason) as info:
        netperf.parse(read(fixtures_dir, f"netperf/{name}"), RR_SELECTORS)
    assert "\n" not in str(info.value)


def test_unknown_selector_leaves_columns_empty(fixtures_dir):
    text = read(fixtures_dir, "netperf/bad-unknown-selector.txt")
    with pytest.raises(ParseError, match="1 titles"):
        netperf.parse(text, ("P50_LATENCY", "BOGUS_THING", "X"))
    with pytest.raises(ParseError, match="BOGUS_THING empty"):
        netperf.parse("P50\n13,,\n".replace("P50", "a,b,c"), ("P50_LATENCY", "BOGUS_THING", "X"))


@pytest.mark.parametrize("text", ["", "MIGRATED TCP REQUEST/RESPONSE TEST ...\n", "14,15\n"])
def test_no_table(text):
    with pytest.raises(ParseError):
        netperf.parse(text, ("P50_LATENCY", "P99_LATENCY"))
