"""The op registry: every op the wire accepts, declared once (PROTOCOL.md 3-7).

Each :class:`Op` names the perspective and ``perspective_*`` method that
implements it, its argument schema (types and size bounds), whether it is
allowed before login, and whether it is a notification. The server protocol
dispatches *only* what this registry lists; an op that is not here gets
``unknown_op``. Arguments are validated here, before any service sees them, so
a service receives typed, bounded values and never a raw msgpack object.

Perspective names:

``mind``
    handled by the connection itself (handshake, login, resume, ping, logout).
``accounts``
    registration and password change (the anonymous avatar has only this).
``users``, ``rooms``, ``messages``, ``files``
    the services of PROTOCOL.md sections 4, 5, 6 and 7.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chatnet.errors import bad_request
from chatnet.reactions import canonical_emoji

#: Usernames: 1-32 chars of ``[a-z0-9._-]`` after case folding (PROTOCOL.md 3.3).
USERNAME_RE = re.compile(r"[a-z0-9._-]{1,32}")
#: Largest id the wire accepts: ids are signed 64-bit integers, positive.
MAX_ID = 2**63 - 1
#: Maximum message body (and feed post), in characters.
MAX_BODY = 16_000
#: Maximum feed comment, in characters.
MAX_COMMENT = 2_000
#: Largest page of ``msg.history`` (PROTOCOL.md 6).
MAX_HISTORY_LIMIT = 200
#: Largest ``call.audio`` packet, bytes (PROTOCOL.md 8): an Opus packet is at most
#: 1,275 bytes per 20 ms frame; a little more leaves room for other codecs' framing.
MAX_AUDIO_PACKET = 4000
#: Presence states a client may set (PROTOCOL.md 4).
PRESENCE_STATES = frozenset({"online", "away", "busy", "invisible"})
#: Member roles (PROTOCOL.md 5).
ROOM_ROLES = frozenset({"owner", "moderator", "member"})
#: Largest page of ``contact.list`` (docs/protocol.md 4); pages also stop before
#: they would outgrow the frame.
MAX_CONTACT_PAGE = 200
#: What an upload is for (``file.upload.begin {purpose}``, docs/protocol.md 7).
FILE_PURPOSES = frozenset({"attachment", "avatar"})

#: Characters refused in one-line text (names, titles, status): every control
#: character, the Unicode line separators, and the bidirectional overrides,
#: embeddings, isolates and marks that can make one name look like another or
#: reorder what follows it ("Trojan Source"). Joiners (U+200C/U+200D) stay:
#: scripts and emoji sequences need them.
_REFUSED_IN_LINE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]")
#: The same for multi-line text (topics): newlines and tabs are allowed.
_REFUSED_IN_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u061c\u202a-\u202e"
    "\u2066-\u2069]")
#: Message bodies: control characters other than tab, newline and carriage
#: return are refused; bidirectional marks are legitimate in mixed-script text.
_REFUSED_IN_BODY = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
#: How a ``str`` field's characters are checked (``Field.text``).
TEXT_RULES: dict[str, re.Pattern[str] | None] = {
    "line": _REFUSED_IN_LINE, "lines": _REFUSED_IN_LINES, "body": _REFUSED_IN_BODY,
    "any": None,
}
#: Items per page of the room lists (``room.list``, ``room.members``,
#: ``room.invites``) when ``limit`` is not given, and the largest ``limit``.
ROOM_PAGE = 100
MAX_ROOM_PAGE = 500
#: ``room.directory``'s default page (its size before it paged).
DIRECTORY_PAGE = 200
#: Longest ``cursor`` of a paged op, in characters (``chatnet.services.paging``).
MAX_CURSOR = 512

_MISSING = object()


@dataclass(frozen=True)
class Field:
    """One argument of an op, with its type and bounds.

    Attributes:
        name: the key in ``args``.
        kind: ``"str"``, ``"int"``, ``"bool"``, ``"bin"``, ``"list"`` or ``"map"``.
        required: a missing required field is a ``bad_request`` naming it.
        min_len: lower bound on characters (str), bytes (bin) or items (list).
        max_len: upper bound, same units.
        minimum: lower bound (int).
        maximum: upper bound (int).
        choices: the allowed values (str).
        pattern: a regular expression the whole (case-folded) value must match.
        item: for ``list``, the schema of each item (its ``name`` is unused).
        fold: case-fold and strip a str before checking (usernames).
        text: which characters a str may hold (:data:`TEXT_RULES`): ``"line"``
            (one line of text, stripped of surrounding white space; the default
            for :func:`Str`), ``"lines"`` (newlines allowed, stripped),
            ``"body"`` (message text, kept as sent) or ``"any"`` (passwords, tokens).
        default: value used when an optional field is absent (``None`` if unset).
        convert: for ``str``, a last check that also gives the canonical value;
            it raises ``ValueError`` whose text ends the sentence "<field> ..."
            (emoji reactions).
    """

    name: str
    kind: str
    required: bool = True
    min_len: int = 0
    max_len: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    choices: frozenset[str] | None = None
    pattern: re.Pattern[str] | None = None
    item: Field | None = None
    fold: bool = False
    text: str = "any"
    default: Any = None
    convert: Callable[[str], str] | None = None

    def check(self, value: Any, label: str | None = None) -> Any:
        """Validate one value and return it in canonical form.

        Args:
            value: the raw value decoded from msgpack.
            label: the name to use in error messages (defaults to ``name``).

        Returns:
            the value, case-folded for ``fold`` fields.

        Raises:
            ChatError: ``bad_request`` whose message names the field.
        """
        label = label or self.name
        kind = self.kind
        if kind == "str":
            if not isinstance(value, str):
                raise bad_request(f"{label} must be a string")
            if self.fold:
                value = value.strip().casefold()
            elif self.text in ("line", "lines"):
                value = value.strip()
            refused = TEXT_RULES[self.text]
            if refused is not None:
                found = refused.search(value)
                if found is not None:
                    raise bad_request(f"{label} must not contain the character "
                                      f"U+{ord(found.group()):04X}")
            if len(value) < self.min_len:
                raise bad_request(
                    f"{label} must not be empty"
                    if self.min_len == 1
                    else f"{label} must be at least {self.min_len} characters"
                )
            if self.max_len is not None and len(value) > self.max_len:
                raise bad_request(f"{label} must be at most {self.max_len} characters")
            if self.choices is not None and value not in self.choices:
                raise bad_request(f"{label} must be one of {', '.join(sorted(self.choices))}")
            if self.pattern is not None and not self.pattern.fullmatch(value):
                raise bad_request(f"{label} has characters that are not allowed")
            if self.convert is not None:
                try:
                    value = self.convert(value)
                except ValueError as exc:
                    raise bad_request(f"{label} {exc}") from None
            return value
        if kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise bad_request(f"{label} must be an integer")
            if self.minimum is not None and value < self.minimum:
                raise bad_request(f"{label} must be at least {self.minimum}")
            if self.maximum is not None and value > self.maximum:
                raise bad_request(f"{label} must be at most {self.maximum}")
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise bad_request(f"{label} must be true or false")
            return value
        if kind == "bin":
            if not isinstance(value, bytes):
                raise bad_request(f"{label} must be binary")
            if self.max_len is not None and len(value) > self.max_len:
                raise bad_request(f"{label} must be at most {self.max_len} bytes")
            return value
        if kind == "list":
            if not isinstance(value, list | tuple):
                raise bad_request(f"{label} must be a list")
            if len(value) < self.min_len:
                raise bad_request(f"{label} must have at least {self.min_len} items")
            if self.max_len is not None and len(value) > self.max_len:
                raise bad_request(f"{label} must have at most {self.max_len} items")
            if self.item is None:
                return list(value)
            return [self.item.check(v, f"{label}[{i}]") for i, v in enumerate(value)]
        if kind == "map":
            if not isinstance(value, dict):
                raise bad_request(f"{label} must be a map")
            return value
        raise AssertionError(f"unknown field kind {kind!r}")  # pragma: no cover


def Str(name: str, max_len: int, *, min_len: int = 1, required: bool = True,
        text: str = "line", **kw: Any) -> Field:
    """A string field of 1..``max_len`` characters (``min_len`` to allow empty).

    By default it is one line of text (``text="line"``, see :class:`Field`)."""
    return Field(name, "str", required=required, min_len=min_len, max_len=max_len, text=text,
                 **kw)


def Int(name: str, *, minimum: int = 1, maximum: int = MAX_ID, required: bool = True,
        default: Any = None) -> Field:
    """An integer field; ids are 1..2**63-1 by default."""
    return Field(name, "int", required=required, minimum=minimum, maximum=maximum,
                 default=default)


def Bool(name: str, *, required: bool = True, default: Any = None) -> Field:
    """A boolean field (msgpack true/false; integers are refused)."""
    return Field(name, "bool", required=required, default=default)


def Username(name: str = "username", *, required: bool = True) -> Field:
    """A username, case-folded, 1-32 chars of ``[a-z0-9._-]`` (PROTOCOL.md 3.3)."""
    return Field(name, "str", required=required, min_len=1, max_len=32, pattern=USERNAME_RE,
                 fold=True)


@dataclass(frozen=True)
class Op:
    """One wire op.

    Attributes:
        name: the op name on the wire, e.g. ``"room.join"``.
        perspective: which perspective of the avatar handles it (module doc).
        method: the perspective method, without the ``perspective_`` prefix.
        args: the argument schema.
        before_login: allowed before ``auth.login``/``auth.resume``.
        after_login: allowed after login.
        notification: sent without ``id`` and never answered (``msg.typing``);
            only these ops may be sent without ``id`` (PROTOCOL.md 1).
        cost: tokens taken from the session's rate-limit bucket.
        budget: the per-user budget the op also draws on
            (:data:`chatnet.wire.limits.BUDGETS`), or None.
        budget_cost: units taken from that budget: a number, or a function of
            the validated arguments (e.g. only a download's first chunk counts).
    """

    name: str
    perspective: str
    method: str
    args: tuple[Field, ...] = ()
    before_login: bool = False
    after_login: bool = True
    notification: bool = False
    cost: float = 1.0
    budget: str | None = None
    budget_cost: float | Callable[[dict[str, Any]], float] = 1.0
    _by_name: Mapping[str, Field] = field(default_factory=dict, compare=False, repr=False)

    def budget_units(self, args: dict[str, Any]) -> float:
        """The units of :attr:`budget` a request with these (validated) arguments takes."""
        cost = self.budget_cost
        return cost(args) if callable(cost) else cost

    def validate(self, args: Any) -> dict[str, Any]:
        """Check ``args`` against the schema.

        Args:
            args: the raw ``args`` value of the request (a map, or absent).

        Returns:
            a new dict with exactly the declared fields (optional absent ones
            set to their default), ready to pass as keyword arguments.

        Raises:
            ChatError: ``bad_request`` naming the first offending field.
        """
        if args is None:
            args = {}
        elif not isinstance(args, dict):
            raise bad_request("args must be a map")
        clean: dict[str, Any] = {}
        for f in self.args:
            value = args.get(f.name, _MISSING)
            if value is _MISSING or value is None:
                if f.required:
                    raise bad_request(f"{f.name} is required")
                clean[f.name] = f.default
                continue
            clean[f.name] = f.check(value)
        return clean


def _ops(*ops: Op) -> dict[str, Op]:
    registry: dict[str, Op] = {}
    for op in ops:
        assert op.name not in registry, op.name
        registry[op.name] = op
    return registry


_PASSWORD = 1024
_ROOM_NAME = 80
_TOPIC = 500
_CLIENT_MSG_ID = 64
#: Longest ``status_text`` and ``display_name`` (characters; docs/protocol.md 4),
#: public because clients check them before asking.
MAX_STATUS_TEXT = 140
MAX_DISPLAY_NAME = 64
_FILE_ID = 64


def _download_start(args: dict[str, Any]) -> float:
    """A download counts against the ``downloads`` budget once, at its first chunk."""
    return 1.0 if args["offset"] == 0 else 0.0


def _room_creation(args: dict[str, Any]) -> float:
    """A room costs one unit of the ``rooms`` budget, and one more per 50 people it
    invites (inviting a whole team at creation stays cheaper than one by one)."""
    return 1.0 + len(args.get("members") or ()) // 50


def _page(default: int = ROOM_PAGE) -> tuple[Field, Field]:
    """``cursor?, limit?`` of a paged list op (docs/protocol.md, Paging)."""
    return (Str("cursor", MAX_CURSOR, required=False),
            Int("limit", maximum=MAX_ROOM_PAGE, required=False, default=default))


#: Every op of the wire, by name (PROTOCOL.md sections 3-6).
OPS: dict[str, Op] = _ops(
    # -- 3. Session ------------------------------------------------------------------------
    Op("session.hello", "mind", "hello",
       (Int("protocol", minimum=0, maximum=2**31), Str("client", 128, min_len=0)),
       before_login=True),
    Op("session.ping", "mind", "ping", before_login=True),
    Op("auth.login", "mind", "login",
       (Str("username", 64), Str("password", _PASSWORD, text="any")), before_login=True,
       after_login=False, cost=5),
    Op("auth.resume", "mind", "resume", (Str("token", 256),), before_login=True,
       after_login=False, cost=2),
    Op("auth.logout", "mind", "logout"),
    Op("auth.register", "accounts", "register",
       (Username(), Str("password", _PASSWORD, text="any"),
        Str("display_name", MAX_DISPLAY_NAME, required=False)),
       before_login=True, after_login=False, cost=5),
    Op("auth.change_password", "accounts", "change_password",
       (Str("old_password", _PASSWORD, text="any"), Str("new_password", _PASSWORD, text="any")),
       cost=5, budget="passwords"),
    # -- 4. Users, presence, contacts -----------------------------------------------------
    Op("user.get", "users", "get", (Username(),)),
    Op("user.update", "users", "update",
       (Str("display_name", MAX_DISPLAY_NAME, required=False),
        Str("status_text", MAX_STATUS_TEXT, min_len=0, required=False),
        Str("avatar_file_id", _FILE_ID, min_len=0, required=False))),
    Op("user.search", "users", "search",
       (Str("query", 64, min_len=0), Int("limit", maximum=100, required=False, default=20)),
       budget="expensive"),
    Op("presence.set", "users", "set_presence",
       (Field("state", "str", choices=PRESENCE_STATES),)),
    Op("contact.request", "users", "contact_request",
       (Username(), Str("message", 500, min_len=0, required=False, text="lines"))),
    Op("contact.respond", "users", "contact_respond", (Username(), Bool("accept"))),
    Op("contact.remove", "users", "contact_remove", (Username(),)),
    # Extensions (docs/protocol.md 4, "Blocking").
    Op("contact.block", "users", "contact_block", (Username(), Bool("on")), budget="changes"),
    Op("contact.blocks", "users", "contact_blocks",
       (Str("cursor", 100, required=False),
        Int("limit", minimum=1, maximum=MAX_CONTACT_PAGE, required=False, default=100)),
       budget="expensive"),
    # Extension (docs/protocol.md 4): pages with cursor/limit, answers next_cursor.
    Op("contact.list", "users", "contact_list",
       (Str("cursor", 100, required=False),
        Int("limit", maximum=MAX_CONTACT_PAGE, required=False, default=100)),
       budget="expensive"),
    # -- 5. Rooms --------------------------------------------------------------------------
    Op("room.create", "rooms", "create",
       (Str("name", _ROOM_NAME),
        Str("topic", _TOPIC, min_len=0, required=False, default="", text="lines"),
        Field("visibility", "str", choices=frozenset({"public", "private"})),
        Field("members", "list", required=False, max_len=500, item=Username())),
       budget="rooms", budget_cost=_room_creation),
    Op("dm.open", "rooms", "open_direct", (Username(),)),
    Op("room.directory", "rooms", "directory",
       (Str("query", 80, min_len=0, required=False), *_page(DIRECTORY_PAGE)),
       budget="expensive"),
    Op("room.list", "rooms", "list", _page(), budget="expensive"),
    Op("room.join", "rooms", "join", (Int("room_id"),)),
    # Extensions (docs/protocol.md 5): pending invitations, and refusing one.
    Op("room.invites", "rooms", "invites", _page(), budget="expensive"),
    Op("room.decline", "rooms", "decline", (Int("room_id"),)),
    Op("room.leave", "rooms", "leave", (Int("room_id"),)),
    Op("room.invite", "rooms", "invite", (Int("room_id"), Username()), budget="rooms"),
    Op("room.kick", "rooms", "kick",
       (Int("room_id"), Username(), Str("reason", 500, min_len=0, required=False))),
    Op("room.members", "rooms", "members", (Int("room_id"), *_page()), budget="expensive"),
    Op("room.update", "rooms", "update",
       (Int("room_id"), Str("name", _ROOM_NAME, required=False),
        Str("topic", _TOPIC, min_len=0, required=False, text="lines"))),
    Op("room.set_role", "rooms", "set_role",
       (Int("room_id"), Username(), Field("role", "str", choices=ROOM_ROLES))),
    Op("room.delete", "rooms", "delete", (Int("room_id"),)),
    # -- 6. Messages -----------------------------------------------------------------------
    Op("msg.send", "messages", "send",
       (Int("room_id"), Str("body", MAX_BODY, min_len=0, text="body"),
        Str("client_msg_id", _CLIENT_MSG_ID),
        Int("reply_to", required=False),
        Field("mentions", "list", required=False, max_len=100, item=Username()),
        Int("ttl", minimum=1, maximum=86400, required=False),
        Field("attachments", "list", required=False, max_len=20,
              item=Str("attachment", _FILE_ID)))),
    Op("msg.edit", "messages", "edit",
       (Int("room_id"), Int("msg_id"), Str("body", MAX_BODY, text="body")), budget="changes"),
    Op("msg.delete", "messages", "delete", (Int("room_id"), Int("msg_id")), budget="changes"),
    Op("msg.react", "messages", "react",
       # The emoji check is the converter's: white space is not stripped but refused.
       (Int("room_id"), Int("msg_id"), Str("emoji", 32, text="any", convert=canonical_emoji),
        Bool("on")), budget="changes"),
    Op("msg.history", "messages", "history",
       (Int("room_id"), Int("before_seq", minimum=1, required=False),
        Int("after_seq", minimum=0, required=False),
        Int("limit", minimum=1, maximum=MAX_HISTORY_LIMIT, required=False, default=50),
        Int("around_seq", minimum=1, required=False),
        Int("around_ts", minimum=0, required=False)),
       budget="expensive"),
    Op("msg.read", "messages", "read", (Int("room_id"), Int("seq", minimum=0))),
    # Extension (docs/protocol.md): what changed in a room while a client was away.
    Op("msg.changes", "messages", "changes",
       (Int("room_id"), Int("since_ts", minimum=0),
        Int("since_msg_id", minimum=0, required=False, default=0),
        Int("limit", minimum=1, maximum=MAX_HISTORY_LIMIT, required=False, default=100)),
       budget="expensive"),
    Op("msg.typing", "messages", "typing", (Int("room_id"), Bool("typing")), notification=True,
       cost=0.5),
    # -- 7. Files ----------------------------------------------------------------------------
    Op("file.upload.begin", "files", "upload_begin",
       (Str("name", 1024), Int("size", minimum=0, maximum=2**53),
        Str("sha256", 64, min_len=64), Str("mime", 127, required=False),
        # Extension (docs/protocol.md 7): "avatar" makes the upload a profile picture.
        Field("purpose", "str", required=False, choices=FILE_PURPOSES,
              default="attachment")), cost=2, budget="uploads"),
    Op("file.upload.chunk", "files", "upload_chunk",
       (Str("upload_id", 64), Int("offset", minimum=0, maximum=2**53),
        Field("data", "bin", max_len=4 * 1024 * 1024)), cost=0.1),
    Op("file.upload.finish", "files", "upload_finish", (Str("upload_id", 64),), cost=2),
    # Extension (docs/protocol.md 7): give up an unfinished upload.
    Op("file.upload.cancel", "files", "upload_cancel", (Str("upload_id", 64),)),
    Op("file.info", "files", "info", (Str("file_id", _FILE_ID),)),
    Op("file.download", "files", "download",
       (Str("file_id", _FILE_ID), Int("offset", minimum=0, maximum=2**53),
        Int("length", minimum=1, maximum=4 * 1024 * 1024)), cost=0.1,
       budget="downloads", budget_cost=_download_start),
    # -- 8. Voice calls ----------------------------------------------------------------------
    Op("call.start", "calls", "start", (Int("room_id"),), budget="calls"),
    Op("call.accept", "calls", "accept", (Int("call_id"),)),
    Op("call.reject", "calls", "reject", (Int("call_id"),)),
    Op("call.hangup", "calls", "hangup", (Int("call_id"),)),
    # Extension (docs/protocol.md 8): a second connection carries a session's audio.
    Op("call.attach", "calls", "attach", (Int("call_id"),)),
    # 50 packets a second: each costs a tenth of a token of the request rate.
    Op("call.audio", "calls", "audio",
       (Int("call_id"), Int("seq", minimum=0, maximum=2**32 - 1),
        Field("data", "bin", max_len=MAX_AUDIO_PACKET)), notification=True, cost=0.1),
    Op("msg.search", "messages", "search",
       (Str("query", 200), Int("room_id", required=False), Username("sender", required=False),
        Int("since", minimum=0, required=False), Int("until", minimum=0, required=False),
        Int("limit", minimum=1, maximum=200, required=False, default=50),
        Str("cursor", 64, required=False),
        Field("sort", "str", required=False, default="relevance",
              choices=frozenset({"relevance", "recent"}))),
       cost=3, budget="expensive", budget_cost=5),
    # -- 9. Administration (first part: accounts, sessions, bans, roles, audit) ----------
    Op("admin.users", "admin", "users",
       (Str("query", 64, min_len=0, required=False), Str("cursor", 200, required=False),
        Int("limit", minimum=1, maximum=200, required=False, default=100)),
       budget="expensive"),
    Op("admin.sessions", "admin", "sessions",
       (Str("cursor", 200, required=False),
        Int("limit", minimum=1, maximum=500, required=False, default=200)),
       budget="expensive"),
    Op("admin.create_user", "admin", "create_user",
       (Username(), Str("password", 1024, text="any"),
        Field("roles", "list", required=False, max_len=8, item=Str("role", 16))),
       budget="passwords"),
    Op("admin.reset_password", "admin", "reset_password",
       (Username(), Str("password", 1024, text="any")), budget="passwords"),
    # Extension (docs/protocol.md 9): give or take server roles.
    Op("admin.set_role", "admin", "set_role",
       (Username(), Field("roles", "list", max_len=8, item=Str("role", 16))),
       budget="changes"),
    Op("admin.ban", "admin", "ban",
       (Username(), Str("reason", 500, required=False),
        Int("until", minimum=0, required=False)), budget="changes"),
    Op("admin.unban", "admin", "unban", (Username(),), budget="changes"),
    Op("admin.rooms", "admin", "rooms",
       (Str("query", 64, min_len=0, required=False), Str("cursor", 200, required=False),
        Int("limit", minimum=1, maximum=200, required=False, default=100)),
       budget="expensive"),
    Op("admin.ban_room", "admin", "ban_room",
       (Int("room_id"), Str("reason", 500, required=False)), budget="changes"),
    Op("admin.unban_room", "admin", "unban_room", (Int("room_id"),), budget="changes"),
    Op("admin.broadcast", "admin", "broadcast", (Str("body", MAX_BODY, text="body"),),
       budget="rooms"),
    Op("admin.monitor", "admin", "monitor", (Bool("on"),)),
    Op("admin.export", "admin", "export",
       (Int("since", minimum=0), Int("until", minimum=1), Int("room_id", required=False),
        Username("username", required=False)), budget="expensive", budget_cost=100),
    Op("admin.audit", "admin", "audit",
       (Int("since", minimum=0, required=False), Int("until", minimum=0, required=False),
        Str("action", 64, required=False), Username("username", required=False),
        Str("cursor", 200, required=False),
        Int("limit", minimum=1, maximum=500, required=False, default=100)),
       budget="expensive"),
    # -- 10. Team feed ---------------------------------------------------------------------
    Op("feed.post", "feed", "post",
       (Str("body", MAX_BODY, min_len=0, text="body"),
        Field("attachments", "list", required=False, max_len=20,
              item=Str("attachment", _FILE_ID))), budget="posts"),
    Op("feed.list", "feed", "list",
       (Username("author", required=False), Int("before_ts", minimum=0, required=False),
        Int("limit", minimum=1, maximum=100, required=False, default=20),
        Str("cursor", 64, required=False)), budget="expensive"),
    Op("feed.like", "feed", "like", (Int("post_id"), Bool("on")), budget="changes"),
    Op("feed.comment", "feed", "comment",
       (Int("post_id"), Str("body", MAX_COMMENT, text="body")), budget="comments"),
    # Extension (docs/protocol.md 10): every comment of a post, newest first.
    Op("feed.comments", "feed", "comments",
       (Int("post_id"), Int("before_id", required=False),
        Int("limit", minimum=1, maximum=200, required=False, default=50)), budget="expensive"),
    Op("feed.delete", "feed", "delete",
       (Int("post_id", required=False), Int("comment_id", required=False)), budget="changes"),
)
