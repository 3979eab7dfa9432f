"""What the assistant remembers of each room: the last messages it has seen.

The context sent with a question is the room's recent turns, oldest first,
ending with the question: other people's messages as ``user`` turns (prefixed
with the sender's name, since a room has many), the assistant's own answers as
``assistant`` turns. It is bounded three ways: messages per room, characters
per prompt, and rooms remembered (the least recently active are forgotten).
Nothing is written to disk; a restart forgets everything. Edited messages are
remembered as they are now; deleted and expired ones are forgotten.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass(order=True)
class Turn:
    """One message as the assistant remembers it.

    Attributes:
        seq: its place in the room (PROTOCOL.md 6).
        msg_id: its id.
        sender: the sender's username.
        text: its body now.
        own: whether the assistant sent it.
        complete: False while the assistant is still writing it (left out of prompts).
    """

    seq: int
    msg_id: int = field(compare=False)
    sender: str = field(compare=False)
    text: str = field(compare=False)
    own: bool = field(compare=False, default=False)
    complete: bool = field(compare=False, default=True)


class ConversationMemory:
    """The recent turns of each room, bounded.

    Args:
        max_messages: turns of one room put in a prompt (the question included).
        max_chars: characters of a prompt's turns in all (the system message
            aside); a question longer than that alone is cut to it.
        max_rooms: rooms remembered; the least recently active are forgotten first.
    """

    def __init__(self, max_messages: int, max_chars: int, max_rooms: int = 1000) -> None:
        self.max_messages = max_messages
        self.max_chars = max_chars
        self.max_rooms = max_rooms
        self._rooms: OrderedDict[int, list[Turn]] = OrderedDict()

    def __len__(self) -> int:
        """The number of rooms remembered."""
        return len(self._rooms)

    def turns(self, room_id: int) -> list[Turn]:
        """The turns remembered for a room, oldest first (a copy)."""
        return list(self._rooms.get(room_id, ()))

    def remember(self, room_id: int, turn: Turn) -> None:
        """Add a message (in ``seq`` order, whenever it is learned); a message
        already remembered is replaced."""
        turns = self._rooms.pop(room_id, None) or []
        self._rooms[room_id] = turns
        turns[:] = [t for t in turns if t.msg_id != turn.msg_id]
        turn.text = turn.text[:self.max_chars]
        bisect.insort(turns, turn)
        # A few more than a prompt uses: unfinished own turns do not count there.
        del turns[:max(0, len(turns) - self.max_messages - 8)]
        while len(self._rooms) > self.max_rooms:
            self._rooms.popitem(last=False)

    def update(self, room_id: int, msg_id: int, text: str, complete: bool | None = None) -> None:
        """A remembered message's new text (an edit); unknown messages are ignored.

        Args:
            complete: mark the turn complete (True) or not; None leaves it.
        """
        for turn in self._rooms.get(room_id, ()):
            if turn.msg_id == msg_id:
                turn.text = text[:self.max_chars]
                if complete is not None:
                    turn.complete = complete
                return

    def forget(self, room_id: int, msg_id: int) -> None:
        """A message was deleted or expired: it never goes to the endpoint again."""
        turns = self._rooms.get(room_id)
        if turns is not None:
            turns[:] = [t for t in turns if t.msg_id != msg_id]

    def forget_room(self, room_id: int) -> None:
        """The assistant left the room, or the room was deleted."""
        self._rooms.pop(room_id, None)

    def prompt(self, room_id: int, system: str, question_seq: int) -> list[dict[str, str]]:
        """The messages to send for a question: the system message, then the room's
        complete turns up to and including the question, newest kept first within
        the bounds, oldest first in the result.

        Args:
            room_id: the room.
            system: the system message.
            question_seq: the question's ``seq``; later messages are left out.

        Returns:
            ``[{"role": "system"|"user"|"assistant", "content": str}]``.
        """
        chosen: list[dict[str, str]] = []
        used = 0
        candidates = [t for t in self._rooms.get(room_id, ())
                      if t.complete and t.text and t.seq <= question_seq]
        for turn in reversed(candidates):
            if len(chosen) >= self.max_messages:
                break
            content = turn.text if turn.own else f"{turn.sender}: {turn.text}"
            if used + len(content) > self.max_chars:
                if chosen:
                    break
                content = content[:self.max_chars]
            used += len(content)
            chosen.append({"role": "assistant" if turn.own else "user", "content": content})
        chosen.reverse()
        return [{"role": "system", "content": system}, *chosen]
