"""Call records: who called whom in which room, when, for how long (PROTOCOL.md 8).

A call lives in the server's memory while it rings and runs
(:mod:`chatnet.services.calls`); when it ends one row is written here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from chatnet.store.database import Database, Txn


@dataclass(frozen=True)
class CallRecord:
    """One ended call.

    Attributes:
        call_id: the call's id.
        room_id: the room it was in.
        started_by: user id of the caller.
        started_ts: when it started ringing, ms since the epoch.
        answered_ts: when the first callee accepted (ms), or None if nobody did.
        ended_ts: when it ended (ms).
        reason: ``hangup``, ``no_answer`` or ``rejected`` (PROTOCOL.md 8).
        participants: user ids of everyone who took part (the caller first).
    """

    call_id: int
    room_id: int
    started_by: int
    started_ts: int
    answered_ts: int | None
    ended_ts: int
    reason: str
    participants: tuple[int, ...]

    @property
    def duration_ms(self) -> int:
        """Talk time: from the first answer to the end (0 if never answered), ms."""
        return 0 if self.answered_ts is None else self.ended_ts - self.answered_ts


class CallStore:
    """Data access for call records. Mixed into :class:`ChatStore`."""

    db: Database

    async def record_call(self, call: CallRecord) -> None:
        """Store an ended call."""

        def txn(t: Txn) -> None:
            t.execute("INSERT INTO calls (call_id, room_id, started_by, started_ts, "
                      "answered_ts, ended_ts, reason, participants) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (call.call_id, call.room_id, call.started_by, call.started_ts,
                       call.answered_ts, call.ended_ts, call.reason,
                       json.dumps(list(call.participants))))

        await self.db.run_interaction("record_call", txn)

    async def calls_in_room(self, room_id: int, limit: int = 50) -> list[CallRecord]:
        """The room's most recent ended calls, newest first (at most ``limit``)."""

        def txn(t: Txn) -> list[CallRecord]:
            rows = t.execute("SELECT call_id, room_id, started_by, started_ts, answered_ts, "
                             "ended_ts, reason, participants FROM calls WHERE room_id = ? "
                             "ORDER BY started_ts DESC, call_id DESC LIMIT ?",
                             (room_id, limit)).fetchall()
            return [CallRecord(int(r[0]), int(r[1]), int(r[2]), int(r[3]),
                               None if r[4] is None else int(r[4]), int(r[5]), r[6],
                               tuple(json.loads(r[7]))) for r in rows]

        return await self.db.run_interaction("calls_in_room", txn)
