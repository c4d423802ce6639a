"""The qemu-guest-agent protocol, spoken through libvirt (libvirt_qemu.qemuAgentCommand).

Owns: ping, guest-exec with exec-status polling and a deadline, and file transfer in chunks with
guest-file-open/read/write/close. Large output never travels in one reply (a reply over ~3 MB fails
and one over 10 MiB poisons the agent): commands run under a small sh wrapper that keeps stdout and
stderr in files in the guest and returns them inline only when small; otherwise we read the files
back in 1 MiB chunks (writes go in 48 KiB chunks). The reply parsing is pure and unit-tested.
File transfer paths are opened by the agent inside the guest, so the guest's symlinks resolve against
the guest's own root; the host only reads or writes the local path the harness names.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import libvirt
import libvirt_qemu

from runtime.errors import ExecTimeout, InstanceError

CHUNK = 1024 * 1024  # guest-file-read count per reply
# guest-file-write: qemu-ga 7.2 rejects requests of a few hundred KB ('JSON parse error') and
# then misreads the next command; 64 KiB raw (87 KB base64) works, we stay below it.
WRITE_CHUNK = 48 * 1024
INLINE_LIMIT = 1024 * 1024
COMMAND_TIMEOUT_S = 15

# $1 = file prefix in the guest; the rest is the command. Output stays in files when large.
# Few forks on purpose: each fork+exec costs tens of ms in a TCG guest. Empty files are not cat'ed.
EXEC_WRAPPER = r"""o="$1"; shift
"$@" >"$o.out" 2>"$o.err" </dev/null
rc=$?
set -- $(stat -c %s "$o.out" "$o.err")
if [ $(( $1 + $2 )) -le @LIMIT@ ]; then
  [ "$1" = 0 ] || cat "$o.out"; [ "$2" = 0 ] || cat "$o.err" >&2; rm -f "$o.out" "$o.err"
else
  echo "ISOLAB-LARGE-OUTPUT $o" >&2
fi
exit $rc
""".replace("@LIMIT@", str(INLINE_LIMIT))

KILL_TREE = "k() { for c in $(pgrep -P $1); do k $c; done; kill -KILL $1 2>/dev/null; }; k "


class AgentError(InstanceError):
    """The guest agent answered with an error or could not be reached."""


@dataclass(frozen=True)
class ExecStatus:
    exited: bool
    exitcode: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    truncated: bool


def parse_reply(text: str, command: str) -> object:
    """The 'return' value of an agent reply, or AgentError with the agent's own description."""
    try:
        reply = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AgentError(f"guest agent: reply to {command} is not JSON: {text[:200]!r}") from exc
    if not isinstance(reply, dict):
        raise AgentError(f"guest agent: reply to {command} is not an object: {text[:200]!r}")
    if "error" in reply:
        error = reply["error"]
        desc = error.get("desc", error) if isinstance(error, dict) else error
        raise AgentError(f"guest agent: {command} failed: {desc}")
    if "return" not in reply:
        raise AgentError(f"guest agent: reply to {command} has no 'return': {text[:200]!r}")
    return reply["return"]


def parse_exec_status(value: object) -> ExecStatus:
    """Decode a guest-exec-status return value (base64 out-data/err-data)."""
    if not isinstance(value, dict) or "exited" not in value:
        raise AgentError(f"guest agent: unexpected guest-exec-status reply {value!r:.200}")
    return ExecStatus(
        exited=bool(value["exited"]),
        exitcode=value.get("exitcode"),
        signal=value.get("signal"),
        stdout=base64.b64decode(value.get("out-data", "")),
        stderr=base64.b64decode(value.get("err-data", "")),
        truncated=bool(value.get("out-truncated") or value.get("err-truncated")),
    )


def large_output_prefix(status: ExecStatus, prefix: str) -> bool:
    """True when the wrapper left the output in files at `prefix` instead of sending it inline."""
    marker = f"ISOLAB-LARGE-OUTPUT {prefix}"
    return not status.stdout and status.stderr.decode(errors="replace").strip() == marker


class GuestAgent:
    """Agent commands for one libvirt domain."""

    def __init__(self, domain: libvirt.virDomain, where: str) -> None:
        self.domain = domain
        self.where = where  # e.g. "vm vm-1a2b3c4d", for error messages

    def command(self, execute: str, arguments: dict[str, object] | None = None,
                timeout: int = COMMAND_TIMEOUT_S) -> object:
        message: dict[str, object] = {"execute": execute}
        if arguments is not None:
            message["arguments"] = arguments
        try:
            text = libvirt_qemu.qemuAgentCommand(self.domain, json.dumps(message), timeout, 0)
        except libvirt.libvirtError as exc:
            message_text = exc.get_error_message()
            raise AgentError(f"{self.where}: guest agent {execute} failed: {message_text}") from exc
        return parse_reply(text, execute)

    def ping(self, timeout: int = 2) -> bool:
        try:
            self.command("guest-ping", timeout=timeout)
        except AgentError:
            return False
        return True

    def spawn(self, path: str, args: Sequence[str], env: dict[str, str] | None = None) -> int:
        arguments: dict[str, object] = {"path": path, "arg": list(args), "capture-output": True}
        if env is not None:
            arguments["env"] = [f"{k}={v}" for k, v in env.items()]
        value = self.command("guest-exec", arguments)
        if not isinstance(value, dict) or "pid" not in value:
            raise AgentError(f"{self.where}: guest-exec returned no pid: {value!r:.200}")
        return int(value["pid"])

    def status(self, pid: int) -> ExecStatus:
        return parse_exec_status(self.command("guest-exec-status", {"pid": pid}))

    def wait(self, pid: int, timeout: float, what: str) -> ExecStatus:
        """Poll guest-exec-status until the process exits; past the deadline kill it, raise ExecTimeout."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            status = self.status(pid)
            if status.exited:
                return status
            if time.monotonic() >= deadline:
                self.kill_tree(pid)
                raise ExecTimeout(f"{self.where}: {what} did not finish in {timeout:g} s "
                                  "(killed in the guest)")
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.1)

    def kill_tree(self, pid: int, grace: float = 15.0) -> None:
        """Kill pid and its descendants in the guest, then wait (up to `grace` s) for the killer and pid to be
        gone: a caller's next command must not find them still running (under TCG on a loaded host the kill
        took longer than the next `ps`)."""
        try:
            killer = self.spawn("/bin/sh", ["-c", KILL_TREE + str(pid)])
            deadline = time.monotonic() + grace
            for target in (killer, pid):
                while not self.status(target).exited and time.monotonic() < deadline:
                    time.sleep(0.05)
        except AgentError:
            pass

    def run(self, argv: Sequence[str], timeout: float, env: dict[str, str]) -> tuple[int, bytes, bytes]:
        """Run argv through the wrapper; returns (returncode, stdout, stderr)."""
        prefix = f"/tmp/.isolab-exec-{secrets.token_hex(6)}"
        pid = self.spawn("/bin/sh", ["-c", EXEC_WRAPPER, "isolab-exec", prefix, *argv], env)
        status = self.wait(pid, timeout, argv[0] if argv else "command")
        stdout, stderr = status.stdout, status.stderr
        if large_output_prefix(status, prefix):
            stdout = self.read_file(f"{prefix}.out")
            stderr = self.read_file(f"{prefix}.err")
            self.wait(self.spawn("/bin/rm", ["-f", f"{prefix}.out", f"{prefix}.err"]), 30, "rm")
        if status.exitcode is None:
            code = 128 + (status.signal or 0)
        else:
            code = int(status.exitcode)
        return code, stdout, stderr

    def _open(self, path: str, mode: str) -> int:
        return int(self.command("guest-file-open", {"path": path, "mode": mode}))  # type: ignore[arg-type]

    def read_file(self, path: str) -> bytes:
        handle = self._open(path, "r")
        chunks: list[bytes] = []
        try:
            while True:
                value = self.command("guest-file-read", {"handle": handle, "count": CHUNK}, timeout=60)
                if not isinstance(value, dict):
                    raise AgentError(f"{self.where}: guest-file-read {path}: unexpected reply {value!r:.200}")
                chunks.append(base64.b64decode(value.get("buf-b64", "")))
                if value.get("eof") or not value.get("count"):
                    break
        finally:
            self.command("guest-file-close", {"handle": handle})
        return b"".join(chunks)

    def write_file(self, path: str, data: bytes) -> None:
        handle = self._open(path, "w")
        try:
            for offset in range(0, len(data), WRITE_CHUNK):
                chunk = data[offset:offset + WRITE_CHUNK]
                encoded = base64.b64encode(chunk).decode()
                value = self.command("guest-file-write", {"handle": handle, "buf-b64": encoded}, timeout=60)
                if not isinstance(value, dict) or value.get("count") != len(chunk):
                    raise AgentError(f"{self.where}: short write to {path} at offset {offset}: "
                                     f"{value!r:.200}")
        finally:
            self.command("guest-file-close", {"handle": handle})

    def get_file(self, remote: str, local: Path) -> None:
        local.write_bytes(self.read_file(remote))

    def put_file(self, local: Path, remote: str) -> None:
        self.write_file(remote, local.read_bytes())
