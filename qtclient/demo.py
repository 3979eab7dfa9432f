"""A throwaway chatnet server with people and conversations, for screenshots and benchmarks.

Developer tooling, not part of the client a person runs: it starts a real
server in this process (TLS on loopback, SQLite in a temporary directory) and
fills it through the client library, exactly as people would.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatnet.client.connection import ChatConnection, Patient, connect
from chatnet.config import ServerConfig
from chatnet.server import ChatnetService

#: The password of every demo account.
DEMO_PASSWORD = "demo-password-1"
_ids = itertools.count(1)


@dataclass
class DemoServer:
    """A running demo server and the library connections made to it.

    Attributes:
        service: the server.
        port: its TCP port on 127.0.0.1.
        ca: the CA file clients trust.
        people: username -> a logged-in library connection.
    """

    reactor: Any
    service: ChatnetService
    port: int
    ca: Path
    people: dict[str, ChatConnection] = field(default_factory=dict)

    async def person(self, username: str, display_name: str | None = None) -> ChatConnection:
        """Register ``username`` and keep a logged-in connection for them."""
        conn = await connect(self.reactor, "localhost", self.port, self.ca)
        await conn.register(username, DEMO_PASSWORD, display_name)
        await conn.login(username, DEMO_PASSWORD)
        self.people[username] = conn
        return conn

    async def say(self, username: str, room_id: int, body: str, **extra: Any) -> dict[str, Any]:
        """``msg.send`` as ``username``; returns ``{msg_id, seq, ts}``."""
        args = {"room_id": room_id, "body": body, "client_msg_id": f"demo{next(_ids)}", **extra}
        result: dict[str, Any] = await self.people[username].request("msg.send", args)
        return result

    async def fill(self, username: str, room_id: int, count: int, batch: int = 150,
                   rate: float | None = 50.0) -> None:
        """Send ``count`` numbered messages as ``username``, pipelined in batches
        (below the server's default rate-limit burst of 200), pausing so as to
        stay under ``rate`` requests per second (None: no pause).

        A send answered ``rate_limited`` is sent again after the wait the
        server names (:class:`~chatnet.client.connection.Patient`): besides the
        per-connection rate, which a server can lift, the per-user ``requests``
        budget (100 a second, 500 at once) always applies.
        """
        send = Patient(self.reactor, self.people[username].request)
        for start in range(0, count, batch):
            sends = [Deferred.fromCoroutine(send("msg.send", {
                "room_id": room_id, "client_msg_id": f"fill{next(_ids)}",
                "body": f"Message {n + 1} of {count}: the quick brown fox jumps over the "
                        f"lazy dog{' and keeps running' * (n % 4)}."}))
                for n in range(start, min(count, start + batch))]
            await gatherResults(sends)
            if rate:
                await _sleep(self.reactor, batch / rate)  # let the rate-limit bucket refill

    async def upload(self, username: str, name: str, data: bytes,
                     mime: str | None = None) -> str:
        """Upload ``data`` as ``username`` (PROTOCOL.md 7, chunk by chunk); returns
        the file id, ready to attach to a message."""
        import hashlib

        conn = self.people[username]
        args: dict[str, Any] = {"name": name, "size": len(data),
                                "sha256": hashlib.sha256(data).hexdigest()}
        if mime:
            args["mime"] = mime
        begin = await conn.request("file.upload.begin", args)
        offset, chunk = int(begin["offset"]), int(begin["chunk_size"])
        while offset < len(data):
            piece = data[offset:offset + chunk]
            await conn.request("file.upload.chunk", {"upload_id": begin["upload_id"],
                                                     "offset": offset, "data": piece})
            offset += len(piece)
        done = await conn.request("file.upload.finish", {"upload_id": begin["upload_id"]})
        return str(done["file_id"])

    async def leave(self, username: str) -> None:
        """Close ``username``'s connection (they show as offline)."""
        conn = self.people.pop(username)
        await conn.close()

    async def stop(self) -> None:
        """Close every connection and stop the server."""
        for username in list(self.people):
            await self.leave(username)
        await self.service.stopService()


async def _sleep(reactor: Any, seconds: float) -> None:
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)


async def start_demo_server(reactor: Any, data_dir: Path) -> DemoServer:
    """Start a server on a free loopback port with open registration and cheap
    password hashing (demo accounts only)."""
    config = ServerConfig(port=0, interface="127.0.0.1", data_dir=data_dir,
                          open_registration=True, argon2_time_cost=1, argon2_memory_kib=8,
                          shutdown_grace=1.0)
    service = ChatnetService(config, reactor)
    service.startService()
    port = await service.ready
    ca = service.ca_path or data_dir / "tls" / "ca.pem"
    return DemoServer(reactor, service, port.getHost().port,  # type: ignore[attr-defined]
                      Path(ca))


async def populate_office(demo: DemoServer) -> dict[str, int]:
    """A small team's day: a busy design room, two more rooms with unread
    messages, direct conversations with people online, busy, away and offline,
    and an invitation waiting for alice's answer.

    ``alice`` is the person looking; her account is made but left logged out.

    Returns:
        room name -> room id (``design``, ``general``, ``lunch``, ``dm:bob`` …, and
        ``invite:offsite``: the room alice is invited to).
    """
    people = {"alice": "Alice Chen", "bob": "Bob Martin", "carol": "Carol Diaz",
              "dave": "Dave Kim", "erin": "Erin Walsh", "lei": "李雷"}
    for username, name in people.items():
        await demo.person(username, name)
    bob = demo.people["bob"]
    rooms: dict[str, int] = {}

    async def room_with(owner: str, members: list[str], **args: Any) -> dict[str, Any]:
        # room.create only invites the members; each accepts.
        room: dict[str, Any] = await demo.people[owner].request(
            "room.create", {"visibility": "public", **args, "members": members})
        for username in members:
            await demo.people[username].request("room.join", {"room_id": room["room_id"]})
        return room

    design = await room_with("bob", ["alice", "carol", "dave", "erin", "lei"], name="design",
                             topic="Q3 redesign: screens, icons and copy")
    rooms["design"] = design["room_id"]
    await bob.request("room.set_role", {"room_id": design["room_id"], "username": "carol",
                                        "role": "moderator"})
    d = design["room_id"]
    script = [
        ("bob", "Morning all! The new icon set is in the shared folder."),
        ("carol", "Looks great. The chat bubble one reads well at 16 px too."),
        ("alice", "Agreed. I'd make the unread badge a little larger on dark themes."),
        ("dave", "Can we keep the old colours for one more release? Support asked."),
        ("bob", "Sure — let's ship both palettes behind a setting."),
        ("lei", "中文界面的截图我今天下午发出来。"),
        ("erin", "Reminder: copy review at 15:00.\nAgenda: onboarding, empty states, errors."),
        ("alice", "I'll bring the list of error messages that still show codes."),
    ]
    sent: dict[str, dict[str, Any]] = {}
    for username, body in script:
        sent[body[:12]] = await demo.say(username, d, body)
    await bob.request("msg.edit", {"room_id": d, "msg_id": sent["Sure — let's"]["msg_id"],
                                   "body": "Sure — let's ship both palettes behind a "
                                           "setting, default to the new one."})
    for username, emoji in (("carol", "👍"), ("dave", "👍"), ("alice", "🎉")):
        await demo.people[username].request("msg.react", {
            "room_id": d, "msg_id": sent["Morning all!"]["msg_id"], "emoji": emoji, "on": True})
    # What arrives after alice's last message is unread for her.
    await demo.say("carol", d, "@alice yes please, especially the login ones.",
                   mentions=["alice"], reply_to=sent["I'll bring t"]["msg_id"])
    await demo.say("dave", d, "Thanks! I'll tell support.")
    await demo.people["lei"].request("msg.react", {
        "room_id": d, "msg_id": sent["Reminder: co"]["msg_id"], "emoji": "❤️", "on": True})

    general = await room_with("erin", ["alice", "bob", "carol"], name="general")
    rooms["general"] = general["room_id"]
    for text in ("The office is closed on Friday.", "Coffee machine fixed ☕",
                 "New starters this week: say hi to Lei!", "Parking permits renewed.",
                 "Fire drill at 11:00 tomorrow."):
        await demo.say("erin", general["room_id"], text)
    lunch = await room_with("dave", ["alice", "bob"], name="lunch")
    rooms["lunch"] = lunch["room_id"]
    await demo.say("dave", lunch["room_id"], "Noodles at 12:30?")
    await demo.say("bob", lunch["room_id"], "In!")
    for username, text in (("bob", "Got a minute for the palette question?"),
                           ("carol", "Sent you the copy doc."),
                           ("dave", "Out this afternoon, back tomorrow.")):
        room = await demo.people[username].request("dm.open", {"username": "alice"})
        rooms[f"dm:{username}"] = room["room_id"]
        await demo.say(username, room["room_id"], text)
    offsite = await demo.people["erin"].request("room.create", {
        "name": "offsite", "topic": "Planning the October offsite", "visibility": "private",
        "members": ["alice", "bob"]})
    rooms["invite:offsite"] = offsite["room_id"]
    await bob.request("room.join", {"room_id": offsite["room_id"]})
    await bob.request("presence.set", {"state": "busy"})
    await demo.people["carol"].request("presence.set", {"state": "away"})
    await demo.leave("dave")
    await demo.leave("alice")
    return rooms


async def populate_community(demo: DemoServer) -> dict[str, int]:
    """A second server for the several-accounts picture: an open-source
    project's chat, where ``alice`` has a few unread messages and a direct one.

    Returns:
        room name -> room id (``releases``, ``help``, ``dm:sam``).
    """
    for username, name in (("alice", "Alice Chen"), ("sam", "Sam Okafor"),
                           ("noor", "Noor Haddad"), ("tomas", "Tomás Silva")):
        await demo.person(username, name)
    rooms: dict[str, int] = {}
    for owner, name, topic in (("sam", "releases", "What ships when"),
                               ("noor", "help", "Questions from users")):
        room = await demo.people[owner].request("room.create", {
            "name": name, "topic": topic, "visibility": "public",
            "members": ["alice", "noor", "sam", "tomas"]})
        rooms[name] = room["room_id"]
        for username in ("alice", "noor", "sam", "tomas"):
            if username != owner:
                await demo.people[username].request("room.join", {"room_id": room["room_id"]})
    await demo.say("sam", rooms["releases"], "2.4.0 is tagged; wheels are building.")
    await demo.say("tomas", rooms["help"], "Is there a way to keep logs for a week only?")
    await demo.say("noor", rooms["help"], "Yes: log_retention_days = 7 in the config.")
    dm = await demo.people["sam"].request("dm.open", {"username": "alice"})
    rooms["dm:sam"] = dm["room_id"]
    await demo.say("sam", dm["room_id"], "Could you review the changelog before Friday?")
    await demo.leave("alice")
    return rooms


def icon_sheet_png(width: int = 720, height: int = 480) -> bytes:
    """A picture for the demo's image attachment: a sheet of app icons (drawn
    here, so no image file is shipped). Needs a QGuiApplication."""
    from qtclient.qt import (
        QBuffer,
        QByteArray,
        QColor,
        QImage,
        QIODevice,
        QPainter,
        QRectF,
        Qt,
    )

    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor("#f8f9fa"))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    colours = ["#1a73e8", "#d93025", "#188038", "#f9ab00", "#a142f4", "#007b83",
               "#e37400", "#5f6368"]
    cell = width / 6
    for n in range(12):
        x, y = (n % 6) * cell + cell * 0.15, (n // 6) * cell + height / 2 - cell * 0.95
        size = cell * 0.7
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(colours[n % len(colours)]))
        painter.drawRoundedRect(QRectF(x, y, size, size), size * 0.22, size * 0.22)
        painter.setBrush(QColor("white"))
        inner = QRectF(x + size * 0.28, y + size * 0.28, size * 0.44, size * 0.44)
        if n % 3 == 0:
            painter.drawEllipse(inner)
        elif n % 3 == 1:
            painter.drawRoundedRect(inner, 4, 4)
        else:
            painter.drawRect(inner.adjusted(0, size * 0.1, 0, -size * 0.1))
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(data.data())


def run(coroutine_function: Any) -> None:
    """Run ``coroutine_function(reactor)`` on the Qt reactor, then stop it."""
    from twisted.internet import reactor

    def go() -> None:
        d: Deferred[Any] = Deferred.fromCoroutine(coroutine_function(reactor))

        def done(result: Any) -> Any:
            reactor.stop()
            return result

        def failed(failure: Failure) -> None:
            Logger().failure("the demo failed", failure)
            print(failure.getErrorMessage(), file=sys.stderr)

        d.addBoth(done)
        d.addErrback(failed)

    reactor.callWhenRunning(go)
    reactor.run()
