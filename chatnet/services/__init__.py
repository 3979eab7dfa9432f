"""The chat services and their perspectives: the only objects the wire may call.

Each service (one per server) holds the store, the fan-out and a clock, and
implements the rules of one PROTOCOL.md section, authorisation included. For
every logged-in session the realm asks each service for a *perspective*: a
small object bound to that session's avatar whose ``perspective_*`` methods
are what the op registry (``chatnet.wire.ops``) points at. Services return
plain maps or raise :class:`chatnet.errors.ChatError`; they never see bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from chatnet.services.accounts import AccountService
    from chatnet.services.admin import AdminService
    from chatnet.services.calls import CallService
    from chatnet.services.feed import FeedService
    from chatnet.services.files import FileService
    from chatnet.services.messages import MessageService
    from chatnet.services.rooms import RoomService
    from chatnet.services.users import UserService


class Clock(Protocol):
    """What services need of a clock (``IReactorTime``)."""

    def seconds(self) -> float:
        """Now, in seconds since the epoch."""

    def callLater(self, delay: float, f: Any, *args: Any, **kw: Any) -> Any:
        """Call ``f`` after ``delay`` seconds."""


class Actor(Protocol):
    """The parts of an avatar a service needs: who is acting, through which session."""

    user_id: int
    username: str
    roles: tuple[str, ...]
    mind: Any


@dataclass(frozen=True)
class Services:
    """The set of services the realm builds perspectives from.

    Attributes:
        accounts: registration, passwords, tokens (PROTOCOL.md 3).
        users: profiles, presence, contacts (PROTOCOL.md 4).
        rooms: rooms and memberships (PROTOCOL.md 5).
        messages: messages, receipts, typing (PROTOCOL.md 6).
        files: uploads and downloads (PROTOCOL.md 7).
        calls: voice calls (PROTOCOL.md 8).
        feed: the team feed (PROTOCOL.md 10).
        admin: administration (PROTOCOL.md 9).
    """

    accounts: AccountService
    users: UserService
    rooms: RoomService
    messages: MessageService
    files: FileService
    calls: CallService
    feed: FeedService
    admin: AdminService

    def perspective(self, name: str, actor: Actor) -> object | None:
        """A logged-in session's perspective by the name the op registry uses
        (the service's field name here), or None for any other name."""
        if name not in _PERSPECTIVES:
            return None
        service: Any = getattr(self, name)
        made: object = service.perspective(actor)
        return made


#: The perspective names of :class:`Services` (its fields).
_PERSPECTIVES = frozenset({"accounts", "users", "rooms", "messages", "files", "calls",
                           "feed", "admin"})


def ms(clock: Clock) -> int:
    """The clock's time in ms since the epoch (the wire's time unit)."""
    return int(clock.seconds() * 1000)
