"""The bridge's address book: unique addresses under a lock, gateway never handed out, dead owners' reused."""

from __future__ import annotations

import json

import pytest

from runtime import state
from runtime.errors import InstanceError
from runtime.network import bridge as br


@pytest.fixture
def book(tmp_path, monkeypatch):
    from runtime import state

    monkeypatch.setattr(br, "NET_STATE", tmp_path / "net")
    monkeypatch.setattr(state, "LOCK_DIR", tmp_path / "locks")
    monkeypatch.setattr(br, "_ensure_link", lambda bridge: None)  # no real bridge in a unit test
    return br.Bridge(name="islbrtest", gateway="10.213.9.1", prefixlen=29, subnet="10.213.9.0/29")


def test_container_network_allocates_distinct_addresses_skipping_gateway(book):
    addresses = [br.allocate_address(book, owner=f"ct-{i}") for i in range(5)]
    assert addresses == ["10.213.9.2", "10.213.9.3", "10.213.9.4", "10.213.9.5", "10.213.9.6"]
    with pytest.raises(InstanceError, match=r"no free address left in 10\.213\.9\.0/29"):
        br.allocate_address(book)
    br.release_address(book, "10.213.9.4")
    assert br.allocate_address(book) == "10.213.9.4"
    assert br.live_reservations(book.name) == addresses


def test_container_network_reuses_addresses_of_dead_processes(book):
    br.NET_STATE.mkdir(parents=True)
    dead = 2**22 + 12345  # above pid_max: never a running process
    (br.NET_STATE / "islbrtest.json").write_text(json.dumps({"10.213.9.2": {"pid": dead, "owner": "ct-old"}}))
    assert br.allocate_address(book, owner="ct-new") == "10.213.9.2"
    entry = json.loads((br.NET_STATE / "islbrtest.json").read_text())["10.213.9.2"]
    assert entry == {**state.me().to_dict(), "owner": "ct-new"}


def test_container_network_a_reused_pid_does_not_keep_an_address(book):
    br.NET_STATE.mkdir(parents=True)
    me = state.me()  # our pid, but with another start time: the process that reserved it is gone
    stale = {"10.213.9.2": {"pid": me.pid, "start": me.start - 1, "owner": "ct-old"}}
    (br.NET_STATE / "islbrtest.json").write_text(json.dumps(stale))
    assert br.live_reservations("islbrtest") == []
    assert br.release_dead("islbrtest") == ["ct-old"]


def test_container_network_release_owner(book):
    first = br.allocate_address(book, owner="ct-a")
    br.allocate_address(book, owner="ct-b")
    br.release_owner(book.name, "ct-b")
    assert br.live_reservations(book.name) == [first]
