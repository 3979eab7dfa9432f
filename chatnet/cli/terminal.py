"""The interactive terminal client and the one-shot sender behind ``chatnet``.

Runs on Twisted's asyncio reactor (installed by :func:`chatnet.cli.chat.main`)
so that prompt_toolkit's line editor and the client library share one loop.
Printing goes through prompt_toolkit's ``patch_stdout`` so incoming messages
appear above the line being typed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shlex
import signal
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.filters import emacs_insert_mode, vi_insert_mode
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.keys import Keys
from prompt_toolkit.patch_stdout import patch_stdout
from prompt_toolkit.shortcuts import print_formatted_text
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from chatnet.cli.chat import clock_text
from chatnet.client.connection import Patient, connect
from chatnet.client.core import Event
from chatnet.client.export import export_conversations
from chatnet.client.files import Download, Upload
from chatnet.client.reactions import Reactions
from chatnet.client.session import ChatSession, SessionState
from chatnet.errors import ChatError, ErrorCode
from chatnet.reactions import canonical_emoji
from chatnet.wire.ops import MAX_BODY

#: How many missed messages per room are printed at start.
MISSED_PER_ROOM = 50
#: Seconds between repeated "typing" notifications while the user types.
TYPING_EVERY = 3.0
#: Messages whose reactions are remembered, so that a reaction to one of them
#: can be shown with the new totals (the oldest are forgotten first); also how
#: many short references (``/reply REF``) stay valid.
REMEMBERED_MESSAGES = 1000
#: The longest line the prompt holds, in characters: the server's body limit.
#: A paste past it is cut there with a notice, so that a huge paste cannot
#: exhaust memory (prompt_toolkit redraws and keeps an undo copy per key).
MAX_LINE = MAX_BODY
#: Past this many characters, typing keeps no undo copy per key (each copy is
#: the whole line: a paste without bracketed paste would cost O(n^2) memory).
UNDO_UP_TO = 1000
#: Seconds a read position waits, so that a burst of messages costs one msg.read.
READ_DELAY = 0.5
#: Seconds ``auth.logout`` may take when the program quits before it closes anyway.
LOGOUT_TIMEOUT = 3.0
#: Results /search prints.
SEARCH_SHOWN = 20

HELP = """\
Commands (REF is the short reference printed after a message's time):
  /rooms                 your rooms, with unread counts
  /join ROOM             switch to a room you are in, or join a public one (name or id)
  /create NAME [private] create a room (public unless 'private') and switch to it
  /leave [ROOM]          leave the current room (or ROOM)
  /dm USER               open the direct conversation with USER
  /who [ROOM]            members of the current room (or ROOM): username, name, presence
  /members [ROOM]        the same as /who
  /topic [TEXT]          show the current room's topic, or set it
  /history [N]           the last N messages of the current room (default 20)
  /history --date YYYY-MM-DD [N]   the messages of that day on (and a few before)
  /search [#ROOM] WORDS  find messages (every word; in one room with #ROOM or @USER)
  /reply REF TEXT        answer a message
  /edit REF TEXT         change one of your messages
  /delete REF            delete one of your messages (owners, moderators: any)
  /react [REF] EMOJI     react to a message (default: the newest of the room)
  /unreact [REF] EMOJI   take that reaction back
  /me ACTION             an action: "* you ACTION"
  /read                  mark the current room read
  /away, /busy, /online  set your presence (/status shows it)
  /status [TEXT]         show your presence, or set your status text
  /passwd                change your password
  /directory [QUERY]     public rooms
  /invite USER           invite USER to the current room
  /invites               invitations waiting for your answer
  /accept ROOM           accept an invitation (room name or id) and switch to the room
  /decline ROOM          decline an invitation (room name or id)
  /contacts              your contacts (with presence) and requests in and out
  /add USER [MESSAGE]    ask USER to be a contact
  /accept @USER          accept USER's contact request (/decline @USER to refuse it)
  /unfriend USER         remove a contact (or withdraw your request)
  /whois USER            USER's profile: name, status, presence, last seen
  /block USER, /unblock USER   stop (or start again) seeing USER's messages and requests
  /blocked               the people you blocked
  /feed [USER]           the team feed: your and your contacts' posts, newest first
  /post TEXT             post to your contacts' feed
  /like PREF, /unlike PREF   like a post (PREF: the post's reference, p1 …)
  /comment PREF TEXT     comment on a post
  /kick USER [REASON]    remove USER from the current room
  /export FROM TO NAME   your conversations between two dates (YYYY-MM-DD, both days
                         included) into NAME.jsonl (JSON Lines) and NAME.txt (readable)
  /send-file PATH        upload a file and send it to the current room
  /get FILE_ID [DEST]    download a file (to DEST, a folder or a name; default: here;
                         an existing file is never replaced: "name (1).ext")
  /login [USER]          log in again (asks for the password)
  /register              create your account (where the server allows) and log in
  /quit                  log out and leave (also Ctrl-D, or Ctrl-C twice on an empty line)
Ctrl-C clears the line being typed. Anything else is sent to the current room."""


def human_size(size: int) -> str:
    """``1.5 MB``-style size (decimal units)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover


def progress_bar(done: int, total: int, width: int = 20) -> str:
    """``[#####-----] 50%`` for a transfer."""
    fraction = done / total if total else 1.0
    filled = int(fraction * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {fraction:4.0%}"


def _printable(text: str) -> str:
    """``text`` without control characters (a display name must not move the cursor
    or recolour the terminal)."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _err(error: BaseException) -> str:
    """One line for a failed request: the error code and the server's message,
    and for ``rate_limited`` the wait it named when that is seconds or more."""
    if isinstance(error, ChatError):
        wait_ms = (error.details or {}).get("retry_after_ms")
        if (error.code is ErrorCode.RATE_LIMITED and isinstance(wait_ms, int | float)
                and wait_ms >= 2000):
            return (f"{error.code.value}: {error.message} "
                    f"(try again in {math.ceil(wait_ms / 1000)} s)")
        return f"{error.code.value}: {error.message}"
    return str(error) or error.__class__.__name__


def words_date(ts_ms: int) -> str:
    """``2026-12-06`` (local time) for a wire timestamp (ms)."""
    return time.strftime("%Y-%m-%d", time.localtime(ts_ms / 1000))


class ExportProgress:
    """How far ``/export`` is, for the bottom line (as a transfer's ``done``/``total``)."""

    def __init__(self, total: int) -> None:
        self.done = 0
        self.total = total
        self.messages = 0


class QuitRequested(Exception):
    """The person asked to leave the prompt (Ctrl-C twice, a signal)."""


def short_ref(n: int) -> str:
    """The ``n``-th short reference (base 36: ``1`` … ``z``, ``10`` …), n ≥ 1."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while n:
        n, rest = divmod(n, 36)
        text = digits[rest] + text
    return text or "0"


def split_name(name: str) -> tuple[str, str]:
    """``("report", ".tar.gz")`` for ``report.tar.gz``: the extension is everything
    from the first dot after the first character (``.bashrc`` has none)."""
    dot = name.find(".", 1)
    return (name, "") if dot < 0 else (name[:dot], name[dot:])


def unused_path(path: Path) -> Path:
    """``path`` if nothing is there, else ``name (1).ext``, ``name (2).ext`` … (the
    first that is free): a download never replaces an existing file."""
    if not path.exists() and not path.is_symlink():
        return path
    stem, ext = split_name(path.name)
    n = 1
    while True:
        candidate = path.with_name(f"{stem} ({n}){ext}")
        if not candidate.exists() and not candidate.is_symlink():
            return candidate
        n += 1


def download_name(name: str) -> str | None:
    """The file name to save an attachment under in a folder, or None when its name
    is not safe to use without the person choosing it: empty, hidden (``.bashrc``,
    ``..``) or with control characters."""
    base = Path(name.replace("\\", "/")).name
    if not base or base.startswith(".") or not base.isprintable():
        return None
    return base


class TerminalClient:
    """State and commands of the interactive client.

    Args:
        reactor: the (asyncio) reactor.
        args: parsed command-line options (host, port, ca, pin, cert, key, user).
        password: the password typed at start.
        output: ``print_formatted_text``-like callable (replaceable in tests).
    """

    def __init__(self, reactor: Any, args: argparse.Namespace, password: str,
                 output: Callable[..., None] = print_formatted_text) -> None:
        self.reactor = reactor
        self.args = args
        self.password = password
        self.output = output
        self.session: ChatSession | None = None
        self.rooms: dict[int, dict[str, Any]] = {}
        self.direct_names: dict[int, str] = {}
        self.current: int | None = None
        self.typing: dict[int, dict[str, float]] = {}
        self.last_typing_sent = 0.0
        self.running = True
        self.reconnecting = False
        self.transfers: dict[str, Upload | Download | ExportProgress] = {}
        #: msg_id -> (room_id, sender, body, reactions) of messages printed lately.
        self.shown: OrderedDict[int, tuple[int, str, str, Reactions]] = OrderedDict()
        #: room_id -> msg_id of the newest message printed there (for /react).
        self.newest: dict[int, int] = {}
        #: short reference -> msg_id, and back (the newest REMEMBERED_MESSAGES).
        self.refs: OrderedDict[str, int] = OrderedDict()
        self.ref_of: dict[int, str] = {}
        self._refs_made = 0
        #: Whether the server lets people register (from its hello), once known.
        self.registration: bool | None = None
        #: Asks for a password without echo (replaceable in tests).
        self.ask_password: Callable[[str], Awaitable[str]] = self._ask_password
        #: The prompt while it runs (Ctrl-C and signals end it).
        self.prompt: PromptSession[str] | None = None
        #: The command or login being run, cancelled by Ctrl-C as a signal.
        self.work: Deferred[Any] | None = None
        self.quit_armed = False
        self.hung_up = False
        self._line_cut = False
        #: short reference (p1 …) -> post_id of feed posts shown, and back.
        self.post_refs: dict[str, int] = {}
        self.post_ref_of: dict[int, str] = {}
        #: casefolded usernames whose contact request waits for our answer.
        self.incoming_requests: set[str] = set()
        #: room_id -> seq to mark read soon (one msg.read per burst).
        self._reads: dict[int, int] = {}
        self._read_call: Any = None
        self.commands: dict[str, Callable[[list[str]], Awaitable[None]]] = {
            "help": self.cmd_help, "rooms": self.cmd_rooms, "join": self.cmd_join,
            "create": self.cmd_create, "leave": self.cmd_leave, "dm": self.cmd_dm,
            "who": self.cmd_who, "history": self.cmd_history, "directory": self.cmd_directory,
            "invite": self.cmd_invite, "kick": self.cmd_kick, "register": self.cmd_register,
            "invites": self.cmd_invites, "accept": self.cmd_accept,
            "decline": self.cmd_decline,
            "quit": self.cmd_quit, "send-file": self.cmd_send_file, "get": self.cmd_get,
            "react": self.cmd_react, "unreact": self.cmd_unreact,
            "login": self.cmd_login, "members": self.cmd_who, "topic": self.cmd_topic,
            "reply": self.cmd_reply, "edit": self.cmd_edit, "delete": self.cmd_delete,
            "me": self.cmd_me, "read": self.cmd_read, "away": self.cmd_away,
            "busy": self.cmd_busy, "online": self.cmd_online, "status": self.cmd_status,
            "passwd": self.cmd_passwd, "search": self.cmd_search,
            "export": self.cmd_export, "contacts": self.cmd_contacts, "add": self.cmd_add,
            "unfriend": self.cmd_unfriend, "whois": self.cmd_whois, "feed": self.cmd_feed,
            "post": self.cmd_post, "like": self.cmd_like, "unlike": self.cmd_unlike,
            "comment": self.cmd_comment, "block": self.cmd_block,
            "unblock": self.cmd_unblock, "blocked": self.cmd_blocked,
        }

    # -- output ---------------------------------------------------------------------------

    def say(self, text: str, style: str = "") -> None:
        """Print one line above the prompt."""
        self.write(FormattedText([(style, text)]))

    def write(self, text: FormattedText) -> None:
        """Print styled text above the prompt (nothing once the terminal hung up)."""
        if not self.hung_up:
            self.output(text)

    def info(self, text: str) -> None:
        """Print a client notice (``***``)."""
        self.say(f"*** {text}", "ansicyan")

    def error(self, text: str) -> None:
        """Print an error notice."""
        self.say(f"!!! {text}", "ansired")

    def label(self, room_id: int) -> str:
        """``#name`` for a group room, ``@user`` for a direct one."""
        room = self.rooms.get(room_id)
        if room is None:
            return f"#{room_id}"
        if room.get("kind") == "direct":
            return "@" + self.direct_names.get(room_id, "?")
        return "#" + str(room.get("name", room_id))

    def me(self) -> str:
        """The logged-in username (the one typed at start before login)."""
        return self.session.username if self.session else self.args.user

    def show_message(self, message: dict[str, Any], missed: bool = False) -> None:
        """Print a message: ``[HH:MM] REF #room <sender> body`` (``* sender action``
        for ``/me``). Own messages are never marked missed: re-sent after a
        reconnect, they come back through the catch-up."""
        when = clock_text(int(message.get("ts", 0)))
        sender = str(message.get("sender", "?"))
        prefix = "(missed) " if missed and sender != self.me() else ""
        edited = " (edited)" if message.get("edited_ts") else ""
        body = str(message.get("body", ""))
        reactions = self.remember(message)
        ref = self.ref_of.get(int(message["msg_id"]), "")
        parts = [
            ("ansibrightblack", f"[{when}] {ref} {prefix}"),
            ("ansiyellow", self.label(message["room_id"]) + " "),
        ]
        reply_to = message.get("reply_to")
        if reply_to is not None:
            known = self.shown.get(int(reply_to))
            quoted = (f"<{known[1]}> {known[2][:30]}" + ("…" if len(known[2]) > 30 else "")
                      if known else "an earlier message")
            parts.append(("ansibrightblack", f"(re {quoted}) "))
        if body.startswith("/me ") and len(body) > 4:
            parts.append(("italic", f"* {sender} {body[4:]}{edited}"))
        else:
            parts += [("bold", f"<{sender}> "), ("", body + edited)]
        for attachment in message.get("attachments") or ():
            parts.append(("ansigreen", f"\n    [file] {attachment['name']} "
                          f"({human_size(int(attachment['size']))})  "
                          f"/get {attachment['file_id']}"))
        if reactions:
            parts.append(("", "\n    "))
            parts.extend(self.reaction_chips(reactions))
        self.write(FormattedText(parts))

    def remember(self, message: dict[str, Any]) -> Reactions:
        """Keep a printed message's reactions (listed or summarised) for later events."""
        msg_id, room_id = int(message["msg_id"]), int(message["room_id"])
        me = self.session.username if self.session else self.args.user
        reactions = Reactions.from_message(message, me)
        self.shown[msg_id] = (room_id, str(message.get("sender", "?")),
                              str(message.get("body", "")), reactions)
        self.shown.move_to_end(msg_id)
        while len(self.shown) > REMEMBERED_MESSAGES:
            self.shown.popitem(last=False)
        if msg_id not in self.ref_of:
            self._refs_made += 1
            ref = short_ref(self._refs_made)
            self.refs[ref] = msg_id
            self.ref_of[msg_id] = ref
            while len(self.refs) > REMEMBERED_MESSAGES:
                _old, gone = self.refs.popitem(last=False)
                self.ref_of.pop(gone, None)
        if msg_id >= self.newest.get(room_id, 0):
            self.newest[room_id] = msg_id
        return reactions

    @staticmethod
    def reaction_chips(reactions: Reactions) -> list[tuple[str, str]]:
        """``👍 3  ❤️ 1`` as styled text; the user's own reactions stand out."""
        parts: list[tuple[str, str]] = []
        for emoji, count, mine in reactions.chips():
            if parts:
                parts.append(("", "  "))
            parts.append(("ansigreen bold" if mine else "ansibrightblack",
                          f"[{emoji} {count}]" if mine else f"{emoji} {count}"))
        return parts

    def show_reaction(self, data: dict[str, Any]) -> None:
        """A live ``msg.reaction``: who reacted, and the message's new totals."""
        who = str(data.get("username", "?"))
        me = self.session.username if self.session else self.args.user
        verb = "reacted" if data.get("on") else "took back"
        msg_id = int(data["msg_id"])
        known = self.shown.get(msg_id)
        if known is None:
            self.info(f"{who} {verb} {data['emoji']} on a message in "
                      f"{self.label(int(data['room_id']))}")
            return
        room_id, sender, body, reactions = known
        if not reactions.apply(str(data["emoji"]), who, bool(data.get("on")), me):
            return
        snippet = body if len(body) <= 40 else body[:39] + "…"
        parts: list[tuple[str, str]] = [
            ("ansicyan", f"*** {who} {verb} {data['emoji']} on <{sender}> {snippet!r} in "
                         f"{self.label(room_id)}: ")]
        parts.extend(self.reaction_chips(reactions) or [("ansibrightblack", "no reactions")])
        self.write(FormattedText(parts))

    def toolbar(self) -> Any:
        """The bottom line: connection state, current room, who is typing."""
        state = self.session.state.value if self.session else "not logged in"
        room = self.label(self.current) if self.current is not None else "(no room)"
        typing = ""
        if self.current is not None:
            now = self.reactor.seconds()
            names = [u for u, t in self.typing.get(self.current, {}).items() if now - t < 6]
            if names:
                typing = f"  {', '.join(sorted(names))} typing…"
        transfers = "".join(f"  {label} {progress_bar(t.done, t.total)}"
                            for label, t in self.transfers.items())
        return f" {self.args.user}@{self.args.host}  {state}  {room}{typing}{transfers}"

    # -- session ----------------------------------------------------------------------------

    def make_session(self) -> ChatSession:
        """A session for the configured user (not started)."""
        session = ChatSession(self.reactor, self.args.host, self.args.port, self.args.user,
                              self.password, ca=self.args.ca, client_cert=self.args.cert,
                              client_key=self.args.key, client_name="chatnet-terminal",
                              pin=self.args.pin,
                              connect_timeout=getattr(self.args, "timeout", 15.0))
        session.add_listener(self.on_event)
        session.add_state_listener(self.on_state)
        return session

    async def login(self, register: bool = False) -> bool:
        """Start the session; print what went wrong, and what to do, if it did."""
        session = self.make_session()
        try:
            await session.start(register=register)
        except ChatError as exc:
            if session.hello_result is not None:
                self.registration = bool(session.hello_result.get("registration"))
            if exc.code is ErrorCode.UNAUTHENTICATED:
                self.error(f"login failed: {exc.message}")
                self.info(self.login_hint())
            elif exc.code is ErrorCode.UNAVAILABLE and session.hello_result is None:
                self.error(f"cannot connect to {self.args.host}:{self.args.port}: "
                           f"{exc.message}")
                self.info("/login to try again, or /quit")
            else:
                self.error(f"login failed: {_err(exc)}")
                self.info(self.login_hint())
            return False
        except CancelledError:
            await session.close()
            raise
        except Exception as exc:
            self.error(f"cannot connect to {self.args.host}:{self.args.port}: {_err(exc)}")
            self.info("/login to try again, or /quit")
            return False
        self.session = session
        self.registration = bool((session.hello_result or {}).get("registration"))
        self.info(f"logged in as {session.username} on {self.args.host}:{self.args.port}")
        await self.refresh_rooms()
        await self.show_missed()
        return True

    def login_hint(self) -> str:
        """What a person whose login failed can do next (``/register`` only where
        the server allows it)."""
        register = (f", /register to create the account {self.args.user!r}"
                    if self.registration else "")
        return f"/login to try another password (/login USER for another account){register}, " \
               "or /quit"

    async def _ask_password(self, prompt: str) -> str:
        """Read a password at the terminal without echo (Ctrl-C gives up)."""
        asking: PromptSession[str] = PromptSession()
        return await Deferred.fromFuture(asyncio.ensure_future(
            asking.prompt_async(prompt, is_password=True)))

    async def refresh_rooms(self) -> None:
        """Reload the room list, every page (and the names behind direct rooms)."""
        assert self.session is not None
        rooms = await self.session.call_all("room.list", "rooms")
        self.rooms = {r["room_id"]: r for r in rooms}
        for room in rooms:
            if room["kind"] == "direct" and room["room_id"] not in self.direct_names:
                await self.learn_direct_name(room["room_id"])
        if self.current not in self.rooms:
            self.current = rooms[0]["room_id"] if rooms else None

    async def learn_direct_name(self, room_id: int) -> None:
        """Remember who is on the other side of a direct room."""
        assert self.session is not None
        members = (await self.session.call("room.members", {"room_id": room_id}))["members"]
        others = [m["username"] for m in members if m["username"] != self.session.username]
        self.direct_names[room_id] = others[0] if others else "?"

    async def show_missed(self) -> None:
        """Print unread messages of every room (what arrived while offline)."""
        assert self.session is not None
        total = 0
        for room_id, room in self.rooms.items():
            unread = room.get("unread", 0)
            if not unread:
                continue
            after = max(room.get("read_seq", 0), room.get("last_seq", 0) - MISSED_PER_ROOM)
            page = await self.session.call("msg.history", {"room_id": room_id,
                                                           "after_seq": after,
                                                           "limit": MISSED_PER_ROOM})
            for message in page["messages"]:
                self.show_message(message, missed=True)
                total += 1
            if page["messages"]:
                await self.session.call("msg.read", {"room_id": room_id,
                                                     "seq": page["messages"][-1]["seq"]})
            room["unread"] = 0
        if total:
            self.info(f"{total} message(s) arrived while you were away")
        summary = ", ".join(self.label(r) for r in self.rooms)
        self.info(f"your rooms: {summary or 'none yet — /directory, /join or /create'}")
        self.show_rooms_gone(self.remembered_rooms())
        self.remember_rooms()
        invites = self.session.invites
        for invite in invites.values():
            room = invite["room"]
            label = self.invite_label(room)
            self.info(f"{invite.get('by', '?')} invited you to #{room.get('name')} "
                      f"(/accept {label} or /decline {label})")
        if invites:
            self.info(f"{len(invites)} invitation(s) waiting for your answer: /invites")
        waiting = (await self.session.call("contact.list", {}))["incoming"]
        self.incoming_requests = {u.casefold() for u in waiting}
        for who in waiting:
            self.info(f"{who} wants to be your contact (/accept @{who} or /decline @{who})")
        if self.current is not None:
            self.info(f"talking in {self.label(self.current)}")

    def state_file(self) -> Path:
        """Where the rooms this user was in last time are kept (per user and server),
        so that being removed while away can be told at the next login."""
        import os

        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        safe = "".join(c if c.isalnum() or c in "-_." else "_"
                       for c in f"{self.me()}@{self.args.host}_{self.args.port}")
        return base / "chatnet" / f"rooms-{safe}.json"

    def remembered_rooms(self) -> dict[int, str]:
        """room id -> label of the rooms saved at the last :meth:`remember_rooms`
        (empty if there is no readable file)."""
        import json

        try:
            saved = json.loads(self.state_file().read_text("utf-8"))
            return {int(k): str(v) for k, v in saved.items()}
        except (OSError, ValueError, AttributeError, TypeError):
            return {}

    def remember_rooms(self) -> None:
        """Save the current rooms (best effort: no state directory, no memory)."""
        import json

        path = self.state_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({str(r): self.label(r) for r in self.rooms}), "utf-8")
        except OSError:
            pass

    def show_rooms_gone(self, before: dict[int, str]) -> None:
        """Tell which of ``before`` (room id -> label) we are no longer in."""
        for room_id, label in before.items():
            if room_id not in self.rooms:
                self.info(f"you are no longer in {label}: removed, left on another device, "
                          "or deleted while you were away")

    def on_state(self, state: SessionState) -> None:
        """Tell the user when the connection drops and comes back."""
        if self.session is None:
            return
        if state is SessionState.CONNECTING and not self.reconnecting:
            self.reconnecting = True
            self.info("connection lost; reconnecting…")
        elif state is SessionState.AUTHENTICATED and self.reconnecting:
            self.reconnecting = False
            self.info("connected again")
            self._spawn(self.rooms_after_reconnect())

    async def rooms_after_reconnect(self) -> None:
        """Reload the rooms and tell which ones were lost while disconnected."""
        before = {room_id: self.label(room_id) for room_id in self.rooms}
        await self.refresh_rooms()
        self.show_rooms_gone(before)
        self.remember_rooms()

    def on_event(self, event: Event) -> None:
        """Print what the server tells us."""
        name, data = event.name, event.data
        if name == "msg":
            message = data["message"]
            if message["room_id"] not in self.rooms:
                self._spawn(self.refresh_rooms())
            self.typing.get(message["room_id"], {}).pop(message.get("sender"), None)
            if data.get("catch_up") and int(message["msg_id"]) in self.shown:
                return  # printed before the connection dropped
            self.show_message(message, missed=bool(data.get("catch_up")))
            # Every room prints here: what was printed was seen.
            self.mark_read(int(message["room_id"]), int(message["seq"]))
        elif name == "typing":
            per_room = self.typing.setdefault(data["room_id"], {})
            if data.get("typing"):
                per_room[data["username"]] = self.reactor.seconds()
            else:
                per_room.pop(data["username"], None)
        elif name == "room.invited":
            room = data["room"]
            if room.get("kind") == "direct":
                self.info(f"{data.get('by')} started a conversation with you "
                          f"(/dm {data.get('by')})")
                self._spawn(self.refresh_rooms())
            else:
                label = self.invite_label(room)
                self.info(f"{data.get('by')} invited you to #{room.get('name')} "
                          f"(/accept {label} or /decline {label})")
        elif name == "room.member":
            change = data.get("change")
            who = data.get("username")
            where = self.label(data["room_id"])
            if change == "kicked":
                reason = f": {data['reason']}" if data.get("reason") else ""
                self.info(f"{who} was removed from {where} by {data.get('by')}{reason}")
            elif change == "role":
                self.info(f"{who} is now {data.get('role')} of {where}")
            elif who != (self.session.username if self.session else None):
                self.info(f"{who} {change} {where}")
            elif change == "joined" and data["room_id"] not in self.rooms:
                self._spawn(self.refresh_rooms())  # joined on another device
            if who == (self.session.username if self.session else None) and change in (
                    "kicked", "left"):
                self._spawn(self.refresh_rooms())
        elif name == "room.deleted":
            self.info(f"{self.label(data['room_id'])} was deleted")
            self._spawn(self.refresh_rooms())
        elif name == "msg.reaction":
            self.show_reaction(data)
        elif name == "msg.updated":
            if int(data["message"]["msg_id"]) in self.shown:
                self.remember(data["message"])  # caught up after a reconnect
        elif name == "msg.edited":
            self.info(f"a message in {self.label(data['room_id'])} was edited: {data['body']}")
        elif name == "msg.deleted":
            self.shown.pop(int(data["msg_id"]), None)
            self.info(f"a message in {self.label(data['room_id'])} was deleted")
        elif name == "contact.request":
            who = str(data.get("from", "?"))
            self.incoming_requests.add(who.casefold())
            note = f": {_printable(str(data['message']))}" if data.get("message") else ""
            self.info(f"{who} wants to be your contact{note} (/accept @{who} or /decline @{who})")
        elif name == "contact.added":
            who = str((data.get("profile") or {}).get("username", "?"))
            self.incoming_requests.discard(who.casefold())
            self.info(f"{who} is now one of your contacts")
        elif name == "contact.removed":
            self.info(f"{data.get('username')} is no longer one of your contacts")
        elif name == "feed.posted":
            self.show_post(data["post"])
        elif name == "feed.liked":
            ref = self.post_ref(int(data["post_id"]))
            verb = "likes" if data.get("on") else "no longer likes"
            self.info(f"{data.get('username')} {verb} the post {ref}")
        elif name == "feed.commented":
            ref = self.post_ref(int(data["post_id"]))
            comment = data.get("comment") or {}
            self.info(f"{comment.get('author')} on {ref}: "
                      f"{_printable(str(comment.get('body', '')))}")
        elif name == "feed.deleted":
            ref = self.post_ref(int(data["post_id"]))
            self.info(f"a comment on {ref} was deleted" if data.get("comment_id")
                      else f"the post {ref} was deleted")
        elif name == "presence":
            pass  # shown by /who; printing every change would drown the conversation
        elif name == "session.ended":
            ended = data.get("reason")
            if ended == "replaced":
                self.error("you logged in somewhere else; this session ended")
            elif ended == "banned":
                self.error("your account was banned")
            elif ended == "shutdown":
                self.info("the server is restarting")
        elif name == "system":
            self.say(f"[system] {data.get('body', '')}", "ansimagenta bold")
        elif name == "error":
            self.error(f"server: {data.get('code')}: {data.get('message')}")

    def mark_read(self, room_id: int, seq: int) -> None:
        """Move the read position of ``room_id`` to ``seq`` soon (one ``msg.read``
        per room for a burst of messages)."""
        if seq > self._reads.get(room_id, 0):
            self._reads[room_id] = seq
        if self._read_call is None:
            self._read_call = self.reactor.callLater(READ_DELAY, self._send_reads)

    def _send_reads(self) -> None:
        self._read_call = None
        reads, self._reads = self._reads, {}
        if self.session is None:
            return
        for room_id, seq in reads.items():
            # Quietly: a room left meanwhile refuses, and that is no news.
            self.session.call("msg.read", {"room_id": room_id, "seq": seq}).addErrback(
                lambda _f: None)

    def _spawn(self, work: Any) -> None:
        """Run background work; report its failure on the screen."""
        d = Deferred.fromCoroutine(work) if asyncio.iscoroutine(work) else work

        def failed(failure: Failure) -> None:
            self.error(_err(failure.value or Exception("failed")))

        d.addErrback(failed)

    # -- input ---------------------------------------------------------------------------

    async def handle_line(self, line: str) -> None:
        """Run one line typed by the user."""
        line = line.strip()
        if not line:
            return
        if line.startswith("/") and not line.startswith("//"):
            try:
                words = shlex.split(line[1:])
            except ValueError:
                words = line[1:].split()
            if not words:
                return
            command = self.commands.get(words[0].lower())
            if command is None:
                self.error(f"unknown command /{words[0]} (/help lists them)")
                return
            if self.session is None and command not in (self.cmd_register, self.cmd_quit,
                                                        self.cmd_help, self.cmd_login):
                self.error(f"not logged in: {self.login_hint()}")
                return
            try:
                await command(words[1:])
            except ChatError as exc:
                self.error(_err(exc))
            return
        await self.send_text(line[1:] if line.startswith("//") else line)

    async def send_text(self, text: str, reply_to: int | None = None) -> None:
        """Send to the current room (as an answer to ``reply_to``, a msg_id)."""
        if self.session is None:
            self.error(f"not logged in: {self.login_hint()}")
            return
        if self.current is None:
            self.error("no current room: /join a room, /create one, or /dm someone")
            return
        room_id = self.current
        self.session.typing(room_id, False)
        self.last_typing_sent = 0.0
        try:
            await self.session.send_message(room_id, text, reply_to=reply_to)
        except ChatError as exc:
            self.error(f"not sent: {_err(exc)}")

    def typed(self, text: str) -> None:
        """The line being typed changed: tell the room, at most every few seconds."""
        if self.session is None or self.current is None or text.startswith("/"):
            return
        now = self.reactor.seconds()
        if text and now - self.last_typing_sent > TYPING_EVERY:
            self.last_typing_sent = now
            self.session.typing(self.current, True)

    # -- commands ---------------------------------------------------------------------------

    async def cmd_help(self, words: list[str]) -> None:
        """/help"""
        for line in HELP.splitlines():
            self.say(line)

    async def cmd_register(self, words: list[str]) -> None:
        """/register: create the account with the password given at start."""
        if self.session is not None:
            self.error("already logged in")
            return
        if self.registration is False:
            self.error("this server does not let people register; ask its administrator "
                       "for an account")
            return
        await self.login(register=True)

    async def cmd_login(self, words: list[str]) -> None:
        """/login [USER]: ask for the password and log in (again)."""
        if self.session is not None:
            self.error(f"already logged in as {self.session.username}")
            return
        if len(words) > 1:
            self.error("usage: /login [USER]")
            return
        if words:
            self.args.user = words[0].removeprefix("@")
        try:
            password = await self.ask_password(f"Password for {self.args.user}: ")
        except (KeyboardInterrupt, EOFError, QuitRequested):
            self.info("login abandoned")
            return
        if not password:
            self.error("no password given")
            return
        self.password = password
        self.info(f"connecting to {self.args.host}:{self.args.port} as {self.args.user}…")
        await self.login()

    async def cmd_quit(self, words: list[str]) -> None:
        """/quit"""
        self.running = False

    async def cmd_rooms(self, words: list[str]) -> None:
        """/rooms"""
        await self.refresh_rooms()
        if not self.rooms:
            self.info("you are in no room yet")
        for room_id, room in self.rooms.items():
            mark = "*" if room_id == self.current else " "
            unread = f"  {room['unread']} unread" if room.get("unread") else ""
            self.say(f" {mark} {self.label(room_id):<24} id {room_id}  "
                     f"{room.get('members_count', '?')} members{unread}")

    def find_room(self, name: str) -> int | None:
        """A room of ours by id, ``#name``, ``@user`` or name."""
        if name.isdigit() and int(name) in self.rooms:
            return int(name)
        for room_id in self.rooms:
            if self.label(room_id) in (name, "#" + name):
                return room_id
        return None

    async def cmd_join(self, words: list[str]) -> None:
        """/join ROOM"""
        if not words:
            self.error("usage: /join ROOM")
            return
        assert self.session is not None
        name = " ".join(words)
        room_id = self.find_room(name)
        if room_id is None:
            if name.isdigit():
                room = await self.session.call("room.join", {"room_id": int(name)})
            else:
                wanted = name.removeprefix("#")
                found = [r for r in (await self.session.call(
                    "room.directory", {"query": wanted}))["rooms"] if r["name"] == wanted]
                if not found:
                    self.error(f"no public room named {wanted!r}; /create {wanted} makes one")
                    return
                room = await self.session.call("room.join", {"room_id": found[0]["room_id"]})
            await self.refresh_rooms()
            room_id = room["room_id"]
        self.current = room_id
        self.info(f"talking in {self.label(room_id)}")
        await self.cmd_history(["10"])

    async def cmd_create(self, words: list[str]) -> None:
        """/create NAME [private]"""
        if not words:
            self.error("usage: /create NAME [private]")
            return
        assert self.session is not None
        visibility = "public"
        if len(words) > 1 and words[-1].lower() in ("private", "public"):
            visibility = words.pop().lower()
        room = await self.session.call("room.create", {"name": " ".join(words),
                                                       "visibility": visibility})
        await self.refresh_rooms()
        self.current = room["room_id"]
        self.info(f"created {visibility} room {self.label(room['room_id'])}")

    async def cmd_leave(self, words: list[str]) -> None:
        """/leave [ROOM]"""
        assert self.session is not None
        room_id = self.find_room(" ".join(words)) if words else self.current
        if room_id is None:
            self.error("no such room of yours")
            return
        label = self.label(room_id)
        await self.session.call("room.leave", {"room_id": room_id})
        self.rooms.pop(room_id, None)
        if self.current == room_id:
            self.current = next(iter(self.rooms), None)
        await self.refresh_rooms()
        self.info(f"left {label}")

    async def cmd_dm(self, words: list[str]) -> None:
        """/dm USER"""
        if len(words) != 1:
            self.error("usage: /dm USER")
            return
        assert self.session is not None
        room = await self.session.call("dm.open", {"username": words[0].removeprefix("@")})
        self.direct_names[room["room_id"]] = words[0].removeprefix("@").casefold()
        await self.refresh_rooms()
        self.current = room["room_id"]
        self.info(f"talking with {self.label(room['room_id'])}")
        await self.cmd_history(["10"])

    async def cmd_who(self, words: list[str]) -> None:
        """/who [ROOM]"""
        assert self.session is not None
        room_id = self.find_room(" ".join(words)) if words else self.current
        if room_id is None:
            self.error("no such room of yours")
            return
        members = await self.session.call_all("room.members", "members",
                                              {"room_id": room_id, "limit": 500})
        self.info(f"{len(members)} in {self.label(room_id)}:")
        for member in members:
            # The username first: display names are free text, anyone can take
            # someone else's; the username is unique.
            role = "" if member["role"] == "member" else f" ({member['role']})"
            name = _printable(str(member.get("display_name") or ""))
            self.say(f"   @{member['username']:<24} {name:<24} {member['presence']:<8}{role}")

    async def cmd_history(self, words: list[str]) -> None:
        """/history [N] | /history --date YYYY-MM-DD [N]: the last N messages, or N
        from the first of that day (local time) on, with some before it."""
        assert self.session is not None
        if self.current is None:
            self.error("no current room")
            return
        usage = "usage: /history [N] or /history --date YYYY-MM-DD [N]"
        args: dict[str, Any] = {"room_id": self.current}
        if words and words[0] == "--date":
            if len(words) < 2:
                self.error(usage)
                return
            try:
                day = time.strptime(words[1], "%Y-%m-%d")
            except ValueError:
                self.error(f"{words[1]!r} is not a date like 2026-12-06; {usage}")
                return
            args["around_ts"] = int(time.mktime(day) * 1000)
            words = words[2:]
        try:
            args["limit"] = max(1, min(200, int(words[0]))) if words else 20
        except ValueError:
            self.error(usage)
            return
        page = await self.session.call("msg.history", args)
        if not page["messages"]:
            self.info(f"no messages in {self.label(self.current)} yet")
        elif "around_ts" in args:
            first = next((m for m in page["messages"] if m["seq"] == page.get("anchor_seq")),
                         None)
            self.info(f"{self.label(self.current)} around {words_date(args['around_ts'])}"
                      + (f"; the day's first message is {self.ref_after(first)}" if first
                         and first["ts"] >= args["around_ts"] else "; nothing since then"))
        for message in page["messages"]:
            self.show_message(message)
        if page["messages"] and "around_ts" not in args:
            await self.session.call("msg.read", {"room_id": self.current,
                                                 "seq": page["messages"][-1]["seq"]})

    def find_ref(self, ref: str) -> tuple[int, int] | None:
        """``(room_id, msg_id)`` of the message printed with short reference ``ref``
        (or None, after an error is printed)."""
        msg_id = self.refs.get(ref.lower().removeprefix("^"))
        known = self.shown.get(msg_id) if msg_id is not None else None
        if msg_id is None or known is None:
            self.error(f"no message {ref!r} on the screen lately (the reference is printed "
                       "after the time; /history shows more)")
            return None
        return known[0], msg_id

    async def cmd_contacts(self, words: list[str]) -> None:
        """/contacts: contacts with presence, then requests waiting either way."""
        assert self.session is not None
        contacts: list[dict[str, Any]] = []
        incoming: list[str] = []
        outgoing: list[str] = []
        cursor: str | None = None
        while True:
            page = await self.session.call("contact.list", {"cursor": cursor} if cursor else {})
            contacts += page["contacts"]
            incoming += page["incoming"]
            outgoing += page["outgoing"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        self.incoming_requests = {u.casefold() for u in incoming}
        if not (contacts or incoming or outgoing):
            self.info("no contacts yet: /add USER")
            return
        self.info(f"{len(contacts)} contact(s):")
        for profile in contacts:
            name = _printable(str(profile.get("display_name") or ""))
            status = _printable(str(profile.get("status_text") or ""))
            self.say(f"   @{profile['username']:<24} {name:<24} {profile['presence']:<8} "
                     f"{status}".rstrip())
        for username in incoming:
            self.say(f"   @{username:<24} wants to be your contact: /accept @{username} or "
                     f"/decline @{username}")
        for username in outgoing:
            self.say(f"   @{username:<24} has not answered your request yet")

    async def cmd_add(self, words: list[str]) -> None:
        """/add USER [MESSAGE]"""
        assert self.session is not None
        if not words:
            self.error("usage: /add USER [MESSAGE]")
            return
        args: dict[str, Any] = {"username": words[0].removeprefix("@")}
        if len(words) > 1:
            args["message"] = " ".join(words[1:])
        await self.session.call("contact.request", args)
        self.info(f"asked {args['username']} to be a contact")

    async def cmd_unfriend(self, words: list[str]) -> None:
        """/unfriend USER"""
        assert self.session is not None
        if len(words) != 1:
            self.error("usage: /unfriend USER")
            return
        await self.session.call("contact.remove", {"username": words[0].removeprefix("@")})
        self.info(f"{words[0].removeprefix('@')} is no longer a contact")

    async def cmd_block(self, words: list[str], on: bool = True) -> None:
        """/block USER: their messages, requests and invitations no longer reach you
        (they are not told)."""
        assert self.session is not None
        if len(words) != 1:
            self.error(f"usage: /{'block' if on else 'unblock'} USER")
            return
        username = words[0].removeprefix("@")
        await self.session.call("contact.block", {"username": username, "on": on})
        self.info(f"{username} is blocked: you will not see their messages or requests"
                  if on else f"{username} is no longer blocked")

    async def cmd_unblock(self, words: list[str]) -> None:
        """/unblock USER"""
        await self.cmd_block(words, on=False)

    async def cmd_blocked(self, words: list[str]) -> None:
        """/blocked: the people you blocked."""
        assert self.session is not None
        names = [str(n) for n in await self.session.call_all("contact.blocks", "blocked")]
        self.info(f"you blocked: {', '.join(names)}" if names else "you blocked nobody")

    async def cmd_whois(self, words: list[str]) -> None:
        """/whois USER: the profile, as the server shows it to us."""
        assert self.session is not None
        if len(words) != 1:
            self.error("usage: /whois USER")
            return
        profile = await self.session.call("user.get", {"username": words[0].removeprefix("@")})
        name = _printable(str(profile.get("display_name") or ""))
        self.info(f"@{profile['username']}: {name}")
        status = _printable(str(profile.get("status_text") or ""))
        if status:
            self.say(f"   status: {status}")
        seen = profile.get("last_seen")
        last = (f", last seen {words_date(int(seen))} {clock_text(int(seen))}"
                if seen and profile.get("presence") == "offline" else "")
        self.say(f"   {profile.get('presence', 'offline')}{last}")

    def post_ref(self, post_id: int) -> str:
        """The short reference of a feed post (``p1``, ``p2`` …), made on first use."""
        ref = self.post_ref_of.get(post_id)
        if ref is None:
            ref = f"p{short_ref(len(self.post_refs) + 1)}"
            self.post_refs[ref] = post_id
            self.post_ref_of[post_id] = ref
        return ref

    def show_post(self, post: dict[str, Any]) -> None:
        """A post: ``[date time] p1 <author> body``, its files, likes and comments."""
        ts = int(post.get("ts", 0))
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(ts / 1000))
        parts: list[tuple[str, str]] = [
            ("ansibrightblack", f"[{when}] {self.post_ref(int(post['post_id']))} "),
            ("ansimagenta", "feed "),
            ("bold", f"<{post.get('author', '?')}> "),
            ("", _printable(str(post.get("body", "")))),
        ]
        for attachment in post.get("attachments") or ():
            parts.append(("ansigreen", f"\n    [file] {attachment['name']} "
                          f"({human_size(int(attachment['size']))})  "
                          f"/get {attachment['file_id']}"))
        likes = int(post.get("likes_count", 0))
        if likes:
            names = ", ".join(post.get("likes") or [])
            more = f" and {likes - len(post.get('likes') or [])} more" if likes > len(
                post.get("likes") or []) else ""
            parts.append(("ansibrightblack", f"\n    ♥ {names}{more}"))
        for comment in post.get("comments") or ():
            parts.append(("ansibrightblack", f"\n    <{comment.get('author')}> "
                          f"{_printable(str(comment.get('body', '')))}"))
        hidden = int(post.get("comments_count", 0)) - len(post.get("comments") or [])
        if hidden > 0:
            parts.append(("ansibrightblack", f"\n    ({hidden} earlier comment(s))"))
        self.write(FormattedText(parts))

    def find_post(self, ref: str) -> int | None:
        """The post_id behind a post reference (or None, after an error is printed)."""
        post_id = self.post_refs.get(ref.lower())
        if post_id is None:
            self.error(f"no post {ref!r} shown lately (/feed lists them with p1, p2 …)")
        return post_id

    async def cmd_feed(self, words: list[str]) -> None:
        """/feed [USER]: the newest posts (yours and your contacts', or USER's)."""
        assert self.session is not None
        args: dict[str, Any] = {"limit": 10}
        if words:
            args["author"] = words[0].removeprefix("@")
        page = await self.session.call("feed.list", args)
        if not page["posts"]:
            self.info("nothing in the feed yet: /post TEXT (your contacts see it)")
            return
        for post in reversed(page["posts"]):
            self.show_post(post)

    async def cmd_post(self, words: list[str]) -> None:
        """/post TEXT"""
        assert self.session is not None
        if not words:
            self.error("usage: /post TEXT")
            return
        post = await self.session.call("feed.post", {"body": " ".join(words)})
        self.info(f"posted as {self.post_ref(int(post['post_id']))}: your contacts see it")

    async def cmd_like(self, words: list[str], on: bool = True) -> None:
        """/like PREF"""
        assert self.session is not None
        if len(words) != 1:
            self.error(f"usage: /{'like' if on else 'unlike'} PREF")
            return
        post_id = self.find_post(words[0])
        if post_id is not None:
            await self.session.call("feed.like", {"post_id": post_id, "on": on})

    async def cmd_unlike(self, words: list[str]) -> None:
        """/unlike PREF"""
        await self.cmd_like(words, on=False)

    async def cmd_comment(self, words: list[str]) -> None:
        """/comment PREF TEXT"""
        assert self.session is not None
        if len(words) < 2:
            self.error("usage: /comment PREF TEXT")
            return
        post_id = self.find_post(words[0])
        if post_id is not None:
            await self.session.call("feed.comment", {"post_id": post_id,
                                                     "body": " ".join(words[1:])})

    async def cmd_export(self, words: list[str]) -> None:
        """/export FROM TO NAME: every room's messages from the start of FROM to the
        end of TO (local dates) into NAME.jsonl and NAME.txt (never replacing a
        file), with progress in the bottom line."""
        assert self.session is not None
        usage = "usage: /export FROM TO NAME (dates like 2026-12-01)"
        if len(words) != 3:
            self.error(usage)
            return
        try:
            since = int(time.mktime(time.strptime(words[0], "%Y-%m-%d")) * 1000)
            until = int(time.mktime(time.strptime(words[1], "%Y-%m-%d")) * 1000) + 86_400_000
        except ValueError:
            self.error(f"not a date: {usage}")
            return
        if until <= since:
            self.error("TO is before FROM")
            return
        base = Path(words[2]).expanduser()
        if base.is_dir():
            self.error(f"{base} is a folder; give a file name (NAME.jsonl and NAME.txt are made)")
            return
        # One name for both files: the first "NAME (n)" with neither taken.
        stem, n = base.name, 0
        while True:
            jsonl_path = base.with_name(stem + ".jsonl")
            text_path = base.with_name(stem + ".txt")
            if not any(p.exists() or p.is_symlink() for p in (jsonl_path, text_path)):
                break
            n += 1
            stem = f"{base.name} ({n})"
        await self.refresh_rooms()
        rooms = list(self.rooms.values())
        progress = ExportProgress(len(rooms))
        label = "export"
        self.transfers[label] = progress

        def advanced(done: int, total: int, messages: int) -> None:
            progress.done, progress.messages = done, messages

        ask = Patient(self.reactor, self.session.call)
        try:
            with open(jsonl_path, "x", encoding="utf-8") as jsonl, \
                    open(text_path, "x", encoding="utf-8") as text:
                text.write(f"chatnet export for {self.me()}: {words[0]} to {words[1]}\n")
                count = await export_conversations(
                    ask, rooms, self.me(), dict(self.direct_names), since, until, jsonl, text,
                    advanced)
        except OSError as exc:
            self.error(f"cannot write the export: {exc}")
            return
        finally:
            self.transfers.pop(label, None)
        self.info(f"exported {count} message(s) from {len(rooms)} room(s) to {jsonl_path} "
                  f"and {text_path}")

    async def cmd_search(self, words: list[str]) -> None:
        """/search [#ROOM|@USER] WORDS: the best matches (up to :data:`SEARCH_SHOWN`),
        each with its date, reference and the matched words in bold."""
        assert self.session is not None
        args: dict[str, Any] = {"limit": SEARCH_SHOWN}
        if words and words[0][:1] in "#@" and len(words) > 1:
            room_id = self.find_room(words[0])
            if room_id is None:
                self.error(f"no room {words[0]} of yours")
                return
            args["room_id"] = room_id
            words = words[1:]
        if not words:
            self.error("usage: /search [#ROOM] WORDS")
            return
        args["query"] = " ".join(words)
        page = await self.session.call("msg.search", args)
        messages = page["messages"]
        where = f" in {self.label(args['room_id'])}" if "room_id" in args else ""
        if not messages:
            self.info(f"nothing found for {args['query']!r}{where}")
            return
        more = " (more match: add words or name a room)" if page.get("has_more") else ""
        self.info(f"{len(messages)} found for {args['query']!r}{where}, best first{more}:")
        for message in messages:
            self.show_result(message)

    def show_result(self, message: dict[str, Any]) -> None:
        """A search result: ``[YYYY-MM-DD HH:MM] REF #room <sender> snippet`` with the
        matches in bold."""
        self.remember(message)
        ts = int(message.get("ts", 0))
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(ts / 1000))
        ref = self.ref_of.get(int(message["msg_id"]), "")
        parts: list[tuple[str, str]] = [
            ("ansibrightblack", f"[{when}] {ref} "),
            ("ansiyellow", self.label(message["room_id"]) + " "),
            ("bold", f"<{message.get('sender', '?')}> "),
        ]
        snippet = message.get("snippet") or {"text": message.get("body", ""), "marks": []}
        text, at = _printable(str(snippet.get("text", ""))), 0
        for start, end in snippet.get("marks") or ():
            parts += [("", text[at:start]), ("bold ansigreen", text[start:end])]
            at = end
        parts.append(("", text[at:]))
        self.write(FormattedText(parts))

    def ref_after(self, message: dict[str, Any]) -> str:
        """How the message will be printed: ``[HH:MM] REF`` (remembering it now)."""
        self.remember(message)
        return f"[{clock_text(int(message['ts']))}] {self.ref_of.get(int(message['msg_id']))}"

    async def cmd_react(self, words: list[str], on: bool = True) -> None:
        """/react [REF] EMOJI: react to a message (the newest of the current room
        without REF)."""
        assert self.session is not None
        usage = "/react [REF] EMOJI" if on else "/unreact [REF] EMOJI"
        if len(words) not in (1, 2):
            self.error(f"usage: {usage}")
            return
        try:
            emoji = canonical_emoji(words[-1])
        except ValueError as exc:
            self.error(f"the reaction {exc}")
            return
        if len(words) == 2:
            found = self.find_ref(words[0])
            if found is None:
                return
            room_id, msg_id = found
        else:
            room_id = self.current  # type: ignore[assignment]
            newest = self.newest.get(room_id) if room_id is not None else None
            if newest is None:
                self.error("no message to react to here yet (/history shows some)")
                return
            msg_id = newest
        try:
            await self.session.call("msg.react", {"room_id": room_id, "msg_id": msg_id,
                                                  "emoji": emoji, "on": on})
        except ChatError as exc:
            if exc.code is ErrorCode.CONFLICT:
                self.error(exc.message)  # names the limit
                return
            raise

    async def cmd_unreact(self, words: list[str]) -> None:
        """/unreact [REF] EMOJI: take back a reaction."""
        await self.cmd_react(words, on=False)

    async def cmd_reply(self, words: list[str]) -> None:
        """/reply REF TEXT: answer a message, in its room."""
        if len(words) < 2:
            self.error("usage: /reply REF TEXT")
            return
        found = self.find_ref(words[0])
        if found is None:
            return
        room_id, msg_id = found
        if room_id != self.current:
            self.current = room_id
            self.info(f"talking in {self.label(room_id)}")
        await self.send_text(" ".join(words[1:]), reply_to=msg_id)

    async def cmd_edit(self, words: list[str]) -> None:
        """/edit REF TEXT: replace the text of one of your messages."""
        assert self.session is not None
        if len(words) < 2:
            self.error("usage: /edit REF TEXT")
            return
        found = self.find_ref(words[0])
        if found is None:
            return
        room_id, msg_id = found
        await self.session.call("msg.edit", {"room_id": room_id, "msg_id": msg_id,
                                             "body": " ".join(words[1:])})

    async def cmd_delete(self, words: list[str]) -> None:
        """/delete REF: delete a message (your own; owners and moderators: any)."""
        assert self.session is not None
        if len(words) != 1:
            self.error("usage: /delete REF")
            return
        found = self.find_ref(words[0])
        if found is None:
            return
        room_id, msg_id = found
        await self.session.call("msg.delete", {"room_id": room_id, "msg_id": msg_id})

    async def cmd_me(self, words: list[str]) -> None:
        """/me ACTION: an action message (the body starts with ``/me ``)."""
        if not words:
            self.error("usage: /me ACTION")
            return
        await self.send_text("/me " + " ".join(words))

    async def cmd_read(self, words: list[str]) -> None:
        """/read: mark the current room read up to its newest message."""
        assert self.session is not None
        if self.current is None:
            self.error("no current room")
            return
        page = await self.session.call("msg.history", {"room_id": self.current, "limit": 1})
        if page["messages"]:
            await self.session.call("msg.read", {"room_id": self.current,
                                                 "seq": page["messages"][-1]["seq"]})
        self.info(f"{self.label(self.current)} marked read")

    async def set_presence(self, state: str) -> None:
        """``presence.set`` (kept across reconnects by the session)."""
        assert self.session is not None
        await self.session.call("presence.set", {"state": state})
        self.info(f"you are {state}")

    async def cmd_away(self, words: list[str]) -> None:
        """/away"""
        await self.set_presence("away")

    async def cmd_busy(self, words: list[str]) -> None:
        """/busy"""
        await self.set_presence("busy")

    async def cmd_online(self, words: list[str]) -> None:
        """/online"""
        await self.set_presence("online")

    async def cmd_status(self, words: list[str]) -> None:
        """/status [TEXT]: show your presence and status text, or set the text."""
        assert self.session is not None
        if words:
            text = " ".join(words)
            await self.session.call("user.update", {"status_text": text})
            self.info(f"status: {text}")
            return
        profile = await self.session.call("user.get", {"username": self.session.username})
        status = profile.get("status_text") or "(no status text)"
        self.info(f"you are {self.session.presence or profile.get('presence', 'online')}: "
                  f"{_printable(str(status))}")

    async def cmd_topic(self, words: list[str]) -> None:
        """/topic [TEXT]: show or set the current room's topic."""
        assert self.session is not None
        if self.current is None:
            self.error("no current room")
            return
        if words:
            room = await self.session.call("room.update", {"room_id": self.current,
                                                           "topic": " ".join(words)})
            self.rooms[self.current] = {**self.rooms.get(self.current, {}), **room}
            self.info(f"topic of {self.label(self.current)}: {room.get('topic', '')}")
            return
        topic = str(self.rooms.get(self.current, {}).get("topic") or "")
        self.info(f"topic of {self.label(self.current)}: {_printable(topic) or '(none)'}")

    async def cmd_passwd(self, words: list[str]) -> None:
        """/passwd: change your password (asked twice, never echoed)."""
        assert self.session is not None
        try:
            old = await self.ask_password("Current password: ")
            new = await self.ask_password("New password: ")
            again = await self.ask_password("New password again: ")
        except (KeyboardInterrupt, EOFError, QuitRequested):
            self.info("password not changed")
            return
        if new != again:
            self.error("the new passwords differ; password not changed")
            return
        await self.session.call("auth.change_password", {"old_password": old,
                                                         "new_password": new})
        self.password = new
        self.session.password = new
        self.info("password changed; your other sessions were logged out")

    async def cmd_directory(self, words: list[str]) -> None:
        """/directory [QUERY]"""
        assert self.session is not None
        rooms = (await self.session.call("room.directory", {"query": " ".join(words)}))["rooms"]
        if not rooms:
            self.info("no public rooms match")
        for room in rooms:
            self.say(f"   #{room['name']:<24} id {room['room_id']}  "
                     f"{room['members_count']} members  {room.get('topic', '')}")

    async def cmd_invite(self, words: list[str]) -> None:
        """/invite USER"""
        if len(words) != 1 or self.current is None:
            self.error("usage: /invite USER (in a room)")
            return
        assert self.session is not None
        await self.session.call("room.invite", {"room_id": self.current,
                                                "username": words[0].removeprefix("@")})
        self.info(f"invited {words[0]} to {self.label(self.current)}")

    def invite_label(self, room: dict[str, Any]) -> str:
        """How to name an invitation's room in /accept: its name, or its id when
        the name has spaces or another invitation has the same name."""
        name = str(room.get("name", ""))
        assert self.session is not None
        same = [i for i in self.session.invites.values()
                if i["room"].get("name") == name and i["room"]["room_id"] != room["room_id"]]
        return name if name and " " not in name and not same else str(room["room_id"])

    def find_invite(self, name: str) -> int | None:
        """A pending invitation's room id by id, ``#name`` or name."""
        assert self.session is not None
        invites = self.session.invites
        if name.isdigit() and int(name) in invites:
            return int(name)
        wanted = name.removeprefix("#")
        found = [room_id for room_id, invite in invites.items()
                 if invite["room"].get("name") == wanted]
        return found[0] if len(found) == 1 else None

    async def cmd_invites(self, words: list[str]) -> None:
        """/invites"""
        assert self.session is not None
        invites = await self.session.call_all("room.invites", "invites")
        if not invites:
            self.info("no invitations waiting")
        for invite in invites:
            room = invite["room"]
            self.session.invites.setdefault(room["room_id"], invite)
            self.say(f"   #{room['name']:<24} id {room['room_id']}  from {invite['by']}  "
                     f"{room['members_count']} members  {room.get('topic', '')}")

    async def answer_contact(self, words: list[str], accept: bool) -> bool:
        """/accept @USER, /decline @USER (or a name that is no room invitation but a
        waiting contact request): answer it. Returns whether it was one."""
        assert self.session is not None
        if len(words) != 1:
            return False
        name = words[0]
        if not name.startswith("@"):
            if self.find_invite(name) is not None:
                return False
            if name.casefold() not in self.incoming_requests:
                return False
        username = name.removeprefix("@")
        await self.session.call("contact.respond", {"username": username, "accept": accept})
        self.incoming_requests.discard(username.casefold())
        if not accept:
            self.info(f"declined {username}'s contact request")
        return True

    async def cmd_accept(self, words: list[str]) -> None:
        """/accept ROOM, /accept @USER"""
        if not words:
            self.error("usage: /accept ROOM (see /invites) or /accept @USER (see /contacts)")
            return
        assert self.session is not None
        if await self.answer_contact(words, True):
            return
        room_id = self.find_invite(" ".join(words))
        if room_id is None:
            self.error("no such invitation (see /invites; use the id if names repeat)")
            return
        room = await self.session.call("room.join", {"room_id": room_id})
        await self.refresh_rooms()
        self.current = room["room_id"]
        self.info(f"joined {self.label(room['room_id'])}")
        await self.cmd_history(["10"])

    async def cmd_decline(self, words: list[str]) -> None:
        """/decline ROOM, /decline @USER"""
        if not words:
            self.error("usage: /decline ROOM (see /invites) or /decline @USER (see /contacts)")
            return
        assert self.session is not None
        if await self.answer_contact(words, False):
            return
        room_id = self.find_invite(" ".join(words))
        if room_id is None:
            self.error("no such invitation (see /invites; use the id if names repeat)")
            return
        name = self.session.invites[room_id]["room"].get("name")
        await self.session.call("room.decline", {"room_id": room_id})
        self.info(f"declined the invitation to #{name}")

    async def cmd_kick(self, words: list[str]) -> None:
        """/kick USER [REASON]"""
        if not words or self.current is None:
            self.error("usage: /kick USER [REASON] (in a room)")
            return
        assert self.session is not None
        args: dict[str, Any] = {"room_id": self.current, "username": words[0].removeprefix("@")}
        if len(words) > 1:
            args["reason"] = " ".join(words[1:])
        await self.session.call("room.kick", args)

    async def cmd_send_file(self, words: list[str]) -> None:
        """/send-file PATH: upload with a progress bar in the bottom line, then send."""
        if len(words) != 1 or self.current is None:
            self.error("usage: /send-file PATH (in a room)")
            return
        assert self.session is not None
        path = Path(words[0]).expanduser()
        if path.is_dir():
            self.error(f"{path} is a folder; send a file (or zip the folder first)")
            return
        if not path.is_file():
            self.error(f"no such file: {path}")
            return
        upload = Upload(self.session, path, room_id=self.current)
        label = f"↑{path.name}"
        self.transfers[label] = upload
        self.info(f"uploading {path.name} ({human_size(path.stat().st_size)})…")
        try:
            info = await upload.start()
        except ChatError as exc:
            self.error(f"{path.name} not sent: {_err(exc)}")
            return
        finally:
            self.transfers.pop(label, None)
        self.info(f"sent {info['name']} ({human_size(info['size'])}) as {info['file_id']}")

    async def cmd_get(self, words: list[str]) -> None:
        """/get FILE_ID [DEST]: download (resuming DEST.part), verify, report."""
        if not 1 <= len(words) <= 2:
            self.error("usage: /get FILE_ID [DEST]")
            return
        assert self.session is not None
        file_id = words[0]
        info = await self.session.call("file.info", {"file_id": file_id})
        target = Path(words[1]).expanduser() if len(words) == 2 else Path.cwd()
        if target.is_dir():
            name = download_name(str(info["name"]))
            if name is None:
                self.error(f"the file is named {info['name']!r}, which is hidden or not a "
                           f"plain name; choose one: /get {file_id} DEST")
                return
            target = target / name
        chosen = unused_path(target)
        if chosen != target:
            self.info(f"{target.name} exists; saving as {chosen.name}")
        target = chosen
        download = Download(self.session, file_id, target)
        label = f"↓{info['name']}"
        self.transfers[label] = download
        self.info(f"downloading {info['name']} ({human_size(info['size'])}) to {target}…")
        try:
            await download.start()
        except ChatError as exc:
            self.error(f"{info['name']} not downloaded: {_err(exc)}")
            return
        finally:
            self.transfers.pop(label, None)
        self.info(f"saved {target} (sha256 verified)")

    async def close(self) -> None:
        """Log out (revoke the token, others see us go) and stop the session; a
        server that does not answer within :data:`LOGOUT_TIMEOUT` is not waited for."""
        if self._read_call is not None and self._read_call.active():
            self._read_call.cancel()
            self._send_reads()
        session, self.session = self.session, None
        if session is None:
            return
        if self.rooms:
            self.remember_rooms_of(session)
        logout = Deferred.fromCoroutine(session.close(logout=True))
        logout.addTimeout(LOGOUT_TIMEOUT, self.reactor)
        try:
            await logout
        except Exception:
            await session.close()

    def remember_rooms_of(self, session: ChatSession) -> None:
        """Save the room list on the way out (the session is being closed)."""
        self.session = session
        try:
            self.remember_rooms()
        finally:
            self.session = None

    # -- the prompt ------------------------------------------------------------------------

    def key_bindings(self) -> KeyBindings:
        """Ctrl-C clears the line, or asks to quit on an empty one; typing and pastes
        stop at :data:`MAX_LINE` characters."""
        bindings = KeyBindings()

        @bindings.add("c-c")
        def _interrupt(event: KeyPressEvent) -> None:
            self.ctrl_c()

        def _undo_while_short(event: KeyPressEvent) -> bool:
            return len(event.current_buffer.text) < UNDO_UP_TO

        @bindings.add(Keys.Any, filter=vi_insert_mode | emacs_insert_mode,
                      save_before=_undo_while_short)
        def _type(event: KeyPressEvent) -> None:
            self.quit_armed = False
            self.insert_bounded(event.current_buffer, event.data * max(1, event.arg))

        @bindings.add(Keys.BracketedPaste)
        def _paste(event: KeyPressEvent) -> None:
            text = event.data.replace("\r\n", "\n").replace("\r", "\n")
            self.insert_bounded(event.current_buffer, text)

        return bindings

    def insert_bounded(self, buffer: Any, text: str) -> None:
        """Insert ``text`` at the cursor, as much of it as fits in :data:`MAX_LINE`;
        say once per line when some was cut."""
        room = MAX_LINE - len(buffer.text)
        if len(text) > room:
            text = text[:max(0, room)]
            if not self._line_cut:
                self._line_cut = True
                self.error(f"a message holds at most {MAX_LINE:,} characters; the rest of "
                           "what was typed or pasted was dropped (send a long text with "
                           "/send-file)")
        if text:
            buffer.insert_text(text)

    def line_done(self) -> None:
        """A line was submitted: a later cut is news again."""
        self._line_cut = False
        self.quit_armed = False

    async def run_work(self, work: Awaitable[Any]) -> None:
        """Run a command (or the login) so that Ctrl-C or a signal can cancel it."""
        d = Deferred.fromCoroutine(work) if asyncio.iscoroutine(work) else work
        self.work = d  # type: ignore[assignment]
        try:
            await d
        except CancelledError:
            if self.running:
                self.info("cancelled")
        finally:
            self.work = None

    def ctrl_c(self) -> None:
        """Ctrl-C at the prompt: clear the line being typed, as shells do; on an empty
        line ask, and quit on a second Ctrl-C."""
        buffer = self.prompt.default_buffer if self.prompt is not None else None
        if buffer is not None and buffer.text:
            buffer.reset()
            self.quit_armed = False
        elif self.quit_armed:
            self.quit()
        else:
            self.quit_armed = True
            self.info("press Ctrl-C again to quit (or type /quit)")

    def interrupted(self, signum: int) -> None:
        """A signal. SIGINT is Ctrl-C while the terminal is not in the prompt's raw
        mode (a command running, or output being printed): it cancels the running
        command, or acts as Ctrl-C at the prompt. SIGTERM and SIGHUP quit, logging
        out; after SIGHUP the terminal is gone and nothing more is printed."""
        if signum == signal.SIGHUP:
            self.hung_up = True
        if signum == signal.SIGINT:
            if self.work is not None:
                self.work.cancel()
            else:
                self.ctrl_c()
            return
        self.quit()

    def quit(self) -> None:
        """Leave: stop the loop, cancel the running command, end the prompt."""
        self.running = False
        if self.work is not None:
            self.work.cancel()
        prompt = self.prompt
        if prompt is not None and prompt.app.is_running:
            prompt.app.exit(exception=QuitRequested())


async def run_interactive(reactor: Any, args: argparse.Namespace, password: str) -> int:
    """The interactive client; returns the exit status (0; 1 after SIGHUP/SIGTERM)."""
    client = TerminalClient(reactor, args, password)
    prompt: PromptSession[str] = PromptSession(
        bottom_toolbar=client.toolbar, refresh_interval=1.0, key_bindings=client.key_bindings(),
        # The line typed goes away on Enter: the message comes back printed by the
        # server's echo (with its time and reference), once, not twice.
        erase_when_done=True)
    client.prompt = prompt
    prompt.default_buffer.on_text_changed += lambda buf: client.typed(buf.text)
    # react() starts this before the reactor runs, and the reactor installs its own
    # SIGINT/SIGTERM handlers (stop at once) as it starts: ours go in after that.
    running: Deferred[None] = Deferred()
    reactor.callWhenRunning(running.callback, None)
    await running
    loop = asyncio.get_event_loop()  # the one chat.main installed the reactor on
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for signum in signals:
        loop.add_signal_handler(signum, client.interrupted, signum)
    try:
        with patch_stdout(raw=True):
            client.info(f"connecting to {args.host}:{args.port} as {args.user}…")
            await client.run_work(client.login())
            while client.running:
                try:
                    line = await Deferred.fromFuture(asyncio.ensure_future(
                        prompt.prompt_async(lambda: f"{client.label(client.current)}> "
                                            if client.current is not None else "> ")))
                except (EOFError, KeyboardInterrupt, QuitRequested):
                    break
                client.line_done()
                await client.run_work(client.handle_line(line))
            if not client.hung_up:
                client.info("logging out…")
            await client.close()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    return 1 if client.hung_up else 0


async def run_send(reactor: Any, args: argparse.Namespace, password: str) -> int:
    """``chatnet send``: log in, send one message, wait for the answer, exit.

    Returns:
        0 when the server acknowledged the message (it is stored), 1 otherwise.
    """
    import sys
    import uuid

    text = " ".join(args.text)
    try:
        conn = await connect(reactor, args.host, args.port, args.ca, args.cert, args.key,
                             client="chatnet-send", pin=args.pin,
                             timeout=getattr(args, "timeout", 15.0))
    except Exception as exc:
        sys.stderr.write(f"chatnet: cannot connect to {args.host}:{args.port}: {_err(exc)}\n")
        return 1
    try:
        await conn.login(args.user, password)
        if args.to:
            room = await conn.request("dm.open", {"username": args.to})
            room_id = room["room_id"]
        elif args.room.isdigit():
            room_id = int(args.room)
        else:
            wanted = args.room.removeprefix("#")
            mine = [r for r in await conn.request_all("room.list", "rooms")
                    if r["name"] == wanted and r["kind"] == "group"]
            if mine:
                room_id = mine[0]["room_id"]
            else:
                public = [r for r in (await conn.request("room.directory",
                                                         {"query": wanted}))["rooms"]
                          if r["name"] == wanted]
                if not public:
                    sys.stderr.write(f"chatnet: no room named {wanted!r}\n")
                    return 1
                room_id = (await conn.request("room.join",
                                              {"room_id": public[0]["room_id"]}))["room_id"]
        ack = await conn.request("msg.send", {"room_id": room_id, "body": text,
                                              "client_msg_id": uuid.uuid4().hex})
        sys.stdout.write(f"sent (seq {ack['seq']})\n")
        return 0
    except ChatError as exc:
        sys.stderr.write(f"chatnet: {_err(exc)}\n")
        return 1
    finally:
        await conn.close()
