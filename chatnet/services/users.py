"""Users, presence and contacts (PROTOCOL.md section 4).

Presence is kept in memory: a user is ``offline`` with no session, otherwise
the state they chose (``online`` by default); ``invisible`` is shown to others
as ``offline``. A change of the *shown* state is sent as a ``presence`` event
to everyone who shares a room with the user and to their contacts (and to the
user's own sessions, so their other devices follow).

The same people, and only they, see a user's presence and ``last_seen`` in
profiles (``user.get``, ``user.search``): to anyone else every user is
``offline`` with no ``last_seen``, so a stranger cannot watch when someone is
at their desk.

Contacts are bounded per user (:data:`MAX_CONTACTS` accepted, and
:data:`MAX_OUTGOING_REQUESTS` requests waiting, which also bounds what lands in
anyone's incoming list: each requester can add one line to it, so strangers
cannot crowd real requests out); requests expire after
:data:`CONTACT_REQUEST_TTL`. ``contact.list`` pages, and every page and every
``user.search`` answer stops before it would outgrow the frame.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from chatnet.config import DEFAULT_MAX_FRAME, DEFAULT_PRESENCE_ROOM_LIMIT
from chatnet.errors import ChatError, ErrorCode, bad_request, not_found
from chatnet.fanout import LocalFanout
from chatnet.services import Actor, Clock, ms
from chatnet.store import ChatStore, UserRecord
from chatnet.store.users import CONTACT_SECTIONS, ContactLimits
from chatnet.wire.codec import event_frame, pack
from chatnet.wire.ops import USERNAME_RE

if TYPE_CHECKING:
    from chatnet.services.files import FileService


#: Accepted contacts one user may have (``conflict`` with ``details.limit``).
MAX_CONTACTS = 1000
#: Contact requests one user may have waiting for an answer.
MAX_OUTGOING_REQUESTS = 100
#: People one user may block.
MAX_BLOCKED = 1000
#: Seconds a contact request waits for an answer before it expires (30 days).
CONTACT_REQUEST_TTL = 30 * 24 * 3600
#: Bytes of a result frame kept for everything but the listed items (request id,
#: keys, ``next_cursor``): the items of one answer fit in ``max_frame`` minus this.
_RESULT_OVERHEAD = 512


class UserService:
    """Profiles, presence and contacts.

    Args:
        store: the chat store.
        fanout: delivery to sessions and the membership map.
        clock: time source.
        files: the file service, which deletes the blobs of replaced profile
            pictures (without it they stay on disk).
        max_frame: the largest frame (``--max-frame``), bytes: lists are cut to fit.
        presence_room_limit: rooms with more members than this carry no ``presence``
            events (``--presence-room-limit``): bringing a room of N online would
            otherwise cost N²/2 deliveries. Their members still see each other's
            presence in ``room.members``, ``user.get`` and ``user.search``.
    """

    log = Logger()

    def __init__(self, store: ChatStore, fanout: LocalFanout, clock: Clock,
                 files: FileService | None = None,
                 max_frame: int = DEFAULT_MAX_FRAME,
                 presence_room_limit: int = DEFAULT_PRESENCE_ROOM_LIMIT) -> None:
        self.store = store
        self.presence_room_limit = presence_room_limit
        self.fanout = fanout
        self.clock = clock
        self.files = files
        self.max_frame = max_frame
        self.contact_limits = ContactLimits(MAX_CONTACTS, MAX_OUTGOING_REQUESTS,
                                            CONTACT_REQUEST_TTL * 1000)
        # In a cluster, other nodes tell of presence changes and dead nodes.
        fanout.on_presence = self._presence_elsewhere
        fanout.on_gone = self._gone_with_their_node
        self._chosen: dict[int, str] = {}

    def perspective(self, actor: Actor) -> UserPerspective:
        """The users perspective of one session."""
        return UserPerspective(self, actor)

    # -- presence ----------------------------------------------------------------------------

    def presence_of(self, user_id: int) -> str:
        """The presence others see: ``offline`` with no session (on any node) or
        when invisible."""
        if self.fanout.sessions_of(user_id):
            state = self._chosen.get(user_id, "online")
        else:
            state = self.fanout.remote_presence(user_id) or "offline"
        return "offline" if state == "invisible" else state

    async def session_started(self, actor: Actor) -> None:
        """Called by the realm after a session is attached to the fan-out."""
        if len(self.fanout.sessions_of(actor.user_id)) == 1:
            elsewhere = self.fanout.remote_presence(actor.user_id)
            chosen = self._chosen.setdefault(actor.user_id, elsewhere or "online")
            self.fanout.presence_changed(actor.user_id, chosen)
            if elsewhere is None and self.presence_of(actor.user_id) != "offline":
                await self._announce(actor.user_id, actor.username, self.presence_of(actor.user_id))

    async def session_ended(self, actor: Actor) -> None:
        """Called by the realm after a session is detached from the fan-out."""
        if self.fanout.sessions_of(actor.user_id):
            return
        was = self._chosen.pop(actor.user_id, "online")
        self.fanout.presence_changed(actor.user_id, None)
        if self.fanout.remote_presence(actor.user_id) is not None:
            return  # still online on another node
        last_seen = ms(self.clock)
        await self.store.set_last_seen(actor.user_id, last_seen)
        if was != "invisible":
            await self._announce(actor.user_id, actor.username, "offline", last_seen)

    async def set_presence(self, actor: Actor, state: str) -> None:
        """Choose a presence state; announces it if what others see changes."""
        before = self.presence_of(actor.user_id)
        self._chosen[actor.user_id] = state
        self.fanout.presence_changed(actor.user_id, state)
        after = self.presence_of(actor.user_id)
        if after != before:
            last_seen = ms(self.clock) if after == "offline" else None
            await self._announce(actor.user_id, actor.username, after, last_seen)

    def _presence_elsewhere(self, user_id: int, state: str | None) -> None:
        """Another node says what the user chose there: this node's sessions of
        the user follow (one choice per user, whichever node it was made on)."""
        if state is not None and self.fanout.sessions_of(user_id):
            self._chosen[user_id] = state

    async def _gone_with_their_node(self, user_ids: set[int]) -> None:
        """Users whose only sessions were on a node that died: tell this node's
        sessions they are offline (each node tells its own)."""
        for user in (await self.store.users_by_ids(sorted(user_ids))).values():
            data = {"username": user.username, "state": "offline"}
            self.fanout.deliver_users_here(await self.audience(user.user_id),
                                           event_frame("presence", data))

    async def audience(self, user_id: int, every_room: bool = False) -> set[int]:
        """Who hears about a user: co-members, contacts, and the user.

        Args:
            user_id: the user.
            every_room: co-members of every room (profile changes, which are rare);
                otherwise (presence) only of rooms of at most
                :attr:`presence_room_limit` members.

        Returns:
            the user ids.
        """
        limit = None if every_room else self.presence_room_limit
        people = self.fanout.co_members(user_id, limit)
        people |= await self.store.contact_ids(user_id)
        people.add(user_id)
        return people

    async def _announce(self, user_id: int, username: str, state: str,
                        last_seen: int | None = None) -> None:
        data: dict[str, Any] = {"username": username, "state": state}
        if last_seen is not None:
            data["last_seen"] = last_seen
        self.fanout.deliver_users(await self.audience(user_id), event_frame("presence", data))

    def profile(self, user: UserRecord) -> dict[str, Any]:
        """A user's profile map with their current presence (PROTOCOL.md 4), for
        someone in the user's audience (see :meth:`profiles_for` for anyone else)."""
        return user.profile(self.presence_of(user.user_id))

    async def presence_visible(self, viewer_id: int, user_ids: Iterable[int]) -> set[int]:
        """Which of ``user_ids`` the viewer may see the presence of: themselves,
        people they share a room with, and their contacts."""
        ids = set(user_ids)
        shown = ids & {viewer_id}
        rooms = self.fanout.rooms_of(viewer_id)
        for user_id in ids - shown:
            if not rooms.isdisjoint(self.fanout.rooms_of(user_id)):
                shown.add(user_id)
        if ids - shown:
            shown |= (ids - shown) & await self.store.contact_ids(viewer_id)
        return shown

    async def profiles_for(self, viewer_id: int,
                           users: list[UserRecord]) -> list[dict[str, Any]]:
        """Profiles as ``viewer_id`` may see them: presence and ``last_seen`` only for
        the people in :meth:`presence_visible`, ``offline`` without ``last_seen``
        for everyone else."""
        shown = await self.presence_visible(viewer_id, (u.user_id for u in users))
        return [self.profile(u) if u.user_id in shown
                else dataclasses.replace(u, last_seen=None).profile("offline") for u in users]

    def fitting(self, items: list[Any]) -> int:
        """How many of ``items``, from the first, fit in one result frame."""
        budget = self.max_frame - _RESULT_OVERHEAD
        used = 0
        for count, item in enumerate(items):
            used += len(pack({"": item}))
            if used > budget:
                return max(count, 1)
        return len(items)

    async def user_named(self, username: str) -> UserRecord:
        """Look up a user by name.

        Raises:
            ChatError: ``not_found`` naming the user.
        """
        user = await self.store.user_by_name(username)
        if user is None:
            raise not_found(f"no user named {username!r}")
        return user


class UserPerspective:
    """``user.*``, ``presence.set`` and ``contact.*`` for one session."""

    __slots__ = ("actor", "service")

    def __init__(self, service: UserService, actor: Actor) -> None:
        self.service = service
        self.actor = actor

    async def perspective_get(self, username: str) -> dict[str, Any]:
        """``user.get`` → profile (presence and ``last_seen`` only for the user, their
        contacts and co-members). Raises ``not_found``."""
        user = await self.service.user_named(username)
        [profile] = await self.service.profiles_for(self.actor.user_id, [user])
        return profile

    async def perspective_update(self, display_name: str | None, status_text: str | None,
                                 avatar_file_id: str | None) -> dict[str, Any]:
        """``user.update`` → profile; tells the audience with ``user.updated {profile}``.

        ``avatar_file_id`` must be a profile picture this user uploaded with
        ``file.upload.begin {purpose: "avatar"}`` (``""`` clears it); the user's
        previous picture is deleted.

        Raises:
            ChatError: ``not_found`` for any other ``avatar_file_id`` (someone else's
                file, an attachment, a file that does not exist).
        """
        changes: dict[str, Any] = {}
        if display_name is not None:
            changes["display_name"] = display_name
        if status_text is not None:
            changes["status_text"] = status_text
        service = self.service
        if avatar_file_id is not None:
            retired = await service.store.set_avatar(self.actor.user_id, avatar_file_id or None)
            if service.files is not None:
                await service.files.release_blobs(retired)
        user = await service.store.update_profile(self.actor.user_id, changes)
        profile = service.profile(user)
        service.fanout.deliver_users(await service.audience(user.user_id, every_room=True),
                                     event_frame("user.updated", {"profile": profile}))
        return profile

    async def perspective_search(self, query: str, limit: int) -> dict[str, Any]:
        """``user.search`` → ``{users: [profile]}`` (name or display name contains query;
        presence as in ``user.get``)."""
        users = await self.service.store.search_users(query, limit)
        profiles = await self.service.profiles_for(self.actor.user_id, users)
        return {"users": profiles[:self.service.fitting(profiles)]}

    async def perspective_set_presence(self, state: str) -> dict[str, Any]:
        """``presence.set`` → ``{}``."""
        await self.service.set_presence(self.actor, state)
        return {}

    async def perspective_contact_request(self, username: str,
                                          message: str | None) -> dict[str, Any]:
        """``contact.request`` → ``{}``. The other side gets ``contact.request {from,
        message?}`` (once: asking again while the request waits sends nothing); if
        they had asked already, both get ``contact.added``.

        Raises:
            ChatError: ``not_found`` (no such user), ``bad_request`` (oneself),
                ``conflict`` with ``details.limit`` (too many requests waiting, or
                too many contacts on either side).
        """
        service = self.service
        other = await service.user_named(username)
        if other.user_id == self.actor.user_id:
            raise bad_request("username must be someone else")
        if service.fanout.has_blocked(self.actor.user_id, other.user_id):
            raise ChatError(ErrorCode.CONFLICT, f"you blocked {other.username!r}; unblock "
                            "them first")
        if service.fanout.has_blocked(other.user_id, self.actor.user_id):
            return {}  # refused silently: the blocked user is not told
        outcome = await service.store.contact_request(self.actor.user_id, other.user_id,
                                                      message or None, ms(service.clock),
                                                      service.contact_limits)
        if outcome == "pending":
            data: dict[str, Any] = {"from": self.actor.username}
            if message:
                data["message"] = message
            service.fanout.deliver_users([other.user_id], event_frame("contact.request", data))
        elif outcome == "accepted":
            await self._added(other)
        return {}

    async def perspective_contact_respond(self, username: str, accept: bool) -> dict[str, Any]:
        """``contact.respond`` → ``{}``; on accept both sides get ``contact.added {profile}``.

        Raises:
            ChatError: ``not_found`` if that user has no pending request to us (or it
                expired); ``conflict`` with ``details.limit`` if accepting would take
                either side over :data:`MAX_CONTACTS`.
        """
        service = self.service
        other = await service.user_named(username)
        found = await service.store.contact_respond(self.actor.user_id, other.user_id, accept,
                                                    ms(service.clock), service.contact_limits)
        if not found:
            raise not_found(f"no contact request from {username!r}")
        if accept:
            await self._added(other)
        return {}

    async def _added(self, other: UserRecord) -> None:
        service = self.service
        me = await service.store.user_by_id(self.actor.user_id)
        assert me is not None
        service.fanout.deliver_users(
            [self.actor.user_id], event_frame("contact.added", {"profile": service.profile(other)}))
        service.fanout.deliver_users(
            [other.user_id], event_frame("contact.added", {"profile": service.profile(me)}))

    async def perspective_contact_remove(self, username: str) -> dict[str, Any]:
        """``contact.remove`` → ``{}``; both sides get ``contact.removed {username}``.

        Raises:
            ChatError: ``not_found`` if there was no contact or request.
        """
        service = self.service
        other = await service.user_named(username)
        if not await service.store.contact_remove(self.actor.user_id, other.user_id):
            raise not_found(f"{username!r} is not a contact")
        service.fanout.deliver_users([self.actor.user_id],
                                     event_frame("contact.removed", {"username": other.username}))
        service.fanout.deliver_users([other.user_id],
                                     event_frame("contact.removed",
                                                 {"username": self.actor.username}))
        return {}

    async def perspective_contact_block(self, username: str, on: bool) -> dict[str, Any]:
        """``contact.block {username, on}`` (extension, docs/protocol.md 4) → ``{}``.

        Blocking ends a contact (both get ``contact.removed``) and withdraws
        requests either way; from then on the blocked user's contact requests,
        invitations and direct-room notices do not reach the blocker, and their
        messages are left out of the blocker's events, history and search. They
        are not told. The blocker's sessions get ``contact.blocked {username, on}``.

        Raises:
            ChatError: ``not_found`` (no such user), ``bad_request`` (oneself),
                ``conflict`` with ``details.limit`` (:data:`MAX_BLOCKED`).
        """
        service = self.service
        other = await service.user_named(username)
        if other.user_id == self.actor.user_id:
            raise bad_request("username must be someone else")
        changed, were_contacts = await service.store.block(
            self.actor.user_id, other.user_id, on, ms(service.clock), MAX_BLOCKED)
        if changed:
            service.fanout.blocked(self.actor.user_id, other.user_id, on)
            service.fanout.deliver_users([self.actor.user_id], event_frame(
                "contact.blocked", {"username": other.username, "on": on}))
        if were_contacts:
            service.fanout.deliver_users([self.actor.user_id], event_frame(
                "contact.removed", {"username": other.username}))
            service.fanout.deliver_users([other.user_id], event_frame(
                "contact.removed", {"username": self.actor.username}))
        return {}

    async def perspective_contact_blocks(self, cursor: str | None,
                                         limit: int) -> dict[str, Any]:
        """``contact.blocks`` (extension) → ``{blocked: [username], next_cursor?}``,
        by username, a page at a time.

        Raises:
            ChatError: ``bad_request`` for a cursor this op did not hand out.
        """
        after = ""
        if cursor is not None:
            if not cursor.startswith("b:") or len(cursor) > 66:
                raise bad_request("cursor is not one this server gave")
            after = cursor[2:]
        names = await self.service.store.blocked_page(self.actor.user_id, after, limit + 1)
        result: dict[str, Any] = {"blocked": names[:limit]}
        if len(names) > limit:
            result["next_cursor"] = f"b:{names[limit - 1]}"
        return result

    async def perspective_contact_list(self, cursor: str | None,
                                       limit: int) -> dict[str, Any]:
        """``contact.list`` → ``{contacts: [profile], incoming: [username],
        outgoing: [username], next_cursor?}``, one page.

        The list runs through contacts, then incoming, then outgoing requests,
        each by username; a page holds up to ``limit`` entries and never more than
        fits in a frame. ``next_cursor`` is present only when more follow.

        Raises:
            ChatError: ``bad_request`` for a cursor that is not a ``next_cursor``.
        """
        service = self.service
        after = _parse_cursor(cursor) if cursor is not None else None
        now = ms(service.clock)
        entries = await service.store.contact_entries(
            self.actor.user_id, after, limit + 1,
            now - service.contact_limits.request_ttl_ms)
        items = [service.profile(e.user) if e.user is not None else e.username
                 for e in entries[:limit]]
        count = service.fitting(items)
        page: dict[str, Any] = {section: [] for section in CONTACT_SECTIONS}
        for entry, item in zip(entries[:count], items, strict=False):
            page[entry.section].append(item)
        if count < len(entries):
            last = entries[count - 1]
            page["next_cursor"] = f"{last.section}:{last.username}"
        return page


def _parse_cursor(cursor: str) -> tuple[str, str]:
    """``"section:username"`` → ``(section, username)``.

    Raises:
        ChatError: ``bad_request`` naming ``cursor``.
    """
    section, _, username = cursor.partition(":")
    if section not in CONTACT_SECTIONS or not USERNAME_RE.fullmatch(username):
        raise bad_request("cursor must be a next_cursor from an earlier contact.list page")
    return section, username
