"""The web workload's pure logic (good-response counting, the deadline, the schedule, pooling by role) and
its client against a stdlib HTTP server on loopback (the only address it talks to here)."""

import http.server
import threading
import time
from collections import Counter

import pytest

from scenarios import isolation_noisy as noisy
from scenarios import webload
from scenarios.base import ScenarioError

PAGE = 2048


def test_a_good_response_is_a_whole_200_within_the_deadline():
    assert webload.classify(200, PAGE, PAGE, 0.3, 1.0) == "good"
    assert webload.classify(200, PAGE, PAGE, 1.0, 1.0) == "good"  # on the deadline is within it
    assert webload.classify(200, PAGE, PAGE, 1.01, 1.0) == "late"
    assert webload.classify(404, 10, PAGE, 0.1, 1.0) == "status 404"
    assert webload.classify(200, PAGE - 1, PAGE, 0.1, 1.0) == "short body"
    assert webload.classify(None, 0, PAGE, 0.1, 1.0) == "no response"


def test_tally_fraction_and_zero_good_is_no_figure():
    tally = webload.Tally()
    for outcome in ["good"] * 3 + ["late", "ConnectionRefusedError"]:
        tally.add(outcome)
    assert (tally.sent, tally.good, tally.fraction) == (5, 3, pytest.approx(0.6))
    assert tally.why_none() == ""
    bad = webload.Tally(4, 0, Counter({"late": 3, "RemoteDisconnected": 1}))
    assert "none of 4 responses was good" in bad.why_none() and "late × 3" in bad.why_none()
    assert webload.Tally().why_none() == "no request was sent"


def test_schedule_is_open_loop_at_the_rate():
    assert webload.schedule(4, 1.5) == [0, 0.25, 0.5, 0.75, 1.0, 1.25]
    assert len(webload.schedule(10, 10)) == 100


def test_well_behaved_instances_are_pooled_and_the_misbehaving_one_kept_apart():
    tallies = {"well-behaved-1": webload.Tally(10, 10), "well-behaved-2": webload.Tally(10, 7),
               "misbehaving": webload.Tally(10, 2)}
    roles = {"well-behaved-1": "well-behaved", "well-behaved-2": "well-behaved", "misbehaving": "misbehaving"}
    pooled = noisy.web_figures(tallies, roles)
    assert list(pooled) == ["well-behaved", "misbehaving"]
    assert pooled["well-behaved"].fraction == pytest.approx(17 / 20) and pooled["misbehaving"].fraction == 0.2


def test_web_parameters_are_checked():
    p = noisy.plan({**noisy.PROFILES["full"], "workloads": ["web"], "instances": 4})
    assert p.instances == 4 and p.networked and p.web_page_bytes == 16 * 1024
    assert noisy.plan(noisy.PROFILES["quick"]).instances == 2  # the quick profile keeps its pair
    with pytest.raises(ScenarioError, match=r"web_deadline_s must be a number greater than zero"):
        noisy.plan({**noisy.PROFILES["full"], "web_deadline_s": 0})
    with pytest.raises(ScenarioError, match=r"instances must be at least 2"):
        noisy.plan({**noisy.PROFILES["full"], "instances": 1})


def test_server_command_binds_the_given_address_only():
    command = webload.server_command("/tmp/x/web", "10.1.2.3", 18081, 100)
    assert "busybox httpd -p 10.1.2.3:18081 -h /tmp/x/web" in command and "head -c 100" in command


class _Handler(http.server.BaseHTTPRequestHandler):
    delay = 0.0

    def do_GET(self):
        time.sleep(self.delay)
        status, body = (200, b"x" * PAGE) if self.path == f"/{webload.PAGE}" else (404, b"no")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # the client gave up on a late response (a broken pipe here): that is what the test makes happen


@pytest.fixture
def server():
    def start(delay: float) -> webload.Target:
        handler = type("H", (_Handler,), {"delay": delay})
        httpd = _Server(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return webload.Target(f"t{len(servers)}", "127.0.0.1", httpd.server_address[1])

    servers: list = []
    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def test_client_counts_good_and_late_responses_per_target(server):
    fast, slow = server(0.0), server(0.4)
    assert webload.wait_ready(fast, PAGE, 5) == ""
    tallies = webload.drive([fast, slow], rate=20, seconds=1, deadline_s=0.2, page_bytes=PAGE)
    assert tallies[fast.name].sent == tallies[slow.name].sent == 20
    assert tallies[fast.name].good >= 18  # a loaded host may make one or two late
    assert tallies[slow.name].good == 0 and set(tallies[slow.name].bad) == {"late"}


def test_client_against_nothing_listening_has_no_figure():
    closed = webload.Target("gone", "127.0.0.1", 9)  # discard port: nothing listens on loopback here
    tally = webload.drive([closed], rate=10, seconds=0.5, deadline_s=0.5, page_bytes=PAGE)["gone"]
    assert tally.sent == 5 and tally.good == 0 and "ConnectionRefusedError" in tally.why_none()
    assert "did not serve its page within 0.3 s" in webload.wait_ready(closed, PAGE, 0.3)


def test_report_gives_both_roles_their_own_degradation(tmp_path):
    from bench.results import SampleRecord
    from reporting import noisy as report
    from runtime.platform import PlatformInfo

    samples = []
    figures = {("none", "well-behaved"): [1.0, 1.0, 0.99], ("cpu", "well-behaved"): [0.9, 0.91, 0.89],
               ("none", "misbehaving"): [1.0, 0.99, 1.0], ("cpu", "misbehaving"): [0.5, 0.51, 0.49]}
    for (stressor, role), values in figures.items():
        for rep, value in enumerate(values, 1):
            samples.append(SampleRecord("r", "box", noisy.NAME, "web_good_fraction", value, "fraction of responses",
                                        rep, {"setting": "limited", "stressor": stressor, "role": role}))
    infos = {"box": PlatformInfo(name="box", kind="container", display_name="box", colour="#123456",
                                 mechanism="", emulated=False, baseline=False)}
    page = report.section(samples, tmp_path, infos)
    well, mis = page.split("misbehaving instances")
    assert "well-behaved instances" in well and "+10.0 %" in well and "+50.0 %" not in well
    assert "+50.0 %" in mis and "the misbehaving guest" in mis and "OpenVZ 0 %" in mis
    assert set(report.IBS_MISBEHAVING) == set(noisy.STRESSORS) and report.IBS_MISBEHAVING["forkbomb"]["OpenVZ"] == 87.8


def test_report_says_why_a_role_has_no_figure(tmp_path):
    import json

    from bench.results import SampleRecord
    from reporting import noisy as report
    from runtime.platform import PlatformInfo

    meta = {"setting": "limited", "role": "well-behaved"}
    samples = [SampleRecord("r", "box", noisy.NAME, "web_good_fraction", 1.0, "fraction of responses", rep,
                            {**meta, "stressor": stressor}) for stressor in ("none", "forkbomb") for rep in (1, 2)]
    samples += [SampleRecord("r", "box", noisy.NAME, "web_good_fraction", 1.0, "fraction of responses", rep,
                             {**meta, "stressor": "none", "role": "misbehaving"}) for rep in (1, 2)]
    rep_dir = tmp_path / "raw" / "box" / noisy.NAME / "rep1"
    rep_dir.mkdir(parents=True)
    (rep_dir / noisy.EVIDENCE_FILE).write_text(json.dumps([
        {"setting": "limited", "stressor": "forkbomb", "outcome": "ok",
         "not_kept": {"misbehaving": "none of 100 responses was good (late × 100)"}}]))
    infos = {"box": PlatformInfo(name="box", kind="container", display_name="box", colour="#123456",
                                 mechanism="", emulated=False, baseline=False)}
    well, mis = report.section(samples, tmp_path, infos).split("misbehaving instances")
    assert "no figure" in mis and "none of 100 responses was good (late × 100)" in mis
    assert "no figure" not in well
