"""Rooms and memberships (PROTOCOL.md section 5).

Rules kept here, next to the data:

* non-members get ``not_found`` for a room, so private rooms do not reveal
  that they exist; members who lack the role get ``forbidden``;
* direct rooms have exactly two members: no join, leave, invite, kick, role
  change or rename;
* an owner who leaves hands the room to the longest-standing moderator (or
  member); the room is deleted when its last member leaves.

Every change is committed first, then the membership map of the fan-out is
updated, then events go out.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from chatnet.errors import ChatError, ErrorCode, bad_request, forbidden, not_found
from chatnet.fanout import LocalFanout
from chatnet.services import Actor, Clock, ms
from chatnet.services.users import UserService
from chatnet.store import ChatStore, RoomRecord
from chatnet.wire.codec import event_frame

_MANAGERS = frozenset({"owner", "moderator"})


class RoomService:
    """Rooms, direct conversations and memberships.

    Args:
        store: the chat store.
        fanout: delivery and the membership map.
        users: for user lookups and presence.
        clock: time source.
    """

    log = Logger()

    def __init__(self, store: ChatStore, fanout: LocalFanout, users: UserService,
                 clock: Clock) -> None:
        self.store = store
        self.fanout = fanout
        self.users = users
        self.clock = clock

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
        """``room.create`` → room. The creator is the owner; ``members`` are added at once
        and each gets ``room.invited {room, by}``.

        Raises:
            ChatError: ``not_found`` naming a member that does not exist.
        """
        service = self.service
        member_ids: list[int] = []
        for username in dict.fromkeys(members or ()):
            user = await service.users.user_named(username)
            if user.user_id != self.actor.user_id:
                member_ids.append(user.user_id)
        room = await service.store.create_room(
            service.store.ids.next_id(), "group", name, topic, visibility, self.actor.user_id,
            member_ids, ms(service.clock))
        service.fanout.member_added(room.room_id, self.actor.user_id)
        for user_id in member_ids:
            service.fanout.member_added(room.room_id, user_id)
        wire = room.to_wire()
        invited = event_frame("room.invited", {"room": wire, "by": self.actor.username})
        service.fanout.deliver_users(member_ids, invited)
        service.log.info("{user} created room {room_id} ({name})", user=self.actor.username,
                         room_id=room.room_id, name=name)
        return wire

    async def perspective_open_direct(self, username: str) -> dict[str, Any]:
        """``dm.open`` → the direct room with that user (the same room every time).
        When it is created, the other user gets ``room.invited {room, by}``.

        Raises:
            ChatError: ``not_found`` (no such user), ``bad_request`` (oneself).
        """
        service = self.service
        other = await service.users.user_named(username)
        if other.user_id == self.actor.user_id:
            raise bad_request("username must be someone else")
        room, created = await service.store.open_direct(
            service.store.ids.next_id(), self.actor.user_id, other.user_id, ms(service.clock))
        wire = room.to_wire()
        if created:
            service.fanout.member_added(room.room_id, self.actor.user_id)
            service.fanout.member_added(room.room_id, other.user_id)
            service.tell_user(other.user_id, "room.invited",
                              {"room": wire, "by": self.actor.username})
        return wire

    async def perspective_directory(self, query: str | None) -> dict[str, Any]:
        """``room.directory`` → ``{rooms: [room]}``: public group rooms matching ``query``."""
        rooms = await self.service.store.directory(query or "")
        return {"rooms": [r.to_wire() for r in rooms]}

    async def perspective_list(self) -> dict[str, Any]:
        """``room.list`` → ``{rooms: [room + {role, last_seq, read_seq, unread}]}``."""
        rooms = []
        for room, role, read_seq in await self.service.store.rooms_of(self.actor.user_id):
            wire = room.to_wire()
            wire.update(role=role, last_seq=room.last_seq, read_seq=read_seq,
                        unread=max(0, room.last_seq - read_seq))
            rooms.append(wire)
        return {"rooms": rooms}

    async def perspective_join(self, room_id: int) -> dict[str, Any]:
        """``room.join`` → room. Public rooms, or private ones with an invitation;
        members get ``room.member {room_id, username, change: joined}``.

        Raises:
            ChatError: ``not_found`` (no such room, or private without invitation),
                ``forbidden`` (a direct room).
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
                room_id, self.actor.user_id):
            raise not_found("no such room")
        if await service.store.add_member(room_id, self.actor.user_id, "member",
                                          ms(service.clock)):
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

        Raises:
            ChatError: ``not_found`` (room or user), ``forbidden`` (not owner or
                moderator, or a direct room), ``conflict`` (already a member).
        """
        service = self.service
        room, role = await service.room_as_member(room_id, self.actor.user_id)
        if room.kind == "direct" or role not in _MANAGERS:
            raise forbidden("only the owner or a moderator can invite")
        user = await service.users.user_named(username)
        if await service.store.role_of(room_id, user.user_id) is not None:
            raise ChatError(ErrorCode.CONFLICT, f"{username!r} is already a member")
        await service.store.add_invite(room_id, user.user_id, self.actor.user_id,
                                       ms(service.clock))
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
        return {}

    async def perspective_members(self, room_id: int) -> dict[str, Any]:
        """``room.members`` → ``{members: [{username, display_name, role, presence}]}``.

        Raises:
            ChatError: ``not_found`` if not a member.
        """
        service = self.service
        await service.room_as_member(room_id, self.actor.user_id)
        return {"members": [
            {"username": m.username, "display_name": m.display_name, "role": m.role,
             "presence": service.users.presence_of(m.user_id)}
            for m in await service.store.members(room_id)]}

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
        return {}
