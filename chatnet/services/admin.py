"""Administration (PROTOCOL.md 9), first part: accounts, sessions, bans, roles and
the audit log, for the roles ``admin`` (everything) and ``auditor`` (the read-only
ops: ``admin.users``, ``admin.sessions``, ``admin.audit``). Everyone else gets
``forbidden`` for every ``admin.*`` op.

Every change is written to the audit log with who made it.
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatnet.errors import ChatError, ErrorCode, bad_request, forbidden
from chatnet.fanout import LocalFanout
from chatnet.services import Actor, Clock, ms
from chatnet.services.accounts import SERVER_ROLES, AccountService, check_new_password
from chatnet.services.users import UserService
from chatnet.store import ChatStore
from chatnet.wire.codec import event_frame

#: Roles that may read (``admin.users``, ``admin.sessions``, ``admin.audit``,
#: ``admin.monitor``).
READERS = frozenset({"admin", "auditor"})
#: Broadcasts a login brings, at most (the newest since the user's last session).
BROADCASTS_AT_LOGIN = 20
#: Messages an export reads per transaction (and writes per step).
EXPORT_PAGE = 1000

if TYPE_CHECKING:
    from chatnet.services.files import FileService


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise bad_request("cursor is not one this server gave") from None


class AdminService:
    """What the ``admin.*`` perspectives share.

    Args:
        store: the chat store.
        fanout: this node's sessions (``admin.sessions``, ending sessions).
        users: user lookups.
        accounts: account creation and passwords (hashing, token revocation).
        files: where exports are kept.
        clock: time source.
    """

    def __init__(self, store: ChatStore, fanout: LocalFanout, users: UserService,
                 accounts: AccountService, files: FileService, clock: Clock) -> None:
        self.store = store
        self.files = files
        self.fanout = fanout
        self.users = users
        self.accounts = accounts
        self.clock = clock

    def perspective(self, actor: Actor) -> AdminPerspective:
        """The ``admin.*`` ops for one session."""
        return AdminPerspective(self, actor)

    async def audit(self, actor: Actor, action: str, user_id: int | None = None,
                    username: str | None = None,
                    details: dict[str, Any] | None = None) -> None:
        """Write an audit entry naming the admin who acted (``details.by``)."""
        await self.store.audit(self.store.ids.next_id(), ms(self.clock), action,
                               user_id=user_id, username=username,
                               peer=getattr(actor.mind, "peer", None),
                               details={"by": actor.username, **(details or {})})


class AdminPerspective:
    """``perspective_*`` methods for the ``admin.*`` ops (PROTOCOL.md 9)."""

    def __init__(self, service: AdminService, actor: Actor) -> None:
        self.service = service
        self.actor = actor

    def _require(self, roles: frozenset[str]) -> None:
        if not roles.intersection(self.actor.roles):
            raise forbidden("this needs the admin role" if roles == {"admin"} else
                            "this needs the admin or auditor role")

    async def perspective_users(self, query: str | None, cursor: str | None,
                                limit: int) -> dict[str, Any]:
        """``admin.users`` → ``{users: [profile + {roles, banned, sessions}],
        next_cursor?}`` by username; ``sessions`` counts this node's.

        Raises:
            ChatError: ``forbidden`` (not admin or auditor), ``bad_request`` (cursor).
        """
        self._require(READERS)
        service = self.service
        after = str(_uncursor(cursor)) if cursor else ""
        found = await service.store.users_page(query or "", after, limit + 1)
        users = []
        for user in found[:limit]:
            users.append({**service.users.profile(user), "roles": list(user.roles),
                          "banned": user.banned,
                          "sessions": len(service.fanout.sessions_of(user.user_id))})
        result: dict[str, Any] = {"users": users}
        if len(found) > limit:
            result["next_cursor"] = _cursor(found[limit - 1].username)
        return result

    async def perspective_sessions(self, cursor: str | None, limit: int) -> dict[str, Any]:
        """``admin.sessions`` → ``{sessions: [{session_id, username, peer, since,
        client, node?}], next_cursor?}``: the live sessions of every node (``node``
        in a cluster), by session id.

        Raises:
            ChatError: ``forbidden``, ``bad_request`` (cursor).
        """
        self._require(READERS)
        after = str(_uncursor(cursor)) if cursor else ""
        sessions = sorted((row for row in await self.service.fanout.session_rows()
                           if row["session_id"] > after),
                          key=lambda row: row["session_id"])
        page = sessions[:limit]
        result: dict[str, Any] = {"sessions": page}
        if len(sessions) > limit:
            result["next_cursor"] = _cursor(page[-1]["session_id"])
        return result

    async def perspective_create_user(self, username: str, password: str,
                                      roles: list[str] | None) -> dict[str, Any]:
        """``admin.create_user`` → ``{user_id}``.

        Raises:
            ChatError: ``forbidden``, ``bad_request`` (name, password, role),
                ``conflict`` (name taken).
        """
        self._require(frozenset({"admin"}))
        user = await self.service.accounts.create_user(username, password, roles or ())
        await self.service.audit(self.actor, "user.created", user.user_id, user.username,
                                 {"roles": sorted(user.roles)})
        return {"user_id": user.user_id}

    async def perspective_reset_password(self, username: str, password: str) -> dict[str, Any]:
        """``admin.reset_password`` → ``{}``: the user's tokens are revoked and their
        sessions end (``session.ended {password_changed}``).

        Raises:
            ChatError: ``forbidden``, ``not_found``, ``bad_request`` (password).
        """
        self._require(frozenset({"admin"}))
        check_new_password(password)
        service = self.service
        user = await service.users.user_named(username)
        await service.accounts.set_password(user, password, by="admin",
                                            peer=getattr(self.actor.mind, "peer", None))
        service.fanout.end_sessions(user.user_id, "password_changed")
        return {}

    async def perspective_set_role(self, username: str, roles: list[str]) -> dict[str, Any]:
        """``admin.set_role {username, roles}`` → ``{}`` (extension): replace a user's
        server roles. An admin cannot take the admin role from themselves (someone
        must stay able to give it back).

        Raises:
            ChatError: ``forbidden``, ``not_found``, ``bad_request`` (unknown role).
        """
        self._require(frozenset({"admin"}))
        unknown = set(roles) - SERVER_ROLES
        if unknown:
            raise bad_request(f"unknown role {sorted(unknown)[0]!r}")
        service = self.service
        user = await service.users.user_named(username)
        if user.user_id == self.actor.user_id and "admin" not in roles:
            raise bad_request("you cannot take the admin role from yourself")
        await service.store.set_roles(user.user_id, roles)
        await service.audit(self.actor, "role.changed", user.user_id, user.username,
                            {"roles": sorted(set(roles)), "before": sorted(user.roles)})
        return {}

    async def perspective_ban(self, username: str, reason: str | None,
                              until: int | None) -> dict[str, Any]:
        """``admin.ban`` → ``{}``: the user's sessions end with ``session.ended
        {banned}`` (every node's, through the credentials stamp), their tokens are
        revoked, and login and resume answer ``banned`` until ``until`` (ms) or
        ``admin.unban``.

        Raises:
            ChatError: ``forbidden``, ``not_found``, ``bad_request`` (oneself, or
                ``until`` in the past).
        """
        self._require(frozenset({"admin"}))
        service = self.service
        user = await service.users.user_named(username)
        if user.user_id == self.actor.user_id:
            raise bad_request("you cannot ban yourself")
        now = ms(service.clock)
        if until is not None and until <= now:
            raise bad_request("until must be in the future")
        await service.store.set_ban(user.user_id, True, reason, until, now)
        service.fanout.end_sessions(user.user_id, "banned")
        await service.audit(self.actor, "user.banned", user.user_id, user.username,
                            {**({"reason": reason} if reason else {}),
                             **({"until": until} if until is not None else {})})
        return {}

    async def perspective_unban(self, username: str) -> dict[str, Any]:
        """``admin.unban`` → ``{}``.

        Raises:
            ChatError: ``forbidden``, ``not_found``.
        """
        self._require(frozenset({"admin"}))
        service = self.service
        user = await service.users.user_named(username)
        await service.store.set_ban(user.user_id, False, None, None, ms(service.clock))
        await service.audit(self.actor, "user.unbanned", user.user_id, user.username)
        return {}

    async def perspective_rooms(self, query: str | None, cursor: str | None,
                                limit: int) -> dict[str, Any]:
        """``admin.rooms`` → ``{rooms: [room + {banned}], next_cursor?}``: every
        room (group and direct, public and private), by id, ``query`` matching the
        name.

        Raises:
            ChatError: ``forbidden`` (not admin or auditor), ``bad_request`` (cursor).
        """
        self._require(READERS)
        after = _uncursor(cursor) if cursor else 0
        if not isinstance(after, int):
            raise bad_request("cursor is not one this server gave")
        found = await self.service.store.rooms_page(query or "", after, limit + 1)
        rooms = [{**room.to_wire(), "banned": banned} for room, banned in found[:limit]]
        result: dict[str, Any] = {"rooms": rooms}
        if len(found) > limit:
            result["next_cursor"] = _cursor(rooms[-1]["room_id"])
        return result

    async def perspective_ban_room(self, room_id: int, reason: str | None) -> dict[str, Any]:
        """``admin.ban_room`` → ``{}``: sends and joins are refused with ``banned``
        (the history stays readable); members get ``room.banned {room_id, on,
        reason?}``.

        Raises:
            ChatError: ``forbidden``, ``not_found``.
        """
        return await self._ban_room(room_id, True, reason)

    async def perspective_unban_room(self, room_id: int) -> dict[str, Any]:
        """``admin.unban_room`` → ``{}``; members get ``room.banned {room_id, on}``.

        Raises:
            ChatError: ``forbidden``, ``not_found``.
        """
        return await self._ban_room(room_id, False, None)

    async def _ban_room(self, room_id: int, on: bool, reason: str | None) -> dict[str, Any]:
        self._require(frozenset({"admin"}))
        service = self.service
        if not await service.store.set_room_ban(room_id, on, reason):
            raise ChatError(ErrorCode.NOT_FOUND, "no such room")
        data: dict[str, Any] = {"room_id": room_id, "on": on}
        if reason and on:
            data["reason"] = reason
        service.fanout.deliver_room(room_id, event_frame("room.banned", data))
        await service.audit(self.actor, "room.banned" if on else "room.unbanned",
                            details={"room_id": room_id,
                                     **({"reason": reason} if reason else {})})
        return {}

    async def perspective_broadcast(self, body: str) -> dict[str, Any]:
        """``admin.broadcast {body}`` → ``{}``: every live session gets ``system
        {body, ts, by}``; it is kept, and people who were offline get it at their
        next login (the newest :data:`BROADCASTS_AT_LOGIN`).

        Raises:
            ChatError: ``forbidden``, ``bad_request`` (empty).
        """
        self._require(frozenset({"admin"}))
        if not body.strip():
            raise bad_request("body must not be empty")
        service = self.service
        now = ms(service.clock)
        await service.store.add_broadcast(service.store.ids.next_id(), now, body,
                                          self.actor.user_id)
        frame = event_frame("system", {"body": body, "ts": now, "by": self.actor.username})
        service.fanout.deliver_all(frame)
        await service.audit(self.actor, "broadcast", details={"body": body[:200]})
        return {}

    async def perspective_monitor(self, on: bool) -> dict[str, Any]:
        """``admin.monitor {on}`` → ``{}``: while on, this session gets ``monitor.msg
        {message}`` for every message sent in any room (burn-after-reading ones
        included). Starting and stopping are audited.

        Raises:
            ChatError: ``forbidden`` (not admin or auditor).
        """
        self._require(READERS)
        service = self.service
        mind = self.actor.mind
        if on and mind not in service.fanout.monitors:
            service.fanout.monitors.add(mind)
            await service.audit(self.actor, "monitor.started")
        elif not on and mind in service.fanout.monitors:
            service.fanout.monitors.discard(mind)
            await service.audit(self.actor, "monitor.stopped")
        return {}

    async def perspective_export(self, since: int, until: int, room_id: int | None,
                                 username: str | None) -> dict[str, Any]:
        """``admin.export`` → ``{file_id, name, size, messages}``: every message with
        ``since <= ts < until`` (ms; of one room or sender if given; deleted and
        expired ones marked) as JSON Lines, written page by page to a file kept
        through the file service, readable by the exporter (``file.download``).
        ``admin.export.progress {messages}`` events follow the work. Audited.

        Raises:
            ChatError: ``forbidden`` (not admin or auditor), ``bad_request``
                (``until`` not after ``since``), ``not_found`` (no such user).
        """
        self._require(READERS)
        if until <= since:
            raise bad_request("until must be after since")
        service = self.service
        if username is not None:
            await service.users.user_named(username)
        files = service.files
        name = f"chatnet-export-{since}-{until}.jsonl"
        path = files.partial / f"export-{secrets.token_hex(8)}.jsonl"
        count, after = 0, 0
        try:
            await files.in_thread(path.write_bytes, b"")
            while True:
                page = await service.store.export_page(since, until, room_id, username, after,
                                                       EXPORT_PAGE)
                if not page:
                    break
                lines = "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in page)
                await files.in_thread(_append, path, lines.encode("utf-8"))
                count += len(page)
                after = page[-1]["msg_id"]
                self.actor.mind.send_frame(event_frame("admin.export.progress",
                                                       {"messages": count}))
            stored = await files.store_generated(self.actor.user_id, path, name,
                                                 "application/x-ndjson")
        finally:
            path.unlink(missing_ok=True)
        await service.audit(self.actor, "export", details={
            "since": since, "until": until, "messages": count, "file_id": stored.file_id,
            **({"room_id": room_id} if room_id is not None else {}),
            **({"username": username} if username else {})})
        return {"file_id": stored.file_id, "name": stored.name, "size": stored.size,
                "messages": count}

    async def perspective_audit(self, since: int | None, until: int | None,
                                action: str | None, username: str | None,
                                cursor: str | None, limit: int) -> dict[str, Any]:
        """``admin.audit`` → ``{entries: [...], next_cursor?}``, newest first,
        filtered by time (ms, ``until`` exclusive), action and username.

        Raises:
            ChatError: ``forbidden``, ``bad_request`` (cursor).
        """
        self._require(READERS)
        before = None
        if cursor:
            value = _uncursor(cursor)
            if not (isinstance(value, list) and len(value) == 2
                    and all(isinstance(v, int) for v in value)):
                raise ChatError(ErrorCode.BAD_REQUEST, "cursor is not one this server gave")
            before = (int(value[0]), int(value[1]))
        entries = await self.service.store.audit_page(since, until, action, username, before,
                                                      limit + 1)
        result: dict[str, Any] = {"entries": entries[:limit]}
        if len(entries) > limit:
            last = entries[limit - 1]
            result["next_cursor"] = _cursor([last["ts"], last["entry_id"]])
        return result
