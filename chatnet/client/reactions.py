"""A message's reactions as a client shows them (PROTOCOL.md 6, docs/protocol.md 6).

The server sends a message's reactions in one of two shapes: *listed*,
``reactions: {emoji: [username]}``, or — for a message with many reactions —
*summarised*, ``reaction_counts: {emoji: n}``, ``my_reactions: [emoji]`` and
``reactions_summarised: true``, without names. :class:`Reactions` reads either
and keeps it current from live ``msg.reaction`` events, so that clients draw
one thing: per emoji, how many, and whether the user is one of them.

A summarised message cannot tell whether another user's event repeats a
reaction the count already holds (the server sends events only for changes,
so this happens only when an event crosses the page that carried the
message); the count may then be off by one until the message is read again.
The user's own reactions are always exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Reaction:
    """One emoji on a message.

    Attributes:
        emoji: the emoji.
        count: how many users reacted with it (≥ 1).
        mine: whether the user is one of them.
        users: who, in the order they reacted, or None when the message came
            summarised.
    """

    emoji: str
    count: int
    mine: bool
    users: list[str] | None


class Reactions:
    """The reactions of one message, listed or summarised.

    Args:
        entries: the emoji in the order the server gave them (first used first).
        summarised: whether names are unknown (the message came summarised).
    """

    __slots__ = ("_entries", "summarised")

    def __init__(self, entries: list[Reaction] | None = None, summarised: bool = False) -> None:
        self._entries: dict[str, Reaction] = {r.emoji: r for r in entries or () if r.count > 0}
        self.summarised = summarised

    @classmethod
    def from_message(cls, message: Mapping[str, Any], me: str) -> Reactions:
        """Read a message map of either shape.

        Args:
            message: a message as history, search, events or ``msg.changes`` give it.
            me: the user's own username (marks their reactions in a listed message).
        """
        if message.get("reactions_summarised"):
            counts = message.get("reaction_counts") or {}
            mine = {str(e) for e in message.get("my_reactions") or ()}
            return cls([Reaction(str(e), int(n), str(e) in mine, None)
                        for e, n in counts.items() if isinstance(n, int) and n > 0],
                       summarised=True)
        listed = message.get("reactions") or {}
        return cls([Reaction(str(e), len(users), me in users, [str(u) for u in users])
                    for e, users in listed.items() if users])

    def apply(self, emoji: str, username: str, on: bool, me: str) -> bool:
        """A live ``msg.reaction {emoji, username, on}``.

        Returns:
            whether what is shown changed.
        """
        entry = self._entries.get(emoji)
        own = username == me
        if entry is None:
            if not on:
                return False
            self._entries[emoji] = Reaction(emoji, 1, own,
                                            None if self.summarised else [username])
            return True
        if entry.users is not None:
            if on == (username in entry.users):
                return False
            if on:
                entry.users.append(username)
            else:
                entry.users.remove(username)
            entry.count = len(entry.users)
        elif own:
            if on == entry.mine:
                return False
            entry.count += 1 if on else -1
        else:
            entry.count += 1 if on else -1
        if own:
            entry.mine = on
        if entry.count <= 0:
            del self._entries[emoji]
        return True

    def chips(self) -> list[tuple[str, int, bool]]:
        """``[(emoji, count, mine)]`` in the server's order: what a client draws."""
        return [(r.emoji, r.count, r.mine) for r in self._entries.values()]

    def mine(self) -> set[str]:
        """The emoji the user has put on the message."""
        return {r.emoji for r in self._entries.values() if r.mine}

    def users(self, emoji: str) -> list[str] | None:
        """Who reacted with ``emoji`` (empty if nobody), or None if the names are
        unknown because the message came summarised."""
        entry = self._entries.get(emoji)
        if entry is None:
            return []
        return None if entry.users is None else list(entry.users)

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reactions):
            return NotImplemented
        return (self.summarised, list(self._entries.values())) == (
            other.summarised, list(other._entries.values()))

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        kind = "summarised" if self.summarised else "listed"
        return f"Reactions({kind}, {self.chips()!r})"
