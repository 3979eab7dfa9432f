"""The interfaces between chatnet's layers, in one place.

``ISessionMind`` is what the server protocol (the cred *mind*) offers to the
rest of the server; ``IChatAvatar`` is what the realm returns at login;
``IFanout`` delivers encoded events to sessions. Tests check every
implementation with ``zope.interface.verify.verifyObject``.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface


class ISessionMind(Interface):
    """One client connection as the server's services see it (the cred mind).

    Implemented by :class:`chatnet.wire.server.ChatServerProtocol`.
    """

    session_id = Attribute("str: this login's id, unique on the node; '' before login")
    user_id = Attribute("int: the logged-in user's id; 0 before login")
    username = Attribute("str: the logged-in user's name; '' before login")
    client = Attribute("str: the client name sent in session.hello")
    peer = Attribute("str: the peer address, host:port")
    certificate_user = Attribute(
        "str | None: the subject common name of the client's TLS certificate (mutual "
        "TLS, --tls-client-ca), case-folded; None without one (or before the handshake)")
    since = Attribute("int: when the session logged in, ms since epoch")
    authenticated_ts = Attribute("int: when the session last proved its credentials (login, "
                                 "resume, password change), ms since epoch; 0 before login")

    def bind(avatar: IChatAvatar) -> None:
        """Called by the realm once, when this connection logs in as ``avatar``;
        afterwards ``session_id``, ``user_id``, ``username`` and ``since`` are set."""

    def send_frame(frame: bytes) -> None:
        """Queue one complete, already-encoded frame for this connection.

        Never blocks and never raises: a connection whose output queue is over
        its bound is disconnected instead (PROTOCOL.md principle "slow peers
        cost only themselves").
        """

    def when_writable() -> Deferred[None]:
        """A Deferred firing once the connection's output has drained; bulk data
        (file downloads) waits for it before producing more."""

    def backed_up() -> bool:
        """Whether output is waiting for this connection (its transport pushed back):
        real-time data (call audio) is dropped for it rather than queued."""

    def end_session(reason: str) -> None:
        """Send ``session.ended {reason}`` and close the connection (PROTOCOL.md 3.8).

        Args:
            reason: ``replaced``, ``banned``, ``logout``, ``password_changed`` or
                ``shutdown``.
        """

    def reauthenticated(ts: int) -> None:
        """The session proved its credentials again at ``ts`` (ms since epoch), e.g.
        by changing its password; sessions older than a credentials change end."""


class IChatAvatar(Interface):
    """What the realm hands to a logged-in (or anonymous) connection.

    The wire can reach only the ``perspective_*`` methods of the objects
    :meth:`perspective` returns, and only through the op registry
    (``chatnet.wire.ops``).
    """

    user_id = Attribute("int: the user's id, 0 for the anonymous avatar")
    username = Attribute("str: the user's name, '' for the anonymous avatar")

    def perspective(name: str) -> object | None:
        """The perspective the op registry calls ``name`` (``"messages"``, …), made
        on first use; None if this avatar has no such perspective."""

    def login_result(token: str) -> dict[str, object]:
        """The result map of ``auth.login`` / ``auth.resume`` (PROTOCOL.md 3.4).

        Args:
            token: the resume token to hand to the client.
        """


class IFanout(Interface):
    """Delivers encoded event frames to the sessions of this node (and, in a cluster,
    of the other nodes), and keeps the room membership map used to find them."""

    def attach(session: ISessionMind) -> None:
        """Start delivering to a session that has just logged in."""

    def detach(session: ISessionMind) -> None:
        """Stop delivering to a session that has ended."""

    def sessions_of(user_id: int) -> frozenset[ISessionMind]:
        """The sessions of a user on this node."""

    def deliver_room(room_id: int, frame: bytes, exclude: ISessionMind | None = None) -> int:
        """Write ``frame`` to every session of every member of the room.

        Args:
            exclude: one session to skip (e.g. the typing user's own).

        Returns:
            the number of sessions written to on this node.
        """

    def deliver_users(user_ids: Iterable[int], frame: bytes,
                      exclude: ISessionMind | None = None) -> int:
        """Write ``frame`` to every session of the given users; returns sessions written to."""

    def deliver_message(room_id: int, frame: bytes, sender_id: int) -> int:
        """``deliver_room`` leaving out the members who blocked ``sender_id``
        (docs/protocol.md 4, "Blocking"); returns sessions written to."""

    def deliver_monitors(frame: bytes) -> None:
        """Write ``frame`` to every session that asked for ``admin.monitor``."""

    def blocked(blocker_id: int, blocked_id: int, on: bool) -> None:
        """Record a block (``on``) or its end (after it is committed)."""

    def has_blocked(blocker_id: int, blocked_id: int) -> bool:
        """Whether ``blocker_id`` blocked ``blocked_id``."""

    def members(room_id: int) -> frozenset[int]:
        """User ids of the room's members, from the membership map."""

    def rooms_of(user_id: int) -> frozenset[int]:
        """Room ids the user is a member of, from the membership map."""

    def member_added(room_id: int, user_id: int) -> None:
        """Record a new membership (after it is committed)."""

    def member_removed(room_id: int, user_id: int) -> None:
        """Record a membership that ended (after it is committed)."""

    def room_removed(room_id: int) -> None:
        """Forget a deleted room."""
