"""A person's own export of their conversations for a date range (docs/protocol.md,
"History by date"; used by the terminal's ``/export`` and the desktop client).

:func:`export_conversations` pages through ``msg.history`` of every room the user
is in — from the first message at or after ``since`` (``around_ts``) forward,
200 at a time, waiting out rate limits — and writes each message once it has
it, never the whole range in memory, to:

- a **JSON Lines** file: one message per line, ``{room_id, room, msg_id, seq,
  sender, ts, time, body, reply_to?, mentions?, attachments?, edited_ts?,
  reactions?}`` (``time`` is ISO 8601 UTC; ``room`` is ``#name`` or ``@user``);
- a **readable text** file: per room a heading, then ``YYYY-MM-DD HH:MM  <sender>
  body`` lines in local time, attachments and edits noted.

``progress(rooms_done, rooms_total, messages_written)`` is called as it goes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TextIO

#: Messages asked for per history page.
PAGE = 200

Requester = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def room_label(room: dict[str, Any], me: str, others: dict[int, str]) -> str:
    """``#name`` for a group room, ``@user`` for a direct one (``others`` names the
    other member of direct rooms by room id)."""
    if room.get("kind") == "direct":
        return "@" + others.get(int(room["room_id"]), "?")
    return "#" + str(room.get("name", room["room_id"]))


def json_line(message: dict[str, Any], label: str) -> str:
    """One message as a JSON Lines line (module docstring), newline included."""
    record: dict[str, Any] = {
        "room_id": message["room_id"], "room": label, "msg_id": message["msg_id"],
        "seq": message["seq"], "sender": message.get("sender"), "ts": message["ts"],
        "time": datetime.fromtimestamp(message["ts"] / 1000, UTC)
        .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "body": message.get("body", ""),
    }
    for key in ("reply_to", "mentions", "attachments", "edited_ts", "reactions"):
        if message.get(key):
            record[key] = message[key]
    return json.dumps(record, ensure_ascii=False) + "\n"


def text_line(message: dict[str, Any]) -> str:
    """One message as a readable line (local time), newline included."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(message["ts"] / 1000))
    line = f"{when}  <{message.get('sender', '?')}> {message.get('body', '')}"
    if message.get("edited_ts"):
        line += " (edited)"
    for attachment in message.get("attachments") or ():
        line += (f"\n                  [file] {attachment.get('name')} "
                 f"({attachment.get('size')} bytes)")
    return line + "\n"


async def export_conversations(request: Requester, rooms: list[dict[str, Any]], me: str,
                               others: dict[int, str], since: int, until: int,
                               jsonl: TextIO, text: TextIO,
                               progress: Callable[[int, int, int], None] | None = None
                               ) -> int:
    """Write every visible message of ``rooms`` with ``since <= ts < until`` (ms).

    Args:
        request: sends one request and waits out ``rate_limited`` (e.g.
            :class:`~chatnet.client.connection.Patient` around ``ChatSession.call``).
        rooms: the user's rooms (``room.list`` items).
        me: the user's username (for labels).
        others: room id -> the other member of each direct room.
        jsonl: where the JSON Lines go (text mode, UTF-8).
        text: where the readable lines go.

    Returns:
        how many messages were written.

    Raises:
        ChatError: a request failed for another reason than a rate limit.
    """
    written = 0
    for done, room in enumerate(rooms):
        room_id = int(room["room_id"])
        label = room_label(room, me, others)
        first = await request("msg.history", {"room_id": room_id, "around_ts": since,
                                              "limit": 2})
        anchor = first.get("anchor_seq")
        heading = False
        after = int(anchor) - 1 if anchor is not None else None
        while after is not None:
            page = await request("msg.history", {"room_id": room_id, "after_seq": after,
                                                 "limit": PAGE})
            messages = page["messages"]
            for message in messages:
                if message["ts"] >= until:
                    after = None
                    break
                if message["ts"] < since:
                    continue
                if not heading:
                    text.write(f"\n== {label} ==\n")
                    heading = True
                jsonl.write(json_line(message, label))
                text.write(text_line(message))
                written += 1
            else:
                after = messages[-1]["seq"] if messages and page.get("has_more") else None
        if progress is not None:
            progress(done + 1, len(rooms), written)
    return written
