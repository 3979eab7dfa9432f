"""The desktop client's personal export: a date range of every conversation into
NAME.jsonl and NAME.txt, through :func:`chatnet.client.export.export_conversations`.

This module adds what the desktop needs around the library's export: local
days turned into the range in ms, a pair of file names that replaces nothing,
and no half-written files left behind when the export fails or is cancelled.
It imports no Qt; :class:`~qtclient.controller.ChatController` runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from chatnet.client.connection import Requester, all_pages
from chatnet.client.export import export_conversations


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        messages: messages written.
        rooms: conversations read.
        jsonl: the JSON Lines file.
        text: the readable file.
    """

    messages: int
    rooms: int
    jsonl: Path
    text: Path


def day_range(first: date, last: date) -> tuple[int, int]:
    """``[since, until)`` in ms since the epoch: from the start of ``first`` to
    the end of ``last``, in local time."""
    since = datetime.combine(first, datetime.min.time()).timestamp()
    until = datetime.combine(last + timedelta(days=1), datetime.min.time()).timestamp()
    return int(since * 1000), int(until * 1000)


def free_names(base: Path) -> tuple[Path, Path]:
    """``base``.jsonl and ``base``.txt, or the first ``base (n)`` pair of which
    neither exists: an export never replaces a file, and its two files share
    one name."""
    n = 0
    while True:
        stem = base.name if n == 0 else f"{base.name} ({n})"
        pair = base.with_name(stem + ".jsonl"), base.with_name(stem + ".txt")
        if not any(p.exists() or p.is_symlink() for p in pair):
            return pair
        n += 1


async def export_to_files(request: Requester, me: str, others: dict[int, str],
                          first: date, last: date, base: Path,
                          progress: Callable[[int, int, int], None] | None = None
                          ) -> ExportResult:
    """Every message of the user's rooms from ``first`` to ``last`` (local days,
    both included) into a new pair of files named after ``base``.

    Args:
        request: sends one request and waits out ``rate_limited`` answers
            (:class:`~chatnet.client.connection.Patient` around
            ``ChatSession.call``).
        me: the user's username.
        others: room id -> the other person of each direct room, as far as
            known (for labels; the others are asked with ``room.members``).
        progress: called with (rooms done, rooms in all, messages written).

    Returns:
        what was written.

    Raises:
        ChatError: a request failed; OSError: a file could not be written;
        CancelledError: the export was cancelled. In every case the files it
        created are removed (a file it did not create is never touched).
    """
    rooms = await all_pages(request, "room.list", "rooms", {"limit": 500})
    others = dict(others)
    for room in rooms:  # a direct room whose other person is not known yet
        room_id = int(room["room_id"])
        if room.get("kind") == "direct" and room_id not in others:
            members = await request("room.members", {"room_id": room_id})
            peers = [str(m["username"]) for m in members.get("members", [])
                     if m.get("username") != me]
            if peers:
                others[room_id] = peers[0]
    since, until = day_range(first, last)
    jsonl_path, text_path = free_names(base)
    made: list[Path] = []
    try:
        jsonl: TextIO
        text: TextIO
        with open(jsonl_path, "x", encoding="utf-8") as jsonl:
            made.append(jsonl_path)
            with open(text_path, "x", encoding="utf-8") as text:
                made.append(text_path)
                text.write(f"chatnet export for {me}: {first.isoformat()} to "
                           f"{last.isoformat()}\n")
                count = await export_conversations(request, rooms, me, others, since, until,
                                                   jsonl, text, progress)
    except BaseException:
        for path in made:
            path.unlink(missing_ok=True)
        raise
    return ExportResult(count, len(rooms), jsonl_path, text_path)


def others_of(rooms: list[Any]) -> dict[int, str]:
    """Room id -> the other person's username, for the direct rooms among
    ``rooms`` (:class:`~qtclient.models.rooms.RoomEntry` records) whose peer is known."""
    return {int(r.room_id): str(r.peer) for r in rooms if r.is_direct and r.peer}
