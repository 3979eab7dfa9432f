"""The thin layer between what the user asks for and the client library.

Views emit *intents* (send this text, open that room); :class:`ChatController`
turns each into calls on one :class:`~chatnet.client.session.ChatSession` and
turns the session's events into changes of the Qt models. It is the only
part of the desktop client that talks to the network, and it never blocks:
every request is a Deferred on the Qt reactor, with one success path and one
failure path (:meth:`ChatController.run`, after Anki's ``CollectionOp``).
File transfers go through the :class:`~qtclient.transfers.TransferManager`
it owns (``files``), on the same intents-in, models-out terms.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatnet import __version__
from chatnet.client.calls import Calls, VoiceCall
from chatnet.client.connection import Patient
from chatnet.client.core import ConnectionClosed, Event
from chatnet.client.files import upload_avatar
from chatnet.client.session import ChatSession, SessionState
from chatnet.errors import ChatError, ErrorCode
from qtclient.audio import CallAudio
from qtclient.exporting import ExportResult, export_to_files, others_of
from qtclient.feed import FEED_UPLOADS, FeedManager
from qtclient.i18n import _, ngettext
from qtclient.models.invites import InviteListModel
from qtclient.models.members import MemberListModel
from qtclient.models.presence import normalise
from qtclient.models.rooms import RoomListModel, RoomSortProxy
from qtclient.models.search import RELEVANCE, SearchResultsModel
from qtclient.models.timeline import TimelineModel, action_text
from qtclient.qt import ID, QDate, QLocale, QObject, QStandardPaths, QTimer, pyqtSignal
from qtclient.transfers import TransferManager, human_size

#: Sent in ``session.hello``.
CLIENT_NAME = f"chatnet-qt/{__version__}"
#: Messages fetched when a room is opened (PROTOCOL.md 6 allows up to 200 a page).
PAGE_SIZE = 50
#: Messages fetched around a search result or a date (about half on each side).
AROUND_PAGE_SIZE = 100
#: Search results per page (docs/protocol.md 6 allows up to 200).
SEARCH_PAGE_SIZE = 30
#: Messages per page of scroll-back: larger, because each page on top makes the
#: list lay out all its rows again (cheap per row, but not free at 10,000).
OLDER_PAGE_SIZE = 200
#: Seconds between repeated ``msg.typing {typing: true}`` while the user types.
TYPING_EVERY = 3.0
#: Seconds after which someone's "typing" goes stale without a new notification.
TYPING_STALE = 6.0
#: Milliseconds between two ``room.members`` of an open room bigger than the
#: server's ``presence_room_limit`` (such a room carries no presence events).
BIG_ROOM_MEMBERS_REFRESH_MS = 60_000


class ConnectionView:
    """What the user is told about the connection (a label for every session state)."""

    OFFLINE = "offline"
    CONNECTING = "connecting"
    ONLINE = "online"
    RECONNECTING = "reconnecting"


@dataclass(frozen=True)
class LoginRequest:
    """What the login form submits.

    Attributes:
        host: server hostname or IP address (must match its certificate).
        port: TCP port.
        ca_file: PEM file of the CA to trust ("" = the system's CAs).
        username: account name.
        password: password (kept in memory by the session, never stored).
        register: create the account first (servers with open registration).
    """

    host: str
    port: int
    ca_file: str
    username: str
    password: str
    register: bool = False


def describe_error(error: BaseException) -> str:
    """A translated, human sentence for a failed request or login."""
    if isinstance(error, ConnectionClosed):
        return _("Not connected to the server.")
    if isinstance(error, ChatError):
        messages = {
            ErrorCode.UNAUTHENTICATED: _("Wrong username or password."),
            ErrorCode.BANNED: _("This account is banned."),
            ErrorCode.FORBIDDEN: _("You are not allowed to do that."),
            ErrorCode.NOT_FOUND: _("It no longer exists, or you are not a member."),
            ErrorCode.CONFLICT: _("That already exists."),
            ErrorCode.RATE_LIMITED: _("Too many requests; try again in a moment."),
            ErrorCode.TOO_LARGE: _("That is too large."),
            ErrorCode.UNAVAILABLE: _("The server is unavailable."),
        }
        text = messages.get(error.code)
        if error.code is ErrorCode.RATE_LIMITED:
            text = _rate_limited(error) or text
        if error.code is ErrorCode.BAD_REQUEST or (
                error.code is ErrorCode.CONFLICT and "limit" in (error.details or {})):
            # A bad field, or a limit of the server (rooms, invitations): the
            # server's message names it, and says what to do.
            return _("The server refused it: {reason}").format(reason=error.message)
        return text or _("Something went wrong on the server.")
    if isinstance(error, DNSLookupError):
        return _("Cannot find that server.")
    if isinstance(error, ConnectError):
        return _("Cannot reach the server.")
    reason = str(error) or type(error).__name__
    return _("Cannot connect securely: {reason}").format(reason=reason)


def _rate_limited(error: ChatError) -> str | None:
    """The refusal with the wait the server named (``details.retry_after_ms``),
    when it is long enough to be worth saying (a budget spent for minutes, e.g.
    posts to the feed); None for a moment's wait or none named."""
    wait_ms = (error.details or {}).get("retry_after_ms")
    if not isinstance(wait_ms, int | float) or wait_ms < 2000:
        return None
    seconds = math.ceil(wait_ms / 1000)
    if seconds < 120:
        return ngettext("Too many requests; try again in {n} second.",
                        "Too many requests; try again in {n} seconds.", seconds).format(n=seconds)
    minutes = math.ceil(seconds / 60)
    return ngettext("Too many requests; try again in {n} minute.",
                    "Too many requests; try again in {n} minutes.", minutes).format(n=minutes)


def describe_reaction_error(error: BaseException) -> str:
    """A translated sentence for a refused ``msg.react``: which cap was reached, or
    :func:`describe_error`'s text for anything else."""
    if isinstance(error, ChatError) and error.code is ErrorCode.CONFLICT and error.details:
        limit = error.details.get("limit")
        if error.details.get("per") == "user":
            return _("You can put at most {n} different reactions on a message; remove one "
                     "first.").format(n=limit)
        if error.details.get("per") == "message":
            return _("This message already has {n} different reactions; add one of those "
                     "instead.").format(n=limit)
    return describe_error(error)


class ChatController(QObject):
    """Wires the user's intents to a :class:`ChatSession` and its events to the models.

    Args:
        reactor: the Qt reactor (also the clock).
        session_options: extra keyword arguments for :class:`ChatSession`
            (tests shorten the reconnect delays with them).
        cache_dir: where image previews are downloaded to (a folder per server
            and account inside it); default: the user's cache location
            (``QStandardPaths.CacheLocation``) + ``/files``.

    Attributes:
        rooms: the room list model; ``room_proxy`` sorts it for the view.
        invites: invitations to group rooms waiting for an answer.
        members: members of the current room.
        search_results: the results of the account's current search (:meth:`search`).
        timelines: room id -> its timeline model (created when first opened).
        current_room: the room shown in the centre, or None.
        presence: username -> shown presence, as last heard.
        own_presence: the state the user chose (``online`` … ``invisible``).
        auto_away: True while ``away`` was set by the idle timer, not the user.
        connection: a :class:`ConnectionView` value.
        files: the :class:`~qtclient.transfers.TransferManager` (uploads,
            downloads, previews); its ``transfers`` and ``thumbnails`` are models
            the views read.
        avatars: everyone's profile pictures (``files.avatars``), learnt from
            the profiles that arrive and asked for (``user.get``) when a view
            draws someone not heard of.
        feed: the team feed (:class:`~qtclient.feed.FeedManager`); its
            ``posts`` is the model the Feed window reads.
        blocked: usernames the user blocked (``contact.blocks``, then
            ``contact.blocked`` events).
    """

    log = Logger()

    # -- signals (what the views observe) --
    #: A :class:`ConnectionView` value.
    connection_changed = pyqtSignal(str)
    #: Login succeeded; the argument is the username.
    logged_in = pyqtSignal(str)
    #: Login failed; a translated explanation.
    login_failed = pyqtSignal(str)
    #: The session ended and will not come back; the reason ("" after logout).
    logged_out = pyqtSignal(str)
    #: A request failed; a translated explanation.
    error = pyqtSignal(str)
    #: Something worth a line in the status bar (translated).
    info = pyqtSignal(str)
    #: The room shown in the centre changed (room id, or -1 for none).
    room_opened = pyqtSignal(ID)
    #: Who is typing changed in a room (room id).
    typing_changed = pyqtSignal(ID)
    #: A desktop notification is due: title, text, room id.
    notify = pyqtSignal(str, str, ID)
    #: The user's own presence state changed.
    own_presence_changed = pyqtSignal(str)
    #: ``room.directory`` answered: the public rooms.
    directory_loaded = pyqtSignal(list)
    #: ``user.search`` answered: the profiles.
    users_found = pyqtSignal(list)
    #: Total unread messages changed.
    unread_changed = pyqtSignal(int)
    #: Someone calls: (call_id, room_id, caller's username).
    call_ringing = pyqtSignal(ID, ID, str)
    #: A call that rang here stopped ringing (answered elsewhere, ended): call_id.
    ring_stopped = pyqtSignal(ID)
    #: The call this client is in began, or its people or state changed.
    call_changed = pyqtSignal()
    #: The call this client was in ended: the reason (hangup, no_answer, rejected).
    call_ended = pyqtSignal(str)
    #: A message to scroll to and highlight, its history loaded: room id, seq
    #: (a search result or a date was chosen).
    message_shown = pyqtSignal(ID, ID)
    #: The personal export advanced: conversations done, conversations in all,
    #: messages written.
    export_progress = pyqtSignal(int, int, int)
    #: The personal export ended (True: written; False: failed or cancelled,
    #: nothing kept); :attr:`info` or :attr:`error` says more.
    export_finished = pyqtSignal(bool)
    #: An announcement (``system`` event) arrived: its body, who sent it, ts (ms).
    announcement = pyqtSignal(str, str, ID)
    #: A message seen by the administration monitor (``monitor.msg``): the message.
    monitor_message = pyqtSignal(dict)
    #: ``admin.export.progress {messages}`` (the Administration window's export).
    admin_export_progress = pyqtSignal(dict)
    #: The contacts or the contact requests changed (:attr:`contacts`,
    #: :attr:`incoming`, :attr:`outgoing`), or a contact's presence.
    contacts_changed = pyqtSignal()
    #: ``user.get`` answered for a profile card: the profile.
    profile_loaded = pyqtSignal(dict)
    #: The user's own display name, status text or picture changed (here or on
    #: another device).
    own_profile_changed = pyqtSignal()
    #: :meth:`update_profile` is done: "" when saved, else why not (translated).
    profile_saved = pyqtSignal(str)

    def __init__(self, reactor: Any, session_options: dict[str, Any] | None = None,
                 parent: QObject | None = None, cache_dir: Path | None = None) -> None:
        super().__init__(parent)
        self.reactor = reactor
        self.session_options = dict(session_options or {})
        if cache_dir is None:
            base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.CacheLocation)
            cache_dir = Path(base or Path.home() / ".cache" / "chatnet-qt") / "files"
        self.cache_root = cache_dir
        self.files = TransferManager(reactor, describe_error, self)
        self.files.upload_finished.connect(self._send_attachment)
        self.avatars = self.files.avatars
        self.avatars.profile_wanted.connect(self._ask_avatar)
        self.session: ChatSession | None = None
        self.me = ""
        self.rooms = RoomListModel(self)
        self.room_proxy = RoomSortProxy(self)
        self.room_proxy.setSourceModel(self.rooms)
        self.invites = InviteListModel(self)
        self.members = MemberListModel(self)
        self.timelines: dict[int, TimelineModel] = {}
        self.current_room: int | None = None
        self.presence: dict[str, str] = {}
        self.display_names: dict[str, str] = {}
        self.search_results = SearchResultsModel(self.room_label, self.display_names, self)
        self.own_presence = "online"
        self.status_text = ""
        #: Contacts (username -> profile), incoming requests (username -> the
        #: request's message) and outgoing requests (usernames), docs/protocol.md 4.
        self.contacts: dict[str, dict[str, Any]] = {}
        self.incoming: dict[str, str] = {}
        self.outgoing: set[str] = set()
        self.blocked: set[str] = set()
        self.feed = FeedManager(self._call, describe_error, self.files, self.display_names,
                                self)
        #: The server roles of the login result (``admin``, ``auditor``, ``bot``).
        self.roles: frozenset[str] = frozenset()
        self.auto_away = False
        self.connection = ConnectionView.OFFLINE
        self.window_active = True
        self._typing: dict[int, dict[str, float]] = {}
        self._typing_sent: dict[int, float] = {}
        self._joining: set[int] = set()
        self._was_authenticated = False
        self.calls: Calls | None = None
        #: The call this client takes part in, and since when it is answered
        #: (``time.monotonic()``; None while it rings).
        self.call: VoiceCall | None = None
        self.call_since: float | None = None
        #: The current call's sound (None without a call, or without PyAV).
        self.audio: CallAudio | None = None
        #: The second connection that carries the current call's audio (so that it
        #: does not wait behind file transfers on the session's), once open.
        self.audio_connection: Any = None
        #: Device ids (hex) of the microphone and speaker calls use ('' = default).
        self.microphone = ""
        self.speaker = ""
        #: The personal export running, if any (cancel it to stop).
        self.export: Deferred[Any] | None = None
        self._typing_timer = QTimer(self)
        self._typing_timer.setInterval(1000)
        self._typing_timer.timeout.connect(self._expire_typing)
        #: Asks again for the members (and their presence) of an open big room.
        self.members_timer = QTimer(self)
        self.members_timer.setInterval(BIG_ROOM_MEMBERS_REFRESH_MS)
        self.members_timer.timeout.connect(self._refresh_members)
        self.rooms.dataChanged.connect(self._emit_unread)
        self.rooms.rowsRemoved.connect(self._emit_unread)
        self.rooms.modelReset.connect(self._emit_unread)

    # -- background work: one success path, one failure path ------------------------------

    def run(self, work: Deferred[Any], on_success: Callable[[Any], None] | None = None,
            on_failure: Callable[[BaseException], None] | None = None) -> Deferred[Any]:
        """Watch a request: ``on_success(result)``, or ``on_failure(error)`` (by
        default the :attr:`error` signal with a translated explanation).

        Returns:
            the same Deferred, which never fails further (its failure is handled).
        """
        def succeeded(result: Any) -> Any:
            if on_success is not None:
                on_success(result)
            return result

        def failed(failure: Failure) -> None:
            error = failure.value
            if not isinstance(error, ChatError | ConnectError | DNSLookupError):
                self.log.failure("request failed", failure)
            if on_failure is not None:
                on_failure(error if isinstance(error, BaseException) else Exception(error))
            else:
                self.error.emit(describe_error(error if isinstance(error, BaseException)
                                               else Exception(error)))

        work.addCallbacks(succeeded, failed)
        return work

    def _call(self, op: str, args: dict[str, Any] | None = None,
              on_success: Callable[[Any], None] | None = None,
              on_failure: Callable[[BaseException], None] | None = None) -> Deferred[Any]:
        if self.session is None:
            return self.run(Deferred.fromCoroutine(_fail(ConnectionClosed())), on_success,
                            on_failure)
        return self.run(self.session.call(op, args), on_success, on_failure)

    def _call_all(self, op: str, key: str, args: dict[str, Any] | None = None,
                  on_success: Callable[[Any], None] | None = None,
                  on_failure: Callable[[BaseException], None] | None = None) -> Deferred[Any]:
        """Every page of a paged list op (``ChatSession.call_all``): ``on_success``
        gets the items of all pages."""
        if self.session is None:
            return self.run(Deferred.fromCoroutine(_fail(ConnectionClosed())), on_success,
                            on_failure)
        return self.run(Deferred.fromCoroutine(self.session.call_all(op, key, args)),
                        on_success, on_failure)

    # -- session lifecycle -------------------------------------------------------------------

    def login(self, request: LoginRequest) -> Deferred[Any]:
        """Connect and log in (registering first if asked).

        Emits :attr:`logged_in` or :attr:`login_failed`.
        """
        if self.session is not None:
            raise RuntimeError("already logged in")
        session = ChatSession(self.reactor, request.host, request.port, request.username,
                              request.password, ca=request.ca_file or None,
                              client_name=CLIENT_NAME, **self.session_options)
        self.session = session
        session.add_listener(self._on_event)
        session.add_state_listener(self._on_state)
        self.calls = Calls(session)
        self.calls.listeners.append(self._on_call_event)
        self._set_connection(ConnectionView.CONNECTING)

        def started(result: dict[str, Any]) -> None:
            self.me = str(result.get("username", request.username))
            self.roles = frozenset(str(r) for r in result.get("roles") or ())
            self.files.session = session
            self.files.cache_dir = self.cache_root / _folder_name(
                f"{request.host}-{request.port}") / _folder_name(self.me)
            self.display_names[self.me] = str(result.get("display_name") or self.me)
            self.own_presence, self.auto_away = "online", False
            self.rooms.reset_rooms(list(session.rooms.values()))
            self.invites.reset_invites(list(session.invites.values()))
            for entry in self.rooms.rooms():
                if entry.is_direct:
                    self._learn_peer(entry.room_id)
            self._typing_timer.start()
            self.feed.start(self.me, "admin" in self.roles)
            self.logged_in.emit(self.me)
            self.own_presence_changed.emit(self.own_presence)
            self.run(session.call("user.get", {"username": self.me}), self._own_profile,
                     lambda _e: None)
            self.load_contacts()

        def failed(error: BaseException) -> None:
            self.session = None
            self._set_connection(ConnectionView.OFFLINE)
            if (isinstance(error, ChatError) and error.code is ErrorCode.CONFLICT
                    and request.register):
                self.login_failed.emit(_("That username is taken."))
            elif (isinstance(error, ChatError) and error.code is ErrorCode.FORBIDDEN
                  and request.register):
                self.login_failed.emit(_("This server does not allow registration."))
            elif isinstance(error, ConnectionClosed):
                # Closed before login: a TLS failure (the library puts OpenSSL's
                # reason in the message) or a server that hung up.
                if "certificate" in error.message:
                    self.login_failed.emit(_(
                        "Cannot connect securely: the server's certificate is not trusted. "
                        "Check the CA certificate file."))
                else:
                    self.login_failed.emit(_("The server closed the connection: {reason}")
                                           .format(reason=error.message))
            else:
                self.login_failed.emit(describe_error(error))

        return self.run(session.start(register=request.register), started, failed)

    def logout(self) -> Deferred[Any]:
        """Log out (revoking the token) and forget the session's state."""
        session, self.session = self.session, None
        self._forget()
        if session is None:
            return Deferred.fromCoroutine(_nothing())
        d = Deferred.fromCoroutine(session.close(logout=True))
        return self.run(d, lambda _r: self.logged_out.emit(""), lambda _e: self.logged_out.emit(""))

    def shutdown(self) -> Deferred[Any]:
        """Close the connection without logging out (the program is quitting)."""
        session, self.session = self.session, None
        self._typing_timer.stop()
        self.members_timer.stop()
        self.cancel_export()
        self.files.reset()
        self.files.session = None
        if session is None:
            return Deferred.fromCoroutine(_nothing())
        return self.run(Deferred.fromCoroutine(session.close()), None, lambda _e: None)

    def _forget(self) -> None:
        self.roles = frozenset()
        self._typing_timer.stop()
        self.members_timer.stop()
        self.cancel_export()
        self.calls = None
        self._stop_audio()
        if self.call is not None:
            self.call = self.call_since = None
            self.call_ended.emit("hangup")
        self.files.reset()
        self.files.session = None
        self.current_room = None
        self.timelines.clear()
        self._typing.clear()
        self.presence.clear()
        self.rooms.reset_rooms([])
        self.invites.reset_invites([])
        self.members.reset_members(None, [])
        self.search_results.clear()
        self.contacts, self.incoming, self.outgoing = {}, {}, set()
        self.blocked = set()
        self.feed.reset()
        self.contacts_changed.emit()
        self._was_authenticated = False
        self._set_connection(ConnectionView.OFFLINE)

    def _set_connection(self, view: str) -> None:
        if view != self.connection:
            self.connection = view
            self.connection_changed.emit(view)

    def _on_state(self, state: SessionState) -> None:
        if state is SessionState.AUTHENTICATED:
            again = self._was_authenticated
            self._was_authenticated = True
            self._set_connection(ConnectionView.ONLINE)
            if again:
                self._after_reconnect()
        elif state in (SessionState.CONNECTING, SessionState.HANDSHAKING):
            if self._was_authenticated:
                self._forget_presence()
            self._set_connection(ConnectionView.RECONNECTING if self._was_authenticated
                                 else ConnectionView.CONNECTING)
        elif state is SessionState.DISCONNECTED and self.session is not None:
            session = self.session
            if session.ended_reason is not None and self._was_authenticated:
                self.session = None
                reason = session.ended_reason
                self._forget()
                self.logged_out.emit(reason)
            elif not self._was_authenticated:
                self._set_connection(ConnectionView.OFFLINE)
            else:
                self._forget_presence()

    def _forget_presence(self) -> None:
        """Disconnected: what others' presence was is no longer known (they may
        have gone meanwhile, and no ``presence`` event can say so), so nobody
        is shown online. After the reconnect ``_after_reconnect`` asks again:
        the open room's members, and each direct room's peer."""
        self.presence.clear()
        self.members.forget_presence()
        self.rooms.forget_presence()
        self.contacts_changed.emit()

    def _after_reconnect(self) -> None:
        """Back online: the library has re-sent unacknowledged messages and replayed
        new ones; reconcile what it does not replay (rooms, edits, deletions,
        reactions, presence)."""
        session = self.session
        if session is None:
            return
        known = {entry.room_id for entry in self.rooms.rooms()}
        fresh = session.rooms
        for room_id in known - set(fresh):
            self._room_gone(room_id)
        for room_id, room in fresh.items():
            self.rooms.upsert_room(room)
            if room_id not in known and room.get("kind") == "direct":
                self._learn_peer(room_id)
        self.invites.reset_invites(list(session.invites.values()))
        for room_id, timeline in self.timelines.items():
            if timeline.loaded:
                self._call("msg.history", {"room_id": room_id, "limit": PAGE_SIZE},
                           _merger(timeline), lambda _e: None)
        if self.current_room is not None:
            self._load_members(self.current_room)
            self._mark_current_read()
        for entry in self.rooms.rooms():
            if entry.is_direct and entry.peer:
                self._learn_peer(entry.room_id)
        self.load_contacts()  # requests and contacts that changed meanwhile, and presence
        self.avatars.refresh()  # pictures changed meanwhile: ask again when drawn
        self.feed.refresh_if_loaded()  # feed events missed while offline
        if self.own_presence != "online":
            # The server forgets the chosen state when the last session ends.
            self._call("presence.set", {"state": self.own_presence}, None, lambda _e: None)

    # -- rooms ---------------------------------------------------------------------------------

    def _learn_peer(self, room_id: int) -> None:
        """Find out who the other member of a direct room is (and their presence)."""
        def learned(result: dict[str, Any]) -> None:
            for member in result.get("members", []):
                username = str(member["username"])
                self.presence[username] = normalise(member.get("presence"))
                self.display_names[username] = str(member.get("display_name") or username)
                if username != self.me:
                    self.rooms.set_peer(room_id, username, self.display_names[username],
                                        self.presence[username])
            self._names_changed()

        self._call("room.members", {"room_id": room_id}, learned, lambda _e: None)

    def open_room(self, room_id: int) -> None:
        """Show ``room_id`` in the centre: its newest page, its members; mark it read."""
        if self.rooms.room(room_id) is None:
            return
        if self.current_room is not None and self.current_room != room_id:
            previous = self.timelines.get(self.current_room)
            if previous is not None:
                previous.clear_marker()
        self.current_room = room_id
        timeline = self.timeline(room_id)
        if timeline.loaded:
            entry = self.rooms.room(room_id)
            timeline.place_marker(entry.read_seq if entry is not None else timeline.newest_seq)
        elif not timeline.loading:
            self._load_latest(timeline)
        self._load_members(room_id)
        self._mark_current_read()
        self.room_opened.emit(room_id)
        self.typing_changed.emit(room_id)

    def timeline(self, room_id: int) -> TimelineModel:
        """The timeline model of ``room_id`` (created empty the first time)."""
        timeline = self.timelines.get(room_id)
        if timeline is None:
            timeline = self.timelines[room_id] = TimelineModel(room_id, self.me,
                                                               self.display_names, self)
        return timeline

    def _load_latest(self, timeline: TimelineModel) -> None:
        """Fetch the newest page of ``timeline``'s room into it (replacing its window)."""
        entry = self.rooms.room(timeline.room_id)
        read_seq = entry.read_seq if entry is not None else 0
        timeline.window += 1
        window = timeline.window
        timeline.loading = True

        def loaded(page: dict[str, Any]) -> None:
            if window != timeline.window:
                return  # another window was asked for meanwhile
            timeline.loading = False
            timeline.load_latest(page["messages"], bool(page.get("has_more")), read_seq)
            self._mark_current_read()

        def failed(error: BaseException) -> None:
            if window == timeline.window:
                timeline.loading = False
            self.error.emit(describe_error(error))

        self._call("msg.history", {"room_id": timeline.room_id, "limit": PAGE_SIZE},
                   loaded, failed)

    def _page_of(self, timeline: TimelineModel, args: dict[str, Any],
                 done: Callable[[dict[str, Any]], None]) -> None:
        """One more page of ``msg.history`` for the current window of ``timeline``
        (``args``: ``before_seq`` or ``after_seq``, ``limit``); ``done(page)``
        unless the window was replaced meanwhile."""
        window = timeline.window
        timeline.loading = True

        def loaded(page: dict[str, Any]) -> None:
            if window == timeline.window:
                timeline.loading = False
                done(page)

        def failed(error: BaseException) -> None:
            if window == timeline.window:
                timeline.loading = False
            self.error.emit(describe_error(error))

        self._call("msg.history", {"room_id": timeline.room_id, **args}, loaded, failed)

    def load_older(self, room_id: int) -> None:
        """Scroll-back reached the top: fetch the page before the oldest loaded message."""
        timeline = self.timelines.get(room_id)
        if (timeline is None or not timeline.loaded or timeline.loading
                or not timeline.has_more or timeline.oldest_seq is None):
            return
        def loaded(page: dict[str, Any]) -> None:
            timeline.prepend_older(page["messages"], bool(page.get("has_more")))

        self._page_of(timeline, {"before_seq": timeline.oldest_seq, "limit": OLDER_PAGE_SIZE},
                      loaded)

    def load_newer(self, room_id: int) -> None:
        """Scrolling down a window opened in the middle of the history (a search
        result, a date) reached its bottom: fetch the page after its newest message."""
        timeline = self.timelines.get(room_id)
        if (timeline is None or not timeline.loaded or timeline.loading
                or not timeline.has_newer):
            return

        def loaded(page: dict[str, Any]) -> None:
            messages = page["messages"]
            timeline.append_newer(messages, self._more_after(room_id, page, messages))

        self._page_of(timeline, {"after_seq": timeline.newest_seq, "limit": OLDER_PAGE_SIZE},
                      loaded)

    def _more_after(self, room_id: int, page: dict[str, Any],
                    messages: list[dict[str, Any]]) -> bool:
        """Whether newer messages than ``page``'s exist: the server says so, or
        a live message (counted in the room list, not added to a window in the
        middle) arrived while the page was on its way."""
        entry = self.rooms.room(room_id)
        newest = max((int(m["seq"]) for m in messages), default=0)
        return bool(page.get("has_more_after", page.get("has_more"))) or (
            entry is not None and entry.last_seq > newest)

    def show_message(self, room_id: int, seq: int) -> None:
        """Open ``room_id`` at the message ``seq`` (a search result): the history
        around it is loaded (``msg.history {around_seq}``) unless it is already,
        then :attr:`message_shown` asks the view to scroll there and highlight it."""
        if self.rooms.room(room_id) is None:
            self.error.emit(describe_error(ChatError(ErrorCode.NOT_FOUND, "room")))
            return
        timeline = self.timeline(room_id)
        if timeline.loaded and timeline.row_of_seq(seq) >= 0:
            self.open_room(room_id)
            self.message_shown.emit(room_id, seq)
            return
        self._load_around(room_id, {"around_seq": seq},
                          lambda page: self.message_shown.emit(room_id, seq))

    def show_date(self, room_id: int, day: date) -> None:
        """Open ``room_id`` at the first message of ``day`` (local time): the history
        around that moment is loaded (``msg.history {around_ts}``), then
        :attr:`message_shown` names the message. A day without messages is said
        so (:attr:`info`), and the nearest message before or after it is shown."""
        if self.rooms.room(room_id) is None:
            return
        start = int(datetime.combine(day, datetime.min.time()).timestamp() * 1000)
        end = int(datetime.combine(day + timedelta(days=1), datetime.min.time()).timestamp()
                  * 1000)

        def arrived(page: dict[str, Any]) -> None:
            messages = page["messages"]
            if page.get("anchor_seq") is None or not messages:
                self.info.emit(_("This conversation has no messages yet."))
                return
            on_day = [m for m in messages if start <= int(m["ts"]) < end]
            if on_day:
                self.message_shown.emit(room_id, int(on_day[0]["seq"]))
                return
            before = [m for m in messages if int(m["ts"]) < start]
            after = [m for m in messages if int(m["ts"]) >= end]
            nearest = min(([before[-1]] if before else []) + ([after[0]] if after else []),
                          key=lambda m: start - int(m["ts"]) if int(m["ts"]) < start
                          else int(m["ts"]) - end)
            when = QLocale().toString(QDate(day.year, day.month, day.day),
                                      QLocale.FormatType.LongFormat)
            self.info.emit(_("No messages on {date}; showing the nearest one.")
                           .format(date=when))
            self.message_shown.emit(room_id, int(nearest["seq"]))

        self._load_around(room_id, {"around_ts": start}, arrived)

    def _load_around(self, room_id: int, anchor: dict[str, Any],
                     done: Callable[[dict[str, Any]], None]) -> None:
        """Replace ``room_id``'s window with the page around ``anchor``
        (``around_seq`` or ``around_ts``), open the room, then ``done(page)``."""
        timeline = self.timeline(room_id)
        timeline.window += 1
        window = timeline.window
        timeline.loading = True

        def loaded(page: dict[str, Any]) -> None:
            if window != timeline.window:
                return
            timeline.loading = False
            messages = page["messages"]
            timeline.load_around(messages, bool(page.get("has_more_before")),
                                 self._more_after(room_id, page, messages))
            self._mark_current_read()
            done(page)

        def failed(error: BaseException) -> None:
            if window == timeline.window:
                timeline.loading = False
            self.error.emit(describe_error(error))

        self._call("msg.history", {"room_id": room_id, **anchor, "limit": AROUND_PAGE_SIZE},
                   loaded, failed)
        self.open_room(room_id)

    def _load_members(self, room_id: int) -> None:
        def loaded(members: list[dict[str, Any]]) -> None:
            if self.current_room != room_id:
                return
            for member in members:
                username = str(member["username"])
                self.presence[username] = normalise(member.get("presence"))
                self.display_names[username] = str(member.get("display_name") or username)
                if "avatar_file_id" in member:  # servers before it made the client ask
                    self.avatars.learn(member)
            self.members.reset_members(room_id, members)
            self._names_changed()
            # A room over the server's limit carries no presence events: its
            # members' presence is only as fresh as the last room.members.
            if len(members) > self._presence_room_limit():
                self.members_timer.start()
            else:
                self.members_timer.stop()

        self._call_all("room.members", "members", {"room_id": room_id, "limit": 500}, loaded,
                       lambda _e: None)

    def _presence_room_limit(self) -> float:
        """The server's ``presence_room_limit`` (infinite for a server that has none)."""
        hello = self.session.hello_result if self.session is not None else None
        limit = (hello or {}).get("presence_room_limit")
        return float(limit) if isinstance(limit, int) and limit > 0 else float("inf")

    def _refresh_members(self) -> None:
        if self.current_room is None or self.session is None or not self.session.connected:
            return  # loaded again on reconnect and when a room is opened
        self._load_members(self.current_room)

    def set_window_active(self, active: bool) -> None:
        """The main window gained or lost focus (read marks and notifications depend on it)."""
        self.window_active = active
        if active:
            self._mark_current_read()

    def _mark_current_read(self) -> None:
        room_id = self.current_room
        if room_id is None or not self.window_active or self.session is None:
            return
        if not self.session.connected:
            return  # done again after the reconnect
        entry = self.rooms.room(room_id)
        timeline = self.timelines.get(room_id)
        newest = max(entry.last_seq if entry else 0, timeline.newest_seq if timeline else 0)
        if entry is not None and newest > entry.read_seq:
            self.rooms.mark_read(room_id, newest)
            self._call("msg.read", {"room_id": room_id, "seq": newest}, None, lambda _e: None)

    def create_room(self, name: str, topic: str, public: bool) -> None:
        """``room.create``; opens the room when made."""
        args = {"name": name, "topic": topic, "visibility": "public" if public else "private"}
        self._call("room.create", args, self._entered)

    def join_room(self, room_id: int) -> None:
        """``room.join`` (a public room from the directory); opens it."""
        self._join(room_id)

    def open_direct(self, username: str) -> None:
        """``dm.open``: the direct conversation with ``username``; opens it."""
        existing = self.rooms.direct_room_with(username)
        if existing is not None:
            self.open_room(existing.room_id)
            return
        self._call("dm.open", {"username": username}, self._entered)

    def accept_invite(self, room_id: int) -> None:
        """Accept an invitation (``room.join``); opens the room. An invitation that
        has expired meanwhile is taken off the list, with a word why."""
        def failed(error: BaseException) -> None:
            if isinstance(error, ChatError) and error.code is ErrorCode.NOT_FOUND:
                self.invites.remove_invite(room_id)
                self.error.emit(_("That invitation has expired, or its room is gone."))
            else:
                self.error.emit(describe_error(error))

        self._join(room_id, failed)

    def decline_invite(self, room_id: int) -> None:
        """Decline an invitation (``room.decline``); the inviter is not told."""
        def failed(error: BaseException) -> None:
            if isinstance(error, ChatError) and error.code is ErrorCode.NOT_FOUND:
                self.invites.remove_invite(room_id)  # expired: gone either way
            else:
                self.error.emit(describe_error(error))

        self._call("room.decline", {"room_id": room_id},
                   lambda _r: self.invites.remove_invite(room_id), failed)

    def _join(self, room_id: int, on_failure: Callable[[BaseException], None] | None = None
              ) -> None:
        """``room.join``, then open the room. While it runs, the ``room.member
        {joined}`` event of our own join is not taken for a join elsewhere."""
        self._joining.add(room_id)

        def done(result: Any) -> Any:
            self._joining.discard(room_id)
            return result

        self._call("room.join", {"room_id": room_id}, self._entered,
                   on_failure).addBoth(done)

    def _entered(self, room: dict[str, Any]) -> None:
        room_id = int(room["room_id"])
        self.invites.remove_invite(room_id)
        room = dict(room)
        new = self.rooms.room(room_id) is None
        if new:
            room.setdefault("role", "owner" if room.get("owner") == self.me else "member")
        self.rooms.upsert_room(room)
        if new and room.get("kind") == "direct":
            self._learn_peer(room_id)
        self.open_room(room_id)

    def leave_room(self, room_id: int) -> None:
        """``room.leave``."""
        self._call("room.leave", {"room_id": room_id}, lambda _r: self._room_gone(room_id))

    def invite(self, room_id: int, username: str) -> None:
        """``room.invite`` (owners and moderators)."""
        self._call("room.invite", {"room_id": room_id, "username": username},
                   lambda _r: self.info.emit(_("Invited {user}.").format(user=username)))

    def kick(self, room_id: int, username: str) -> None:
        """``room.kick`` (owners and moderators)."""
        self._call("room.kick", {"room_id": room_id, "username": username})

    def load_directory(self, query: str = "") -> None:
        """``room.directory``; answers with :attr:`directory_loaded`."""
        self._call("room.directory", {"query": query} if query else {},
                   lambda r: self.directory_loaded.emit(list(r.get("rooms", []))))

    def search_users(self, query: str) -> None:
        """``user.search``; answers with :attr:`users_found` (without oneself)."""
        def found(result: dict[str, Any]) -> None:
            self.users_found.emit([u for u in result.get("users", [])
                                   if u.get("username") != self.me])

        self._call("user.search", {"query": query, "limit": 50}, found)

    # -- contacts (docs/protocol.md 4) ---------------------------------------------------------

    def load_contacts(self) -> None:
        """``contact.list``, every page, into :attr:`contacts`, :attr:`incoming`
        and :attr:`outgoing`; then :attr:`contacts_changed`."""
        contacts: dict[str, dict[str, Any]] = {}
        incoming: list[str] = []
        outgoing: list[str] = []

        def page(result: dict[str, Any]) -> None:
            for profile in result.get("contacts") or []:
                contacts[str(profile["username"])] = dict(profile)
            incoming.extend(str(u) for u in result.get("incoming") or [])
            outgoing.extend(str(u) for u in result.get("outgoing") or [])
            cursor = result.get("next_cursor")
            if cursor:
                self._call("contact.list", {"cursor": cursor, "limit": 200}, page)
                return
            self.contacts = contacts
            self.incoming = {u: self.incoming.get(u, "") for u in incoming}
            self.outgoing = set(outgoing)
            for username, profile in contacts.items():
                self.presence[username] = normalise(profile.get("presence"))
                self.avatars.learn(profile)
                self.display_names[username] = str(profile.get("display_name") or username)
            self._names_changed()
            self.contacts_changed.emit()

        def blocked(names: list[Any]) -> None:
            self.blocked = {str(n) for n in names}
            self.contacts_changed.emit()

        self._call("contact.list", {"limit": 200}, page)
        self._call_all("contact.blocks", "blocked", {"limit": 200}, blocked, lambda _e: None)

    def request_contact(self, username: str, message: str = "") -> None:
        """``contact.request`` (with an optional message)."""
        args: dict[str, Any] = {"username": username}
        if message:
            args["message"] = message

        def sent(_result: Any) -> None:
            if username not in self.contacts:
                self.outgoing.add(username)
            self.contacts_changed.emit()
            self.info.emit(_("Contact request sent to {user}.").format(user=f"@{username}"))

        self._call("contact.request", args, sent)

    def respond_contact(self, username: str, accept: bool) -> None:
        """``contact.respond``: accept or decline ``username``'s request."""
        def answered(_result: Any) -> None:
            self.incoming.pop(username, None)
            self.contacts_changed.emit()

        def failed(error: BaseException) -> None:
            if isinstance(error, ChatError) and error.code is ErrorCode.NOT_FOUND:
                answered(None)
                self.error.emit(_("That request has expired or was withdrawn."))
            else:
                self.error.emit(describe_error(error))

        self._call("contact.respond", {"username": username, "accept": accept}, answered,
                   failed)

    def remove_contact(self, username: str) -> None:
        """``contact.remove`` (also withdraws a request of ours)."""
        self._call("contact.remove", {"username": username},
                   lambda _r: self._contact_gone(username))

    def block_user(self, username: str, on: bool = True) -> None:
        """``contact.block``: block ``username`` (ending the contact and any
        request; their messages are hidden), or with ``on=False`` unblock them."""
        def answered(_result: Any) -> None:
            self._blocked_changed(username, on)
            self.info.emit((_("{user} is blocked.") if on else _("{user} is no longer blocked."))
                           .format(user=f"@{username}"))

        self._call("contact.block", {"username": username, "on": on}, answered)

    def unblock_user(self, username: str) -> None:
        """``contact.block {on: false}``: their messages show again."""
        self.block_user(username, on=False)

    def _blocked_changed(self, username: str, on: bool) -> None:
        """Blocked (here or on another device): the server leaves the user's
        messages out of history and events from now on, so the loaded ones go
        too; unblocked, the open timelines are asked again to show them."""
        if on:
            self._contact_gone(username)
            for timeline in self.timelines.values():
                timeline.hide_sender(username)
        if (username in self.blocked) == on:
            return
        if on:
            self.blocked.add(username)
        else:
            self.blocked.discard(username)
            for timeline in self.timelines.values():
                if timeline.loaded and not timeline.loading:
                    timeline.forget_window()
                    self._load_latest(timeline)
        self.contacts_changed.emit()

    def load_profile(self, username: str) -> None:
        """``user.get``; answers with :attr:`profile_loaded`."""
        def loaded(profile: dict[str, Any]) -> None:
            self.avatars.learn(profile)
            self.profile_loaded.emit(dict(profile))

        self._call("user.get", {"username": username}, loaded)

    def _ask_avatar(self, username: str) -> None:
        """A view draws ``username`` without knowing their picture: ``user.get``.
        Someone who no longer exists has none; any other failure is asked about
        again after a reconnect (:meth:`AvatarCache.refresh`)."""
        def failed(error: BaseException) -> None:
            if isinstance(error, ChatError) and error.code is ErrorCode.NOT_FOUND:
                self.avatars.set_avatar(username, "")

        if self.session is not None:
            self._call("user.get", {"username": username}, self.avatars.learn, failed)

    def _contact_gone(self, username: str) -> None:
        self.feed.posts.remove_author(username)
        self.contacts.pop(username, None)
        self.incoming.pop(username, None)
        self.outgoing.discard(username)
        self.contacts_changed.emit()

    def _on_contact_request(self, data: dict[str, Any]) -> None:
        username = str(data.get("from", ""))
        self.incoming[username] = str(data.get("message") or "")
        self.contacts_changed.emit()
        self.info.emit(_("{user} asks to be your contact.").format(user=f"@{username}"))

    def _on_contact_added(self, data: dict[str, Any]) -> None:
        profile = dict(data.get("profile") or {})
        username = str(profile.get("username", ""))
        self.contacts[username] = profile
        self.avatars.learn(profile)
        self.incoming.pop(username, None)
        self.outgoing.discard(username)
        self.presence[username] = normalise(profile.get("presence"))
        self.display_names[username] = str(profile.get("display_name") or username)
        self.rooms.set_presence(username, self.presence[username])
        self.members.set_presence(username, self.presence[username])
        self.contacts_changed.emit()
        self.feed.refresh_if_loaded()  # a new contact's posts

    def _on_contact_removed(self, data: dict[str, Any]) -> None:
        self._contact_gone(str(data.get("username", "")))

    def _on_contact_blocked(self, data: dict[str, Any]) -> None:
        self._blocked_changed(str(data.get("username", "")), bool(data.get("on")))

    def room_label(self, room_id: int) -> str:
        """How a room is named in lists of messages: "# name" for a group room,
        the other person's name for a direct one ("?" for a room not in the list)."""
        entry = self.rooms.room(room_id)
        if entry is None:
            return "?"
        return entry.label if entry.is_direct else f"# {entry.label}"

    # -- search (docs/protocol.md 6, msg.search) ---------------------------------------------

    def search(self, query: str, room_id: int | None = None, sort: str = RELEVANCE) -> None:
        """``msg.search``: the first page of messages matching ``query``, in
        ``room_id`` or (None) in all the account's rooms, into
        :attr:`search_results` (best first, or newest first with ``recent``).
        An empty query just clears the results."""
        query = " ".join(query.split())
        generation = self.search_results.begin(query, room_id, sort)
        if query:
            self._search_page(generation, None)

    def search_more(self) -> None:
        """The next page of the current search (the list was scrolled to its end,
        or "More" was clicked); nothing if there is none or one is on its way."""
        results = self.search_results
        if results.loading or not results.has_more or results.next_cursor is None:
            return
        results.loading = True
        results.state_changed.emit()
        self._search_page(results.generation, results.next_cursor)

    def _search_page(self, generation: int, cursor: str | None) -> None:
        results = self.search_results
        args: dict[str, Any] = {"query": results.query, "limit": SEARCH_PAGE_SIZE,
                                "sort": results.order}
        if results.room_id is not None:
            args["room_id"] = results.room_id
        if cursor is not None:
            args["cursor"] = cursor
        def answered(page: dict[str, Any]) -> None:
            results.add_page(generation, page)

        self._call("msg.search", args, answered,
                   lambda error: results.fail(generation, describe_error(error)))

    def can_manage(self, room_id: int) -> bool:
        """Whether the user may invite and kick in ``room_id`` (owner or moderator)."""
        entry = self.rooms.room(room_id)
        return entry is not None and not entry.is_direct and entry.role in ("owner", "moderator")

    def _room_gone(self, room_id: int) -> None:
        self.rooms.remove_room(room_id)
        self.timelines.pop(room_id, None)
        self._typing.pop(room_id, None)
        if self.current_room == room_id:
            self.current_room = None
            self.members.reset_members(None, [])
            self.room_opened.emit(-1)

    # -- messages ------------------------------------------------------------------------------

    def send(self, text: str, reply_to: int | None = None,
             ttl: int | None = None) -> str | None:
        """Send ``text`` to the current room; it shows at once as pending, and
        survives reconnects (the library re-sends it with the same id). With
        ``ttl`` (seconds) it is burnt after reading: erased that long after it
        is stored (docs/protocol.md 6, ``msg.expired``).

        Returns:
            the message's ``client_msg_id``, or None if nothing was sent.
        """
        body = text.strip()
        room_id = self.current_room
        if not body or room_id is None or self.session is None:
            return None
        client_msg_id = uuid.uuid4().hex
        timeline = self.timeline(room_id)
        if timeline.has_newer:
            # Sent from a window in the middle of the history (a search result, a
            # date): the message appears at the newest end, so show that end.
            timeline.forget_window()
            self._load_latest(timeline)
        timeline.add_pending(client_msg_id, body, int(self.reactor.seconds() * 1000), reply_to,
                             ttl=ttl)
        self._stop_typing(room_id)
        members = set(self.members.usernames()) if self.members.room_id == room_id else set()
        mentions = sorted({word[1:].rstrip(".,:;!?") for word in body.split()
                           if word.startswith("@")} & members) or None

        def acknowledged(ack: dict[str, Any]) -> None:
            timeline.acknowledge(client_msg_id, int(ack["msg_id"]), int(ack["seq"]),
                                 int(ack["ts"]))

        def refused(error: BaseException) -> None:
            timeline.mark_failed(client_msg_id)
            self.error.emit(_("Message not sent: {reason}").format(reason=describe_error(error)))

        self.run(self.session.send_message(room_id, body, reply_to=reply_to, mentions=mentions,
                                           ttl=ttl, client_msg_id=client_msg_id),
                 acknowledged, refused)
        return client_msg_id

    # -- personal export (chatnet.client.export) ------------------------------------------------

    def export_conversations(self, first: date, last: date, name: str) -> bool:
        """Export every conversation's messages from ``first`` to ``last`` (local
        days, both included) to ``name``.jsonl and ``name``.txt (or ``name (n)``:
        no file is replaced), waiting out rate limits. Progress comes as
        :attr:`export_progress`, the end as :attr:`export_finished` with a
        sentence in :attr:`info` or :attr:`error`.

        Returns:
            False if it could not start (not signed in, or an export runs).
        """
        session = self.session
        if session is None or self.export is not None:
            return False
        ask = Patient(self.reactor, session.call)
        work = Deferred.fromCoroutine(export_to_files(
            ask, self.me, others_of(self.rooms.rooms()), first, last, Path(name),
            self.export_progress.emit))
        self.export = work

        def written(result: ExportResult) -> None:
            self.export = None
            self.info.emit(ngettext(
                "Exported {n} message from {rooms} conversations to {jsonl} and {text}.",
                "Exported {n} messages from {rooms} conversations to {jsonl} and {text}.",
                result.messages).format(n=result.messages, rooms=result.rooms,
                                        jsonl=result.jsonl, text=result.text))
            self.export_finished.emit(True)

        def failed(failure: Failure) -> None:
            self.export = None
            error = failure.value
            if isinstance(error, CancelledError):
                self.info.emit(_("Export cancelled; nothing was kept."))
            elif isinstance(error, OSError):
                self.error.emit(_("Cannot write the export: {reason}").format(
                    reason=error.strerror or str(error)))
            else:
                if not isinstance(error, ChatError):
                    self.log.failure("export failed", failure)
                self.error.emit(_("Export failed: {reason}").format(
                    reason=describe_error(error if isinstance(error, BaseException)
                                          else Exception(error))))
            self.export_finished.emit(False)

        work.addCallbacks(written, failed)
        return True

    def cancel_export(self) -> None:
        """Stop the export running; the files it began are removed."""
        if self.export is not None:
            self.export.cancel()

    # -- files -------------------------------------------------------------------------------

    def attach_files(self, room_id: int, paths: list[str]) -> None:
        """Upload files (dropped, or chosen with the attach button) and send each
        to ``room_id`` as a message once stored. Folders and anything that is not
        a readable file are refused with a message in the status bar."""
        if self.session is None or (room_id != FEED_UPLOADS
                                    and self.rooms.room(room_id) is None):
            return
        for raw in paths:
            path = Path(raw)
            if path.is_dir():
                self.error.emit(_("“{name}” is a folder. Folders cannot be sent; "
                                  "drop or choose the files in it instead.")
                                .format(name=path.name or raw))
            elif not path.is_file():
                self.error.emit(_("“{name}” is not a file that can be sent.")
                                .format(name=path.name or raw))
            elif self.files.uploading(room_id, path.resolve()):
                self.info.emit(_("“{name}” is already being sent.").format(name=path.name))
            else:
                try:
                    self.files.upload(room_id, path.resolve())
                except OSError as error:
                    self.error.emit(self.files.explain(error))

    def _send_attachment(self, room_id: int, file: dict[str, Any]) -> None:
        """An upload is stored: send the message that attaches it (pending at
        once, re-sent across reconnects like any other)."""
        session = self.session
        if session is None or room_id == FEED_UPLOADS:
            return  # the feed's: the FeedManager keeps it for the post
        client_msg_id = uuid.uuid4().hex
        timeline = self.timeline(room_id)
        timeline.add_pending(client_msg_id, "", int(self.reactor.seconds() * 1000),
                             attachments=[file])

        def acknowledged(ack: dict[str, Any]) -> None:
            timeline.acknowledge(client_msg_id, int(ack["msg_id"]), int(ack["seq"]),
                                 int(ack["ts"]))

        def refused(error: BaseException) -> None:
            timeline.mark_failed(client_msg_id)
            self.error.emit(_("Message not sent: {reason}").format(reason=describe_error(error)))

        self.run(session.send_message(room_id, "", attachments=[file["file_id"]],
                                      client_msg_id=client_msg_id), acknowledged, refused)

    def download_export(self, file_id: str, name: str, dest: Path, size: int) -> int:
        """Download the file of an ``admin.export`` to ``dest`` through the
        account's downloads; returns the transfer id (its state is in
        ``files.transfers``)."""
        return self.files.download(file_id, name, dest, "application/x-ndjson", size)

    def download_file(self, file_id: str, name: str, dest: str, mime: str = "",
                      size: int = 0) -> None:
        """Download an attachment to ``dest`` (chosen by the user)."""
        if self.session is not None:
            self.files.download(file_id, name, Path(dest), mime, size)

    def cancel_transfer(self, transfer_id: int) -> None:
        """Stop an upload or download (Retry resumes it)."""
        self.files.cancel(transfer_id)

    def retry_transfer(self, transfer_id: int) -> None:
        """Start a failed or cancelled transfer again, from where it stopped."""
        self.files.retry(transfer_id)

    def dismiss_transfer(self, transfer_id: int) -> None:
        """Remove a transfer from the strip (cancelling it if it runs)."""
        self.files.dismiss(transfer_id)

    def want_thumbnail(self, file_id: str, mime: str, size: int) -> None:
        """An image attachment is on screen: fetch and scale its preview once."""
        if self.session is not None:
            self.files.want_thumbnail(file_id, mime, size)

    def edit(self, room_id: int, msg_id: int, body: str) -> None:
        """``msg.edit`` of one's own message."""
        if body.strip():
            self._call("msg.edit", {"room_id": room_id, "msg_id": msg_id, "body": body.strip()})

    def delete(self, room_id: int, msg_id: int) -> None:
        """``msg.delete``."""
        self._call("msg.delete", {"room_id": room_id, "msg_id": msg_id})

    def react(self, room_id: int, msg_id: int, emoji: str, on: bool) -> None:
        """``msg.react``: add (``on``) or remove a reaction; a cap reached
        (docs/protocol.md 6) is explained in words rather than as a conflict."""
        self._call("msg.react", {"room_id": room_id, "msg_id": msg_id, "emoji": emoji, "on": on},
                   None, lambda error: self.error.emit(describe_reaction_error(error)))

    def composer_changed(self, text: str) -> None:
        """The composer's text changed: tell the room the user is typing, at most
        every few seconds, and that they stopped when the text is cleared."""
        room_id = self.current_room
        if room_id is None or self.session is None:
            return
        now = self.reactor.seconds()
        if text.strip():
            if now - self._typing_sent.get(room_id, -TYPING_EVERY) >= TYPING_EVERY:
                self._typing_sent[room_id] = now
                self.session.typing(room_id, True)
        else:
            self._stop_typing(room_id)

    def _stop_typing(self, room_id: int) -> None:
        if self._typing_sent.pop(room_id, None) is not None and self.session is not None:
            self.session.typing(room_id, False)

    def typing_in(self, room_id: int) -> list[str]:
        """Display names of the people typing in ``room_id`` now, sorted."""
        now = self.reactor.seconds()
        people = self._typing.get(room_id, {})
        return sorted(self.display_names.get(user, user)
                      for user, until in people.items() if until > now)

    def _expire_typing(self) -> None:
        now = self.reactor.seconds()
        for room_id, people in list(self._typing.items()):
            stale = [user for user, until in people.items() if until <= now]
            for user in stale:
                del people[user]
            if stale:
                self.typing_changed.emit(room_id)

    # -- presence ------------------------------------------------------------------------------

    def set_presence(self, state: str, automatic: bool = False) -> None:
        """``presence.set``: the user's (or the idle timer's, ``automatic``) choice."""
        self.auto_away = automatic and state == "away"
        if state == self.own_presence:
            return
        self.own_presence = state
        self.own_presence_changed.emit(state)
        self._call("presence.set", {"state": state})

    def set_status_text(self, text: str) -> None:
        """``user.update {status_text}``."""
        self.status_text = text
        self._call("user.update", {"status_text": text})

    def user_idle(self) -> None:
        """No input for the idle time: turn ``online`` into ``away`` (nothing else)."""
        if self.own_presence == "online" and self.session is not None:
            self.set_presence("away", automatic=True)

    def user_active(self) -> None:
        """Input again after :meth:`user_idle`: back to ``online``."""
        if self.auto_away and self.own_presence == "away":
            self.set_presence("online")

    def _own_profile(self, profile: dict[str, Any]) -> None:
        self.status_text = str(profile.get("status_text") or "")
        self.display_names[self.me] = str(profile.get("display_name") or self.me)
        self.avatars.learn(profile)
        self.own_profile_changed.emit()

    def update_profile(self, display_name: str | None = None, status_text: str | None = None,
                       picture: str | None = None, remove_picture: bool = False) -> None:
        """Change the user's own profile (docs/protocol.md 4): the picture first
        (``picture``, a local image file: uploaded with ``purpose: avatar``, then
        ``user.update {avatar_file_id}``; or ``remove_picture``: ``""``), then the
        display name and status text (None: unchanged). A refused picture changes
        nothing. Answers with :attr:`profile_saved`: "" or the reason, in which
        the server's own sentence says what was wrong with the picture."""
        session = self.session
        if session is None:
            self.profile_saved.emit(describe_error(ConnectionClosed()))
            return
        changes: dict[str, Any] = {}
        if display_name is not None:
            changes["display_name"] = display_name
        if status_text is not None:
            changes["status_text"] = status_text
        if remove_picture and not picture:
            changes["avatar_file_id"] = ""

        async def save() -> dict[str, Any] | None:
            profile = None
            if picture:
                profile = await upload_avatar(session, Path(picture))
            if changes:
                profile = await session.call("user.update", changes)
            return profile

        def saved(profile: dict[str, Any] | None) -> None:
            if profile is not None:
                self._own_profile(profile)
            self.profile_saved.emit("")

        def refused(error: BaseException) -> None:
            details = (error.details or {}) if isinstance(error, ChatError) else {}
            if isinstance(error, ChatError) and "max_file_size" in details:
                self.profile_saved.emit(_("The picture is too large: profile pictures may "
                                          "have at most {size}.").format(
                    size=human_size(int(details["max_file_size"]))))
            elif isinstance(error, ChatError) and error.code in (ErrorCode.BAD_REQUEST,
                                                                 ErrorCode.TOO_LARGE):
                self.profile_saved.emit(_("The server refused it: {reason}").format(
                    reason=error.message))
            else:
                self.profile_saved.emit(self.files.explain(error))

        self.run(Deferred.fromCoroutine(save()), saved, refused)

    # -- events from the server ----------------------------------------------------------------

    def _emit_unread(self, *_args: Any) -> None:
        self.unread_changed.emit(self.rooms.total_unread())

    # -- voice calls (PROTOCOL.md 8) --------------------------------------------------------

    def start_call(self, room_id: int) -> None:
        """Ring the room's other members; :attr:`call_changed` once it is placed."""
        if self.calls is not None and self.call is None:
            self.run(Deferred.fromCoroutine(self.calls.start(room_id)), self._joined_call)

    def accept_call(self, call_id: int) -> None:
        """Answer a ringing call (hanging up the current one first is the caller's job)."""
        if self.calls is not None and self.call is None:
            self.run(Deferred.fromCoroutine(self.calls.accept(call_id)), self._joined_call)

    def reject_call(self, call_id: int) -> None:
        """Decline a ringing call."""
        if self.calls is not None:
            self.run(Deferred.fromCoroutine(self.calls.reject(call_id)))

    def hang_up(self) -> None:
        """Leave the current call."""
        if self.call is not None:
            self.run(Deferred.fromCoroutine(self.call.hangup()))

    def call_label(self) -> str:
        """Who the current call is with, as people read it ('' without a call)."""
        call = self.call
        if call is None:
            return ""
        names = sorted(self.display_names.get(n, n) for n in call.participants)
        if names:
            return ", ".join(names)
        entry = self.rooms.room(call.room_id)
        return entry.label if entry is not None else ""

    def set_muted(self, muted: bool) -> None:
        """Stop (or resume) sending the microphone to the call."""
        if self.audio is not None:
            self.audio.muted = muted

    def speaking(self) -> list[str]:
        """Usernames whose audio is loud enough to call it speaking, now."""
        audio = self.audio
        return sorted(n for n, v in audio.levels.items() if v > 0.05) if audio else []

    def _joined_call(self, call: VoiceCall) -> None:
        self.call = call
        self.call_since = time.monotonic() if call.state == "active" else None
        try:
            self.audio = CallAudio(call, self, self.microphone, self.speaker)
        except RuntimeError as exc:  # no PyAV: the call still connects, silent
            self.log.warn("no call audio: {error}", error=str(exc))
            self.audio = None
        self.call_changed.emit()
        if self.session is not None:
            self.run(Deferred.fromCoroutine(self._audio_connection(call)), None,
                     lambda error: self.log.warn("call audio stays on the session's "
                                                 "connection: {error}", error=error))

    async def _audio_connection(self, call: VoiceCall) -> None:
        assert self.session is not None
        connection = await self.session.open_side_connection()
        if self.call is not call:  # the call ended meanwhile
            await connection.close()
            return
        await call.attach(connection)
        self.audio_connection = connection

    def _stop_audio(self) -> None:
        if self.audio is not None:
            self.audio.stop()
            self.audio = None
        connection, self.audio_connection = self.audio_connection, None
        if connection is not None and not connection.lost.called:
            connection.close()

    def _on_call_event(self, event: Event) -> None:
        data = event.data
        call_id = int(data.get("call_id", 0))
        if event.name == "call.ring":
            self.call_ringing.emit(call_id, int(data["room_id"]), str(data["from"]))
            return
        mine = self.call is not None and self.call.call_id == call_id
        if event.name == "call.ended":
            self.ring_stopped.emit(call_id)
            if mine:
                self._stop_audio()
                self.call = self.call_since = None
                self.call_ended.emit(str(data.get("reason", "hangup")))
        elif event.name == "call.accepted" and not mine and data.get("username") == self.me:
            self.ring_stopped.emit(call_id)  # answered on another device
        elif mine:
            if self.call is not None and self.call.state == "active" and self.call_since is None:
                self.call_since = time.monotonic()
            self.call_changed.emit()

    def _on_event(self, event: Event) -> None:
        handler = self._handlers.get(event.name)
        if handler is not None:
            handler(self, event.data)
        elif event.name.startswith("feed."):
            self.feed.on_event(event.name, event.data)

    def _on_msg(self, data: dict[str, Any]) -> None:
        message = data.get("message") or {}
        room_id, sender = int(message["room_id"]), str(message.get("sender", ""))
        if sender in self.blocked:
            return  # the server no longer sends them; one already on its way
        if self.rooms.room(room_id) is None:
            self._refresh_rooms()
        timeline = self.timelines.get(room_id)
        if timeline is not None and timeline.loaded:
            timeline.add_message(message)
        seen = room_id == self.current_room and self.window_active
        self.rooms.note_message(room_id, int(message["seq"]), int(message.get("ts", 0)),
                                unread=not seen and sender != self.me)
        if self._typing.get(room_id, {}).pop(sender, None) is not None:
            self.typing_changed.emit(room_id)
        if seen:
            self._mark_current_read()
        elif sender != self.me:
            entry = self.rooms.room(room_id)
            body = str(message.get("body", "")) or "  ".join(
                f"📎 {a.get('name', '')}" for a in message.get("attachments") or [])
            mentioned = self.me in (message.get("mentions") or []) or f"@{self.me}" in body
            if entry is not None and (entry.is_direct or mentioned):
                name = self.display_names.get(sender, sender)
                body = action_text(body, name) or body  # "* bob waves", not "/me waves"
                title = name if entry.is_direct else _("{user} in {room}").format(
                    user=name, room=entry.label)
                self.notify.emit(title, body, room_id)

    def _names_changed(self) -> None:
        for timeline in self.timelines.values():
            timeline.names_changed()
        self.feed.posts.names_changed()
        self.search_results.names_changed()

    def _refresh_rooms(self) -> None:
        """Add the rooms the list lacks (every page of ``room.list``)."""
        def listed(rooms: list[dict[str, Any]]) -> None:
            for room in rooms:
                if self.rooms.room(int(room["room_id"])) is None:
                    self.rooms.upsert_room(room)
                    self.invites.remove_invite(int(room["room_id"]))
                    if room.get("kind") == "direct":
                        self._learn_peer(int(room["room_id"]))

        self._call_all("room.list", "rooms", None, listed, lambda _e: None)

    def _on_edited(self, data: dict[str, Any]) -> None:
        timeline = self.timelines.get(int(data["room_id"]))
        if timeline is not None:
            timeline.apply_edit(int(data["msg_id"]), str(data.get("body", "")),
                                int(data.get("edited_ts") or 0))

    def _on_updated(self, data: dict[str, Any]) -> None:
        message = data.get("message") or {}
        timeline = self.timelines.get(int(message.get("room_id", 0)))
        if timeline is not None:
            timeline.apply_update(message)

    def _on_deleted(self, data: dict[str, Any]) -> None:
        timeline = self.timelines.get(int(data["room_id"]))
        if timeline is not None:
            timeline.remove_message(int(data["msg_id"]))

    def _on_reaction(self, data: dict[str, Any]) -> None:
        timeline = self.timelines.get(int(data["room_id"]))
        if timeline is not None:
            timeline.apply_reaction(int(data["msg_id"]), str(data["emoji"]),
                                    str(data["username"]), bool(data.get("on")))

    def _on_typing(self, data: dict[str, Any]) -> None:
        room_id, username = int(data["room_id"]), str(data["username"])
        people = self._typing.setdefault(room_id, {})
        if data.get("typing"):
            people[username] = self.reactor.seconds() + TYPING_STALE
        else:
            people.pop(username, None)
        self.typing_changed.emit(room_id)

    def _on_presence(self, data: dict[str, Any]) -> None:
        username, state = str(data["username"]), normalise(data.get("state"))
        self.presence[username] = state
        self.rooms.set_presence(username, state)
        self.members.set_presence(username, state)
        contact = self.contacts.get(username)
        if contact is not None:
            contact["presence"] = state
            if "last_seen" in data:
                contact["last_seen"] = data["last_seen"]
            self.contacts_changed.emit()

    def _on_user_updated(self, data: dict[str, Any]) -> None:
        profile = data.get("profile") or {}
        username = str(profile.get("username", ""))
        name = str(profile.get("display_name") or username)
        self.display_names[username] = name
        self.rooms.set_display_name(username, name)
        self.members.set_display_name(username, name)
        self._names_changed()
        self.avatars.learn(profile)
        if username == self.me:
            self.status_text = str(profile.get("status_text") or "")
            self.own_profile_changed.emit()
        if username in self.contacts:
            self.contacts[username].update(profile)
            self.contacts_changed.emit()

    def _on_invited(self, data: dict[str, Any]) -> None:
        room = data.get("room") or {}
        room_id = int(room["room_id"])
        if self.rooms.room(room_id) is not None:
            return
        if room.get("kind") == "direct":
            # Someone opened a direct conversation: the user is in it already.
            self.rooms.upsert_room(room)
            self._learn_peer(room_id)
            return
        self.invites.add_invite({"room": room, "by": data.get("by", ""),
                                 "ts": int(self.reactor.seconds() * 1000)})
        self.info.emit(_("{user} invited you to {room}.").format(
            user=f"@{data.get('by', '?')}", room=room.get("name", "")))

    def _on_declined(self, data: dict[str, Any]) -> None:
        self.invites.remove_invite(int(data["room_id"]))

    def _on_member(self, data: dict[str, Any]) -> None:
        room_id, username = int(data["room_id"]), str(data["username"])
        change = data.get("change")
        if username == self.me and change == "joined" and self.rooms.room(room_id) is None:
            self.invites.remove_invite(room_id)
            if room_id not in self._joining:
                # Joined on another device: the session turned a known invitation
                # into a room; for any other room, ask the list.
                room = self.session.rooms.get(room_id) if self.session is not None else None
                if room is not None:
                    self.rooms.upsert_room(room)
                else:
                    self._refresh_rooms()
            return
        if username == self.me and change in ("left", "kicked"):
            entry = self.rooms.room(room_id)
            self._room_gone(room_id)
            if change == "kicked" and entry is not None:
                self.info.emit(_("You were removed from {room}.").format(room=entry.label))
            return
        if change == "joined":
            self.rooms.add_members(room_id, 1)
        elif change in ("left", "kicked"):
            self.rooms.add_members(room_id, -1)
        elif change == "role" and username == self.me:
            self.rooms.set_role(room_id, str(data.get("role", "member")))
        if self.members.room_id != room_id:
            return
        if change == "joined":
            self.members.add_member(username, presence=self.presence.get(username, "online"),
                                    display_name=self.display_names.get(username, ""))
        elif change in ("left", "kicked"):
            self.members.remove_member(username)
        elif change == "role":
            self.members.set_role(username, str(data.get("role", "member")))

    def _on_room_updated(self, data: dict[str, Any]) -> None:
        room = data.get("room") or {}
        if self.rooms.room(int(room["room_id"])) is not None:
            self.rooms.upsert_room(room)

    def _on_room_deleted(self, data: dict[str, Any]) -> None:
        self.invites.remove_invite(int(data["room_id"]))
        self._room_gone(int(data["room_id"]))

    def _on_system(self, data: dict[str, Any]) -> None:
        body = str(data.get("body", ""))
        self.announcement.emit(body, str(data.get("by") or ""), int(data.get("ts") or 0))
        self.info.emit(body)
        self.notify.emit(_("Announcement"), body, -1)

    def _on_monitor(self, data: dict[str, Any]) -> None:
        message = data.get("message")
        if isinstance(message, dict):
            self.monitor_message.emit(message)

    def _on_export_progress(self, data: dict[str, Any]) -> None:
        self.admin_export_progress.emit(dict(data))

    # -- administration (docs/protocol.md 9) ---------------------------------------------------

    @property
    def can_administer(self) -> bool:
        """Whether the Administration window is offered (``admin`` or ``auditor``)."""
        return bool(self.roles & {"admin", "auditor"})

    @property
    def is_admin(self) -> bool:
        """Whether the write actions of the Administration window are offered."""
        return "admin" in self.roles

    def admin_room_members(self, room_id: int,
                           on_success: Callable[[list[dict[str, Any]]], None],
                           on_failure: Callable[[BaseException], None]) -> bool:
        """Every member of ``room_id`` (``room.members``, all pages) for the
        Administration window, if the account is a member (the server shows
        members to members only).

        Returns:
            False, asking nothing, for a room the account is not in.
        """
        if self.session is None or self.rooms.room(room_id) is None:
            return False
        self._call_all("room.members", "members", {"room_id": room_id, "limit": 500},
                       on_success, on_failure)
        return True

    def admin(self, op: str, args: dict[str, Any] | None = None,
              on_success: Callable[[Any], None] | None = None,
              on_failure: Callable[[BaseException], None] | None = None) -> Deferred[Any]:
        """One ``admin.*`` request for the Administration window."""
        if not op.startswith("admin."):
            raise ValueError(op)
        return self._call(op, args, on_success, on_failure)

    _handlers: dict[str, Callable[[ChatController, dict[str, Any]], None]] = {
        "msg": _on_msg,
        "msg.edited": _on_edited,
        "msg.updated": _on_updated,
        "msg.deleted": _on_deleted,
        "msg.expired": _on_deleted,
        "msg.reaction": _on_reaction,
        "typing": _on_typing,
        "presence": _on_presence,
        "contact.request": _on_contact_request,
        "contact.added": _on_contact_added,
        "contact.removed": _on_contact_removed,
        "contact.blocked": _on_contact_blocked,
        "user.updated": _on_user_updated,
        "room.invited": _on_invited,
        "room.declined": _on_declined,
        "room.member": _on_member,
        "room.updated": _on_room_updated,
        "room.deleted": _on_room_deleted,
        "system": _on_system,
        "monitor.msg": _on_monitor,
        "admin.export.progress": _on_export_progress,
    }


def _merger(timeline: TimelineModel) -> Callable[[dict[str, Any]], None]:
    """A callback merging a fresh newest page into ``timeline``."""
    def merge(page: dict[str, Any]) -> None:
        timeline.merge_latest(page["messages"])

    return merge


def _folder_name(text: str) -> str:
    """``text`` made safe as one folder name (no separators, no dots on their own)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip(".")
    return safe or "_"


async def _fail(error: BaseException) -> Any:
    raise error


async def _nothing() -> None:
    return None
