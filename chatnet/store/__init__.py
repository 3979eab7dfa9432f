"""The database layer: one :class:`ChatStore` over SQLite or PostgreSQL.

Services talk to :class:`ChatStore` only; which engine sits below is decided
by the composition root (``--database``). See :mod:`chatnet.store.database`.
"""

from __future__ import annotations

import secrets
import threading
import time

from chatnet.store.audit import AuditStore
from chatnet.store.calls import CallRecord, CallStore
from chatnet.store.database import Database, PostgresEngine, SqliteEngine, engine_from_url
from chatnet.store.feed import FeedStore
from chatnet.store.files import FileRecord, FileStore, UploadRecord
from chatnet.store.messages import MessageStore, SendResult
from chatnet.store.records import InviteRecord, MemberRecord, RoomRecord, UserRecord, now_ms
from chatnet.store.rooms import LimitReached, RoomStore
from chatnet.store.users import UserStore

__all__ = [
    "CallRecord", "ChatStore", "Database", "FileRecord", "IdGenerator", "InviteRecord",
    "LimitReached", "MemberRecord", "PostgresEngine",
    "RoomRecord", "SendResult", "SqliteEngine", "UploadRecord", "UserRecord",
    "engine_from_url", "now_ms",
]

#: 2020-01-01T00:00:00Z in ms: the epoch of generated ids.
_ID_EPOCH_MS = 1_577_836_800_000


def node_of_id(generated_id: int) -> int:
    """The node number inside an id made by :class:`IdGenerator`."""
    return (generated_id >> 12) & 1023


class IdGenerator:
    """Time-ordered 63-bit ids: 41 bits of ms since 2020, 10 bits of node, 12 of counter.

    Ids from one node are unique and increase; several nodes must have
    different ``node`` numbers (0-1023). Thread-safe.

    Args:
        node: this node's number; a random one is picked if omitted, which is
            safe for a single node and unlikely to collide for a few.
    """

    def __init__(self, node: int | None = None) -> None:
        self.node = secrets.randbelow(1024) if node is None else node
        if not 0 <= self.node < 1024:
            raise ValueError("node must be 0-1023")
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0

    def next_id(self) -> int:
        """A new id (positive, below 2**63)."""
        with self._lock:
            ms = max(int(time.time() * 1000) - _ID_EPOCH_MS, self._last_ms)
            if ms == self._last_ms:
                self._counter += 1
                if self._counter >= 4096:
                    ms += 1
                    self._counter = 0
            else:
                self._counter = 0
            self._last_ms = ms
            return (ms << 22) | (self.node << 12) | self._counter


class ChatStore(UserStore, RoomStore, MessageStore, FileStore, AuditStore, CallStore,
                FeedStore):
    """All data access of the server, over one :class:`Database`.

    Args:
        db: the database (pool + engine); call :meth:`Database.migrate` before use.
        ids: the id generator for new rows.
    """

    def __init__(self, db: Database, ids: IdGenerator | None = None) -> None:
        self.db = db
        self.ids = ids or IdGenerator()
