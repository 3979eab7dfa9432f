"""Rooms and memberships (PROTOCOL.md section 5).

Rules kept here, next to the data:

* non-members get ``not_found`` for a room, so private rooms do not reveal
  that they exist; members who lack the role get ``forbidden``;
* direct rooms have exactly two members: no join, leave, invite, kick, role
  change or rename;
* an owner who leaves hands the room to the longest-standing moderator (or
  member); the room is deleted when its last member leaves;
* nobody is put in a group room by someone else: ``room.create {members}``
  and ``room.invite`` make *invitations*, which the invitee accepts with
  ``room.join`` or declines with ``room.decline``;
* every per-user count is bounded: rooms a user is in (``max_rooms``: group
  rooms and the direct rooms they opened — one someone else opens with them
  does not count, so nobody can fill another's limit) and invitations a
  user has pending (``max_invites``; they expire after
  :data:`INVITE_LIFETIME`). Invitations *to* a user are not capped, so that
  nobody can use up someone's invitations; they page instead;
* every list answer pages and fits in a frame (:mod:`chatnet.services.paging`).

Every change is committed first, then the membership map of the fan-out is
updated, then events go out.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from chatnet.config import DEFAULT_MAX_FRAME, DEFAULT_MAX_INVITES, DEFAULT_MAX_ROOMS
from chatnet.errors import ChatError, ErrorCode, bad_request, forbidden, not_found
from chatnet.fanout import LocalFanout
from chatnet.services import Actor, Clock, ms
from chatnet.services.paging import decode_cursor, encode_cursor, fit_page
from chatnet.services.users import UserService
from chatnet.store import ChatStore, LimitReached, RoomRecord
from chatnet.wire.codec import event_frame

_MANAGERS = frozenset({"owner", "moderator"})
#: Seconds an invitation stays valid (docs/protocol.md 5); repeating it starts again.
INVITE_LIFETIME = 14 * 24 * 3600


class RoomService:
    """Rooms, direct conversations and memberships.

    Args:
        store: the chat store.
        fanout: delivery and the membership map.
        users: for user lookups and presence.
        clock: time source.
        max_frame: the largest frame clients accept (``--max-frame``), bytes: list
            answers stop early rather than exceed it.
        max_rooms: rooms one user may be in: group rooms and the direct rooms
            they opened (``--max-rooms``).
        max_invites: invitations one user may have pending (``--max-invites``).
    """

    log = Logger()

    def __init__(self, store: ChatStore, fanout: LocalFanout, users: UserService,
                 clock: Clock, max_frame: int = DEFAULT_MAX_FRAME,
                 max_rooms: int = DEFAULT_MAX_ROOMS,
                 max_invites: int = DEFAULT_MAX_INVITES) -> None:
        self.store = store
        self.fanout = fanout
        self.users = users
        self.clock = clock
        self.max_frame = max_frame
        self.max_rooms = max_rooms
        self.max_invites = max_invites

    def invites_since(self) -> int:
        """Invitations made before this time (ms since epoch) have expired."""
        return ms(self.clock) - INVITE_LIFETIME * 1000

    async def over_limit(self, error: LimitReached, actor: Actor,
                         inviting: int = 0) -> ChatError:
        """The ``conflict`` error (``details.limit``) for a limit the store refused.

        Args:
            error: what the store raised.
            actor: who asked.
            inviting: how many invitations the request would have made.
        """
        details = {"limit": error.limit}
        if error.what == "invites":
            more = f"inviting {inviting} more people would pass" if inviting > 1 else \
                "you already have"
            return ChatError(
                ErrorCode.CONFLICT,
                f"{more} {error.limit} pending invitations, the most this server allows; "
                "an invitation ends when it is accepted or declined, or after "
                f"{INVITE_LIFETIME // 86400} days", details)
        if error.user_id == actor.user_id:
            return ChatError(
                ErrorCode.CONFLICT,
                f"you are already in {error.limit} rooms, the most this server allows; "
                "leave one first", details)
        other = await self.store.user_by_id(error.user_id)
        name = other.username if other is not None else "the other user"
        return ChatError(
            ErrorCode.CONFLICT,
            f"{name} is already in {error.limit} rooms, the most this server allows",
            details)

    def perspective(self, actor: Actor) -> RoomPerspective:
        """The rooms perspective of one session."""
        return RoomPerspective(self, actor)

    async def room_as_member(self, room_id: int, user_id: int) -> tuple[RoomRecord, str]:
        """A room and the user's role in it.

        Raises:
            ChatError: ``not_found`` if the room does not exist or the user is not a member.
        """
        role = await self.store.role_of(room_id, user_id)
        room = await self.store.room(room_id) if role is not None else None
        if room is None or role is None:
            raise not_found("no such room")
        return room, role

    def tell_room(self, room_id: int, event: str, data: dict[str, Any]) -> None:
        """Send one event to every session of every member of a room."""
        self.fanout.deliver_room(room_id, event_frame(event, data))

    def tell_user(self, user_id: int, event: str, data: dict[str, Any]) -> None:
        """Send one event to every session of one user."""
        self.fanout.deliver_users([user_id], event_frame(event, data))


class RoomPerspective:
    """``room.*`` and ``dm.open`` for one session."""

    __slots__ = ("actor", "service")

    def __init__(self, service: RoomService, actor: Actor) -> None:
        self.service = service
        self.actor = actor

    async def perspective_create(self, name: str, topic: str, visibility: str,
                                 members: list[str] | None) -> dict[str, Any]:
        """``room.create`` → room. The creator is the owner and only member; the users
        in ``members`` are *invited* (each gets ``room.invited {room, by}`` and
        accepts with ``room.join``).

        Raises:
            ChatError: ``not_found`` naming a member that does not exist,
                ``conflict`` (``details.limit``) if the creator is in ``max_rooms``
                rooms or the invitations would pass ``max_invites``.
        """
        service = self.service
        invitee_ids: list[int] = []
        for username in dict.fromkeys(members or ()):
            user = await service.users.user_named(username)
            # Someone who blocked the creator is left out silently, as room.invite does.
            if (user.user_id != self.actor.user_id
                    and not service.fanout.has_blocked(user.user_id, self.actor.user_id)):
                invitee_ids.append(user.user_id)
        try:
            room = await service.store.create_room(
                service.store.ids.next_id(), "group", name, topic, visibility,
                self.actor.user_id, ms(service.clock), invitee_ids=invitee_ids,
                max_rooms=service.max_rooms, max_invites=service.max_invites,
                invites_since=service.invites_since())
        except LimitReached as error:
            raise await service.over_limit(error, self.actor, len(invitee_ids)) from None
        service.fanout.member_added(room.room_id, self.actor.user_id)
        wire = room.to_wire()
        invited = event_frame("room.invited", {"room": wire, "by": self.actor.username})
        service.fanout.deliver_users(invitee_ids, invited)
        service.log.info("{user} created room {room_id} ({name})", user=self.actor.username,
                         room_id=room.room_id, name=name)
        return wire

    async def perspective_open_direct(self, username: str) -> dict[str, Any]:
        """``dm.open`` → the direct room with that user (the same room every time).
        When it is created, the other user gets ``room.invited {room, by}`` (for a
        direct room that means "you are in it": direct rooms have no invitations).

        Raises:
            ChatError: ``not_found`` (no such user), ``bad_request`` (oneself),
                ``conflict`` (``details.limit``) if creating it would put the
                opener in more than ``max_rooms`` rooms (it does not count for
                the other user).
        """
        service = self.service
        other = await service.users.user_named(username)
        if other.user_id == self.actor.user_id:
            raise bad_request("username must be someone else")
        try:
            room, created = await service.store.open_direct(
                service.store.ids.next_id(), self.actor.user_id, other.user_id,
                ms(service.clock), service.max_rooms)
        except LimitReached as error:
            raise await service.over_limit(error, self.actor) from None
        wire = room.to_wire()
        if created:
            service.fanout.member_added(room.room_id, self.actor.user_id)
            service.fanout.member_added(room.room_id, other.user_id)
            if not service.fanout.has_blocked(other.user_id, self.actor.user_id):
                service.tell_user(other.user_id, "room.invited",
                                  {"room": wire, "by": self.actor.username})
        return wire

    async def perspective_directory(self, query: str | None, cursor: str | None,
                                    limit: int) -> dict[str, Any]:
        """``room.directory`` → ``{rooms: [room], next_cursor?}``: public group rooms
        matching ``query``, by name, a page at a time (never over a frame).

        Raises:
            ChatError: ``bad_request`` (a cursor this op did not hand out).
        """
        service = self.service
        after = decode_cursor(cursor, str, int) if cursor else None
        rooms = await service.store.directory(
            query or "", limit + 1, (str(after[0]), int(after[1])) if after else None)
        page, cut = fit_page([r.to_wire() for r in rooms[:limit]], "rooms", service.max_frame)
        result: dict[str, Any] = {"rooms": page}
        if cut or len(rooms) > limit:
            result["next_cursor"] = encode_cursor(page[-1]["name"], page[-1]["room_id"])
        return result

    async def perspective_list(self, cursor: str | None, limit: int) -> dict[str, Any]:
        """``room.list`` → ``{rooms: [room + {role, last_seq, read_seq, unread}],
        next_cursor?}``, by room id, a page at a time (never over a frame).
        ``unread`` leaves out messages from people the user blocked.

        Raises:
            ChatError: ``bad_request`` (a cursor this op did not hand out).
        """
        service = self.service
        after = int(decode_cursor(cursor, int)[0]) if cursor else 0
        rows = await service.store.rooms_of(self.actor.user_id, after, limit + 1)
        hidden = await service.store.blocked_unread(
            self.actor.user_id, [(room.room_id, read_seq) for room, _role, read_seq
                                 in rows[:limit] if room.last_seq > read_seq])
        rooms = []
        for room, role, read_seq in rows[:limit]:
            wire = room.to_wire()
            wire.update(role=role, last_seq=room.last_seq, read_seq=read_seq,
                        unread=max(0, room.last_seq - read_seq - hidden.get(room.room_id, 0)))
            rooms.append(wire)
        page, cut = fit_page(rooms, "rooms", service.max_frame)
        result: dict[str, Any] = {"rooms": page}
        if cut or len(rows) > limit:
            result["next_cursor"] = encode_cursor(page[-1]["room_id"])
        return result

    async def perspective_invites(self, cursor: str | None, limit: int) -> dict[str, Any]:
        """``room.invites`` (extension) → ``{invites: [{room, by, ts}], next_cursor?}``:
        the user's pending invitations, by room id, a page at a time.

        Raises:
            ChatError: ``bad_request`` (a cursor this op did not hand out).
        """
        service = self.service
        after = int(decode_cursor(cursor, int)[0]) if cursor else 0
        rows = await service.store.invites_of(self.actor.user_id, service.invites_since(),
                                              after, limit + 1)
        page, cut = fit_page([r.to_wire() for r in rows[:limit]], "invites", service.max_frame)
        result: dict[str, Any] = {"invites": page}
        if cut or len(rows) > limit:
            result["next_cursor"] = encode_cursor(page[-1]["room"]["room_id"])
        return result

    async def perspective_decline(self, room_id: int) -> dict[str, Any]:
        """``room.decline`` (extension) → ``{}``: refuse an invitation. The user's
        sessions get ``room.declined {room_id}``; the inviter is not told.

        Raises:
            ChatError: ``not_found`` if there is no pending invitation to the room.
        """
        service = self.service
        if not await service.store.remove_invite(room_id, self.actor.user_id,
                                                 service.invites_since()):
            raise not_found("no invitation to that room")
        service.tell_user(self.actor.user_id, "room.declined", {"room_id": room_id})
        return {}

    async def perspective_join(self, room_id: int) -> dict[str, Any]:
        """``room.join`` → room. Public rooms, or private ones with an invitation;
        members get ``room.member {room_id, username, change: joined}``.

        Raises:
            ChatError: ``not_found`` (no such room, a direct room, or private
                without a pending invitation), ``conflict`` (``details.limit``) if
                the user is in ``max_rooms`` rooms.
        """
        service = self.service
        room = await service.store.room(room_id)
        if room is None:
            raise not_found("no such room")
        if await service.store.role_of(room_id, self.actor.user_id) is not None:
            return room.to_wire()
        if room.kind == "direct":
            raise not_found("no such room")
        if room.visibility != "public" and not await service.store.has_invite(
                room_id, self.actor.user_id, service.invites_since()):
            raise not_found("no such room")
        try:
            added = await service.store.add_member(room_id, self.actor.user_id, "member",
                                                   ms(service.clock), service.max_rooms)
        except LimitReached as error:
            raise await service.over_limit(error, self.actor) from None
        if added:
            service.fanout.member_added(room_id, self.actor.user_id)
            service.tell_room(room_id, "room.member",
                              {"room_id": room_id, "username": self.actor.username,
                               "change": "joined"})
        room = await service.store.room(room_id)
        assert room is not None
        return room.to_wire()

    async def perspective_leave(self, room_id: int) -> dict[str, Any]:
        """``room.leave`` → ``{}``. Everyone in the room, the leaver included, gets
        ``room.member {change: left}``; an heir to ownership gets ``change: role``.

        Raises:
            ChatError: ``not_found`` (not a member), ``forbidden`` (a direct room).
        """
        service = self.service
        room, _role = await service.room_as_member(room_id, self.actor.user_id)
        if room.kind == "direct":
            raise forbidden("a direct conversation cannot be left")
        event = {"room_id": room_id, "username": self.actor.username, "change": "left"}
        service.tell_room(room_id, "room.member", event)
        heir = await service.store.remove_member(room_id, self.actor.user_id)
        service.fanout.member_removed(room_id, self.actor.user_id)
        if heir is not None:
            service.tell_room(room_id, "room.member", {"room_id": room_id, "username": heir,
                                                       "change": "role", "role": "owner"})
        if not service.fanout.members(room_id) and room.members_count <= 1:
            await service.store.delete_room(room_id)
            service.fanout.room_removed(room_id)
        return {}

    async def perspective_invite(self, room_id: int, username: str) -> dict[str, Any]:
        """``room.invite`` → ``{}``; the invitee gets ``room.invited {room, by}``.
        Inviting again renews the invitation.

        Raises:
            ChatError: ``not_found`` (room or user), ``forbidden`` (not owner or
                moderator, or a direct room), ``conflict`` (already a member, or
                ``details.limit``: the inviter has ``max_invites`` pending).
        """
        service = self.service
        room, role = await service.room_as_member(room_id, self.actor.user_id)
        if room.kind == "direct" or role not in _MANAGERS:
            raise forbidden("only the owner or a moderator can invite")
        user = await service.users.user_named(username)
        if await service.store.role_of(room_id, user.user_id) is not None:
            raise ChatError(ErrorCode.CONFLICT, f"{username!r} is already a member")
        if service.fanout.has_blocked(user.user_id, self.actor.user_id):
            return {}  # refused silently: the blocked inviter is not told
        try:
            await service.store.add_invite(room_id, user.user_id, self.actor.user_id,
                                           ms(service.clock), service.max_invites,
                                           service.invites_since())
        except LimitReached as error:
            raise await service.over_limit(error, self.actor, 1) from None
        service.tell_user(user.user_id, "room.invited",
                          {"room": room.to_wire(), "by": self.actor.username})
        return {}

    async def perspective_kick(self, room_id: int, username: str,
                               reason: str | None) -> dict[str, Any]:
        """``room.kick`` → ``{}``. Members, the kicked one included, get ``room.member
        {change: kicked, by, reason?}``. Moderators cannot kick the owner or each other.

        Raises:
            ChatError: ``not_found`` (room, or the user is not a member),
                ``forbidden`` (role, direct room, or oneself).
        """
        service = self.service
        room, role = await service.room_as_member(room_id, self.actor.user_id)
        if room.kind == "direct" or role not in _MANAGERS:
            raise forbidden("only the owner or a moderator can kick")
        user = await service.users.user_named(username)
        target_role = await service.store.role_of(room_id, user.user_id)
        if target_role is None:
            raise not_found(f"{username!r} is not a member")
        if user.user_id == self.actor.user_id:
            raise forbidden("use room.leave to leave a room")
        if target_role in _MANAGERS and role != "owner":
            raise forbidden("only the owner can kick a moderator")
        event: dict[str, Any] = {"room_id": room_id, "username": user.username,
                                 "change": "kicked", "by": self.actor.username}
        if reason:
            event["reason"] = reason
        service.tell_room(room_id, "room.member", event)
        await service.store.remove_member(room_id, user.user_id)
        service.fanout.member_removed(room_id, user.user_id)
        await service.store.audit(service.store.ids.next_id(), ms(service.clock), "room.kicked",
                                  user_id=user.user_id, username=user.username,
                                  peer=getattr(self.actor.mind, "peer", None),
                                  details={"room_id": room_id, "by": self.actor.username,
                                           **({"reason": reason} if reason else {})})
        return {}

    async def perspective_members(self, room_id: int, cursor: str | None,
                                  limit: int) -> dict[str, Any]:
        """``room.members`` → ``{members: [{username, display_name, role, presence,
        avatar_file_id}], next_cursor?}``, by username, a page at a time (never over
        a frame). ``avatar_file_id`` (extension) is the member's picture or None, so
        a client draws everyone without a ``user.get`` each.

        Raises:
            ChatError: ``not_found`` if not a member, ``bad_request`` (a cursor
                this op did not hand out).
        """
        service = self.service
        after = str(decode_cursor(cursor, str)[0]) if cursor else ""
        await service.room_as_member(room_id, self.actor.user_id)
        rows = await service.store.members(room_id, after, limit + 1)
        members = [{"username": m.username, "display_name": m.display_name, "role": m.role,
                    "presence": service.users.presence_of(m.user_id),
                    "avatar_file_id": m.avatar_file_id} for m in rows[:limit]]
        page, cut = fit_page(members, "members", service.max_frame)
        result: dict[str, Any] = {"members": page}
        if cut or len(rows) > limit:
            result["next_cursor"] = encode_cursor(page[-1]["username"])
        return result

    async def perspective_update(self, room_id: int, name: str | None,
                                 topic: str | None) -> dict[str, Any]:
        """``room.update`` → room; members get ``room.updated {room}``.

        Raises:
            ChatError: ``not_found``, ``forbidden`` (role or direct room).
        """
        service = self.service
        room, role = await service.room_as_member(room_id, self.actor.user_id)
        if room.kind == "direct" or role not in _MANAGERS:
            raise forbidden("only the owner or a moderator can change the room")
        changes = {k: v for k, v in (("name", name), ("topic", topic)) if v is not None}
        wire = (await service.store.update_room(room_id, changes)).to_wire()
        service.tell_room(room_id, "room.updated", {"room": wire})
        return wire

    async def perspective_set_role(self, room_id: int, username: str,
                                   role: str) -> dict[str, Any]:
        """``room.set_role`` → ``{}``; members get ``room.member {change: role, role}``.
        Giving ``owner`` transfers ownership; the old owner becomes a moderator.

        Raises:
            ChatError: ``not_found`` (room or member), ``forbidden`` (not the owner,
                a direct room, or one's own role).
        """
        service = self.service
        room, my_role = await service.room_as_member(room_id, self.actor.user_id)
        if room.kind == "direct" or my_role != "owner":
            raise forbidden("only the owner can change roles")
        user = await service.users.user_named(username)
        if user.user_id == self.actor.user_id:
            raise forbidden("the owner's role changes only by giving ownership to someone")
        if await service.store.role_of(room_id, user.user_id) is None:
            raise not_found(f"{username!r} is not a member")
        await service.store.set_role(room_id, user.user_id, role, self.actor.user_id)
        service.tell_room(room_id, "room.member", {"room_id": room_id, "username": user.username,
                                                   "change": "role", "role": role})
        if role == "owner":
            service.tell_room(room_id, "room.member",
                              {"room_id": room_id, "username": self.actor.username,
                               "change": "role", "role": "moderator"})
        return {}

    async def perspective_delete(self, room_id: int) -> dict[str, Any]:
        """``room.delete`` → ``{}``; members get ``room.deleted {room_id}``.

        Raises:
            ChatError: ``not_found``, ``forbidden`` (not the owner, or a direct room).
        """
        service = self.service
        room, role = await service.room_as_member(room_id, self.actor.user_id)
        if room.kind == "direct" or role != "owner":
            raise forbidden("only the owner can delete the room")
        await service.store.delete_room(room_id)
        service.tell_room(room_id, "room.deleted", {"room_id": room_id})
        service.fanout.room_removed(room_id)
        service.log.info("{user} deleted room {room_id}", user=self.actor.username,
                         room_id=room_id)
        await service.store.audit(service.store.ids.next_id(), ms(service.clock), "room.deleted",
                                  user_id=self.actor.user_id, username=self.actor.username,
                                  peer=getattr(self.actor.mind, "peer", None),
                                  details={"room_id": room_id, "name": room.name})
        return {}
