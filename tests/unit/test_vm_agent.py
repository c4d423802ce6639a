"""Guest-agent reply parsing and the exec wrapper's large-output convention (no libvirt involved)."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from runtime.vm.agent import EXEC_WRAPPER, AgentError, large_output_prefix, parse_exec_status, parse_reply


def test_return_value():
    assert parse_reply('{"return": {"pid": 161}}', "guest-exec") == {"pid": 161}
    assert parse_reply('{"return": {}}', "guest-ping") == {}


def test_error_reply_names_command_and_desc():
    text = json.dumps({"error": {"class": "GenericError", "desc": "Failed to execute child process"}})
    with pytest.raises(AgentError, match="guest-exec failed: Failed to execute child process"):
        parse_reply(text, "guest-exec")


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"id": 3}'])
def test_malformed_replies(text):
    with pytest.raises(AgentError, match="guest-exec-status"):
        parse_reply(text, "guest-exec-status")


def test_exec_status_decoding():
    value = {"exitcode": 0, "out-data": base64.b64encode(b"6.1.0-50-amd64\n").decode(),
             "err-data": base64.b64encode(b"warn\n").decode(), "out-truncated": False, "exited": True}
    status = parse_exec_status(value)
    assert status.exited and status.exitcode == 0 and status.stdout == b"6.1.0-50-amd64\n"
    assert status.stderr == b"warn\n" and not status.truncated
    running = parse_exec_status({"exited": False})
    assert not running.exited and running.stdout == b"" and running.exitcode is None
    killed = parse_exec_status({"exited": True, "signal": 9})
    assert killed.signal == 9
    with pytest.raises(AgentError):
        parse_exec_status({"pid": 3})


def test_large_output_marker():
    marker = base64.b64encode(b"ISOLAB-LARGE-OUTPUT /tmp/.isolab-exec-ab\n").decode()
    status = parse_exec_status({"exited": True, "exitcode": 0, "err-data": marker})
    assert large_output_prefix(status, "/tmp/.isolab-exec-ab")
    assert not large_output_prefix(status, "/tmp/.isolab-exec-cd")


def run_wrapper(tmp_path, *argv):
    prefix = str(tmp_path / "x")
    return prefix, subprocess.run(["/bin/sh", "-c", EXEC_WRAPPER, "isolab-exec", prefix, *argv],
                                  capture_output=True, text=True, timeout=30)


def test_wrapper_small_output_inline(tmp_path):
    _, proc = run_wrapper(tmp_path, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
    assert list(tmp_path.iterdir()) == []


def test_wrapper_missing_command_is_127(tmp_path):
    _, proc = run_wrapper(tmp_path, "no-such-command-isolab")
    assert proc.returncode == 127 and "not found" in proc.stderr


def test_wrapper_large_output_stays_in_files(tmp_path):
    prefix, proc = run_wrapper(tmp_path, "head", "-c", "2000000", "/dev/zero")
    assert proc.stdout == "" and proc.stderr.strip() == f"ISOLAB-LARGE-OUTPUT {prefix}"
    assert (tmp_path / "x.out").stat().st_size == 2_000_000
