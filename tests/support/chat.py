"""Small steps the end-to-end tests repeat: errors, rooms, messages, bystanders.

Everything here goes through the wire with real connections
(:class:`~chatnet.client.connection.ChatConnection`), never around it.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from chatnet.client.connection import ChatConnection
from chatnet.errors import ChatError, ErrorCode
from tests.support.events import EventLog, within
from tests.support.server import RunningServer

_ids = itertools.count(1)


def unique(prefix: str = "c") -> str:
    """A fresh name or client_msg_id for this test process."""
    return f"{prefix}{next(_ids)}"


async def expect_error(d: Any, code: ErrorCode, what: str = "the request") -> ChatError:
    """Await a request expected to fail with ``code``; return the error."""
    with pytest.raises(ChatError) as info:
        await within(d, what)
    assert info.value.code is code, f"expected {code.value}, got {info.value!r}"
    return info.value


async def create_room(owner: ChatConnection, *joiners: ChatConnection, name: str = "room",
                      visibility: str = "public", members: list[str] | None = None,
                      topic: str | None = None) -> dict[str, Any]:
    """``room.create`` by ``owner``, then ``room.join`` by each of ``joiners``.

    Returns:
        the room map from ``room.create``.
    """
    args: dict[str, Any] = {"name": name, "visibility": visibility}
    if members:
        args["members"] = members
    if topic is not None:
        args["topic"] = topic
    room: dict[str, Any] = await within(owner.request("room.create", args), "room.create")
    for conn in joiners:
        await within(conn.request("room.join", {"room_id": room["room_id"]}), "room.join")
    return room


def _username(member: Any) -> str:
    """The username of a logged-in ChatConnection or ChatSession."""
    result = member.login_result or {}
    return str(result.get("username") or member.username)


async def room_with_members(owner: Any, *members: Any, name: str = "room",
                            visibility: str = "private") -> int:
    """``room.create`` by ``owner`` inviting ``members`` (logged-in ChatConnections or
    ChatSessions), then each accepts with ``room.join``: a room they are all in.

    Returns:
        the room id.
    """
    create = {"name": name, "visibility": visibility,
              "members": [_username(m) for m in members]}
    room = await within(_request(owner, "room.create", create), "room.create")
    for member in members:
        await within(_request(member, "room.join", {"room_id": room["room_id"]}), "room.join")
    return int(room["room_id"])


def _request(who: Any, op: str, args: dict[str, Any]) -> Any:
    """A request on a ChatSession (``call``) or a ChatConnection (``request``)."""
    return who.call(op, args) if hasattr(who, "call") else who.request(op, args)


async def say(conn: ChatConnection, room_id: int, body: str, **extra: Any) -> dict[str, Any]:
    """``msg.send`` with a fresh client_msg_id; returns ``{msg_id, seq, ts}``."""
    args = {"room_id": room_id, "body": body, "client_msg_id": unique("m"), **extra}
    ack: dict[str, Any] = await within(conn.request("msg.send", args), "msg.send")
    return ack


class Bystanders:
    """Two users chatting in a room of their own, to show that trouble elsewhere
    leaves other sessions working. Create with :meth:`start` *before* the trouble,
    call :meth:`check` after it."""

    def __init__(self, a: ChatConnection, b: ChatConnection, room_id: int) -> None:
        self.a, self.b, self.room_id = a, b, room_id
        self.b_events = EventLog(b, "bystander")

    @classmethod
    async def start(cls, server: RunningServer) -> Bystanders:
        a = await server.user(unique("by"))
        b = await server.user(unique("by"))
        room = await create_room(a, b, name="bystanders")
        return cls(a, b, room["room_id"])

    async def check(self) -> None:
        """A message from one bystander reaches the other; a new connection can log in."""
        body = unique("still alive ")
        ack = await say(self.a, self.room_id, body)
        event = await self.b_events.next("msg", where=lambda d: d["message"]["body"] == body)
        assert event.data["message"]["seq"] == ack["seq"]
        assert not self.a.lost.called and not self.b.lost.called
