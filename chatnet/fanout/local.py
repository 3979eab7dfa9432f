"""Fan-out on one node: encode once, write many (DESIGN.md "Encode once, write many").

The hub keeps two maps in memory: user -> sessions on this node, and room ->
member user ids (loaded from the store at start, then updated by the services
after each committed membership change). Delivering an event to a room is a
walk over those maps writing the same frame bytes to each session; it touches
neither the database nor msgpack.

Methods call each other as ``LocalFanout.method(self, …)``, never through
``self``: a cluster's fan-out overrides the public methods to publish as well,
and one delivery must be published once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from chatnet.interfaces import IFanout, ISessionMind

_EMPTY: frozenset[int] = frozenset()


@implementer(IFanout)
class LocalFanout:
    """Sessions and room memberships of one node.

    Sessions must provide :class:`~chatnet.interfaces.ISessionMind`; a session's
    ``send_frame`` never raises and bounds its own queue, so one slow or broken
    recipient never affects the others.
    """

    log = Logger()

    def __init__(self) -> None:
        self._sessions: dict[int, set[ISessionMind]] = {}
        self._room_members: dict[int, set[int]] = {}
        self._user_rooms: dict[int, set[int]] = {}
        # room -> the send_frame of every session of every member: the hot loop of
        # a fan-out is then one call per recipient. Dropped on any change of
        # sessions or memberships and rebuilt on the next delivery.
        self._targets: dict[int, tuple[Any, ...]] = {}
        #: Event frames written to sessions (``chatnet_deliveries`` in /metrics).
        self.deliveries = 0
        #: Sessions that asked for every message (``admin.monitor``).
        self.monitors: set[ISessionMind] = set()
        #: user id -> the users who blocked them (loaded at start, kept current by
        #: the user service): whom a sender's room messages must skip.
        self._blocked_by: dict[int, set[int]] = {}
        #: Hooks a cluster calls (:class:`~chatnet.fanout.cluster.ClusterFanout`);
        #: one node alone never does.
        self.on_presence: Callable[[int, str | None], None] | None = None
        self.on_gone: Callable[[set[int]], Awaitable[None]] | None = None

    async def start(self, reload: Callable[[], Awaitable[None]]) -> None:
        """Join the cluster, if any (nothing to do on one node).

        Args:
            reload: reloads the membership and block maps from the database;
                a cluster calls it whenever it may have missed changes.
        """

    async def stop(self) -> None:
        """Leave the cluster, if any."""

    # -- sessions --------------------------------------------------------------------------

    def attach(self, session: ISessionMind) -> None:
        """Start delivering to a logged-in session."""
        self._sessions.setdefault(session.user_id, set()).add(session)
        self._targets.clear()

    def detach(self, session: ISessionMind) -> None:
        """Stop delivering to a session (idempotent)."""
        self._targets.clear()
        self.monitors.discard(session)
        sessions = self._sessions.get(session.user_id)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._sessions[session.user_id]

    def sessions_of(self, user_id: int) -> frozenset[ISessionMind]:
        """The sessions of one user on this node."""
        return frozenset(self._sessions.get(user_id, ()))

    def session_count(self, user_id: int) -> int:
        """How many sessions a user has (here; in a cluster, on every node)."""
        return len(self._sessions.get(user_id, ()))

    def all_sessions(self) -> list[ISessionMind]:
        """Every session on this node."""
        return [s for sessions in self._sessions.values() for s in sessions]

    def online_users(self) -> frozenset[int]:
        """Users with at least one session on this node."""
        return frozenset(self._sessions)

    def end_sessions(self, user_id: int, reason: str,
                     keep: ISessionMind | None = None) -> int:
        """End every session of a user with ``session.ended {reason}`` (a ban, a
        password change, a replacing login), but ``keep``.

        Returns:
            how many sessions were ended on this node.
        """
        ended = 0
        for session in tuple(self._sessions.get(user_id, ())):
            if session is not keep:
                session.end_session(reason)
                ended += 1
        return ended

    async def session_rows(self) -> list[dict[str, Any]]:
        """Every live session as ``admin.sessions`` rows: ``{session_id, username,
        peer, since, client}``."""
        return [{"session_id": s.session_id, "username": s.username,
                 "peer": getattr(s, "peer", ""), "since": getattr(s, "since", 0),
                 "client": getattr(s, "client", "")} for s in self.all_sessions()]

    def remote_presence(self, user_id: int) -> str | None:
        """The presence a user chose on another node (a cluster's); None here."""
        return None

    def presence_changed(self, user_id: int, state: str | None) -> None:
        """A user's chosen presence on this node changed (a cluster tells the
        other nodes); nothing to do on one node."""

    def monitoring(self) -> bool:
        """Whether a session asked for ``admin.monitor``."""
        return bool(self.monitors)

    def home_of(self, generated_id: int) -> int | None:
        """The node that made ``generated_id`` (a call's id: the node that holds
        the call) when that is another node of a cluster; None when it is this one
        (always, on one node)."""
        return None

    def send_node(self, node: int, name: str, *args: Any) -> bool:
        """Send to another node of a cluster; there is none here (False)."""
        return False

    def send_all(self, name: str, *args: Any) -> bool:
        """Send to every other node of a cluster; there is none here (False)."""
        return False

    @property
    def healthy(self) -> bool:
        """Whether delivery works everywhere it should (always, on one node)."""
        return True

    # -- delivery --------------------------------------------------------------------------

    def deliver_room(self, room_id: int, frame: bytes,
                     exclude: ISessionMind | None = None) -> int:
        """Write ``frame`` to every session of every member of ``room_id``.

        Returns:
            how many sessions it was written to.
        """
        if exclude is not None:
            members = self._room_members.get(room_id)
            return LocalFanout.deliver_users(self, members, frame, exclude) if members else 0
        targets = self._targets.get(room_id)
        if targets is None:
            targets = self._targets[room_id] = tuple(
                session.send_frame for user_id in self._room_members.get(room_id, ())
                for session in self._sessions.get(user_id, ()))
        for send in targets:
            send(frame)
        self.deliveries += len(targets)
        return len(targets)

    def deliver_all(self, frame: bytes) -> int:
        """Write ``frame`` to every session (an admin broadcast).

        Returns:
            how many sessions it was written to.
        """
        sessions = self.all_sessions()
        for session in sessions:
            session.send_frame(frame)
        return len(sessions)

    def deliver_users_here(self, user_ids: Iterable[int], frame: bytes) -> int:
        """:meth:`deliver_users` on this node only (the same on one node)."""
        return LocalFanout.deliver_users(self, user_ids, frame)

    def deliver_monitors(self, frame: bytes) -> None:
        """Write ``frame`` to every monitoring session (``admin.monitor``). Each
        session's output is bounded by its outbox: a monitor that cannot keep up
        is disconnected, nobody else waits for it."""
        for session in tuple(self.monitors):
            session.send_frame(frame)

    def deliver_message(self, room_id: int, frame: bytes, sender_id: int) -> int:
        """:meth:`deliver_room`, leaving out the members who blocked the sender.

        Returns:
            how many sessions it was written to.
        """
        blockers = self._blocked_by.get(sender_id)
        if blockers:
            members = self._room_members.get(room_id, _EMPTY)
            if not blockers.isdisjoint(members):
                return LocalFanout.deliver_users(self, members - blockers, frame)
        return LocalFanout.deliver_room(self, room_id, frame)

    # -- blocks ---------------------------------------------------------------------------

    def load_blocks(self, blocks: Iterable[tuple[int, int]]) -> None:
        """Replace the block map with ``[(blocker_id, blocked_id)]`` from the store."""
        self._blocked_by.clear()
        for blocker, blocked in blocks:
            LocalFanout.blocked(self, blocker, blocked, True)

    def blocked(self, blocker_id: int, blocked_id: int, on: bool) -> None:
        """``blocker_id`` blocked (``on``) or unblocked ``blocked_id``."""
        if on:
            self._blocked_by.setdefault(blocked_id, set()).add(blocker_id)
            return
        blockers = self._blocked_by.get(blocked_id)
        if blockers is not None:
            blockers.discard(blocker_id)
            if not blockers:
                del self._blocked_by[blocked_id]

    def has_blocked(self, blocker_id: int, blocked_id: int) -> bool:
        """Whether ``blocker_id`` blocked ``blocked_id``."""
        return blocker_id in self._blocked_by.get(blocked_id, _EMPTY)

    def deliver_users(self, user_ids: Iterable[int], frame: bytes,
                      exclude: ISessionMind | None = None) -> int:
        """Write ``frame`` to every session of the given users.

        Returns:
            how many sessions it was written to.
        """
        sessions_by_user = self._sessions
        count = 0
        # Copy the ids: a write may disconnect a session, which detaches it.
        for user_id in tuple(user_ids):
            sessions = sessions_by_user.get(user_id)
            if not sessions:
                continue
            for session in tuple(sessions):
                if session is not exclude:
                    session.send_frame(frame)
                    count += 1
        self.deliveries += count
        return count

    # -- memberships -----------------------------------------------------------------------

    def load_memberships(self, memberships: Iterable[tuple[int, int]]) -> None:
        """Replace the membership map with ``[(room_id, user_id)]`` from the store."""
        self._room_members.clear()
        self._user_rooms.clear()
        self._targets.clear()
        for room_id, user_id in memberships:
            LocalFanout.member_added(self, room_id, user_id)

    def members(self, room_id: int) -> frozenset[int]:
        """User ids of a room's members."""
        return frozenset(self._room_members.get(room_id, _EMPTY))

    def rooms_of(self, user_id: int) -> frozenset[int]:
        """Room ids a user is a member of."""
        return frozenset(self._user_rooms.get(user_id, _EMPTY))

    def co_members(self, user_id: int, max_room_size: int | None = None) -> set[int]:
        """Everyone who shares at least one room with ``user_id`` (not the user).

        Args:
            user_id: the user.
            max_room_size: count only rooms of at most this many members (None:
                every room); presence skips larger rooms (``--presence-room-limit``).

        Returns:
            the user ids.
        """
        people: set[int] = set()
        for room_id in self._user_rooms.get(user_id, ()):
            members = self._room_members.get(room_id, ())
            if max_room_size is None or len(members) <= max_room_size:
                people.update(members)
        people.discard(user_id)
        return people

    def member_added(self, room_id: int, user_id: int) -> None:
        """Record a committed membership."""
        self._targets.pop(room_id, None)
        self._room_members.setdefault(room_id, set()).add(user_id)
        self._user_rooms.setdefault(user_id, set()).add(room_id)

    def member_removed(self, room_id: int, user_id: int) -> None:
        """Record that a membership ended."""
        self._targets.pop(room_id, None)
        members = self._room_members.get(room_id)
        if members is not None:
            members.discard(user_id)
        rooms = self._user_rooms.get(user_id)
        if rooms is not None:
            rooms.discard(room_id)
            if not rooms:
                del self._user_rooms[user_id]

    def room_removed(self, room_id: int) -> None:
        """Forget a deleted room and all its memberships."""
        self._targets.pop(room_id, None)
        for user_id in self._room_members.pop(room_id, set()):
            rooms = self._user_rooms.get(user_id)
            if rooms is not None:
                rooms.discard(room_id)
                if not rooms:
                    del self._user_rooms[user_id]
