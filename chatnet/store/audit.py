"""The audit log: an append-only table of security-relevant events.

Rows are written by the server as things happen (a lock-out after failed
logins, a password change or reset, ...) and never changed afterwards.
``details`` is a JSON object of whatever else the event needs.
"""

from __future__ import annotations

import json
from typing import Any

from chatnet.store.database import Database, Txn, optional_filters


class AuditStore:
    """Data access for the audit log and admin broadcasts. Mixed into
    :class:`ChatStore`."""

    db: Database

    async def audit(self, entry_id: int, ts: int, action: str, *, user_id: int | None = None,
                    username: str | None = None, peer: str | None = None,
                    details: dict[str, Any] | None = None) -> None:
        """Append one entry.

        Args:
            entry_id: a new id (``ids.next_id()``).
            ts: when it happened, ms since the epoch.
            action: what happened, dotted (``login.locked_out``, ``password.changed``).
            user_id: the account concerned, if known.
            username: the name given or concerned (also for unknown accounts).
            peer: the peer address, if it came over the network.
            details: more facts, stored as JSON.
        """
        text = json.dumps(details, ensure_ascii=False, sort_keys=True) if details else None

        def txn(t: Txn) -> None:
            t.execute("INSERT INTO audit_log (entry_id, ts, action, user_id, username, peer, "
                      "details) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (entry_id, ts, action, user_id, username, peer, text))

        await self.db.run_interaction("audit", txn)

    async def add_broadcast(self, broadcast_id: int, ts: int, body: str, by_id: int) -> None:
        """Keep an admin broadcast (``admin.broadcast``)."""
        def txn(t: Txn) -> None:
            t.execute("INSERT INTO broadcasts (broadcast_id, ts, body, by_id) VALUES "
                      "(?, ?, ?, ?)", (broadcast_id, ts, body, by_id))

        await self.db.run_interaction("add_broadcast", txn)

    async def broadcasts_since(self, ts: int, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` broadcasts from ``ts`` (ms) on, oldest first, as
        ``system`` event data ``{body, ts, by?}``. At ``ts`` itself too: a broadcast
        in the very millisecond a session ended is brought again rather than lost."""
        def txn(t: Txn) -> list[dict[str, Any]]:
            rows = t.execute("SELECT b.body, b.ts, u.username FROM broadcasts b LEFT JOIN users "
                             "u ON u.user_id = b.by_id WHERE b.ts >= ? ORDER BY b.ts DESC, "
                             "b.broadcast_id DESC LIMIT ?", (ts, limit)).fetchall()
            return [{"body": r[0], "ts": int(r[1]), **({"by": r[2]} if r[2] else {})}
                    for r in reversed(rows)]

        return await self.db.run_interaction("broadcasts_since", txn)

    async def audit_page(self, since: int | None, until: int | None, action: str | None,
                         username: str | None, before: tuple[int, int] | None,
                         limit: int) -> list[dict[str, Any]]:
        """Entries newest first, filtered (``admin.audit``): ``since`` <= ts <
        ``until`` (ms), one ``action``, one ``username``, and after ``before``
        ``(ts, entry_id)`` of the previous page; at most ``limit``.

        Returns:
            entries as :meth:`audit_entries` gives them.
        """
        def txn(t: Txn) -> list[dict[str, Any]]:
            where, args = optional_filters((("ts >= ?", since), ("ts < ?", until),
                                            ("action = ?", action), ("username = ?", username)))
            if before is not None:
                where += " AND (ts < ? OR (ts = ? AND entry_id < ?))"
                args.extend((before[0], before[0], before[1]))
            rows = t.execute("SELECT entry_id, ts, action, user_id, username, peer, details "
                             f"FROM audit_log WHERE 1 = 1{where} "
                             "ORDER BY ts DESC, entry_id DESC LIMIT ?", [*args, limit]).fetchall()
            return [_entry(row) for row in rows]

        return await self.db.run_interaction("audit_page", txn)

    async def audit_entries(self, action: str | None = None,
                            limit: int = 100) -> list[dict[str, Any]]:
        """The newest entries first, optionally of one action.

        Returns:
            ``[{entry_id, ts, action, user_id?, username?, peer?, details?}]``.
        """
        def txn(t: Txn) -> list[dict[str, Any]]:
            where, args = ("WHERE action = ?", [action]) if action else ("", [])
            rows = t.execute("SELECT entry_id, ts, action, user_id, username, peer, details "
                             f"FROM audit_log {where} ORDER BY ts DESC, entry_id DESC LIMIT ?",
                             [*args, limit]).fetchall()
            return [_entry(row) for row in rows]

        return await self.db.run_interaction("audit_entries", txn)


def _entry(row: tuple[Any, ...]) -> dict[str, Any]:
    """An audit row as a map (keys without a value left out)."""
    entry: dict[str, Any] = {"entry_id": int(row[0]), "ts": int(row[1]), "action": row[2]}
    for key, value in zip(("user_id", "username", "peer"), row[3:6], strict=True):
        if value is not None:
            entry[key] = value
    if row[6]:
        entry["details"] = json.loads(row[6])
    return entry
