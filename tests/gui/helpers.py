"""Steps the GUI tests repeat: open a room by clicking it, read what a timeline shows."""

from __future__ import annotations

import itertools
from typing import Any

from qtclient.app import ChatApp
from qtclient.models.rooms import RoomListModel
from qtclient.models.timeline import TimelineModel
from qtclient.qt import QModelIndex, Qt

_ids = itertools.count(1)


def room_index(app: ChatApp, room_id: int) -> QModelIndex:
    """The room's index in the (sorted) list the user sees."""
    proxy = app.controller.room_proxy
    for row in range(proxy.rowCount()):
        index = proxy.index(row, 0)
        if index.data(RoomListModel.Roles.RoomId) == room_id:
            return index
    raise AssertionError(f"room {room_id} is not in the room list")


def wait_for_room(qtbot: Any, app: ChatApp, room_id: int) -> None:
    """Wait until the room appears in the room list."""
    qtbot.waitUntil(lambda: app.controller.rooms.room(room_id) is not None)


def click_room(qtbot: Any, app: ChatApp, room_id: int) -> TimelineModel:
    """Click the room in the room list, as a person would; wait for its messages.

    Returns:
        the room's timeline model, loaded.
    """
    wait_for_room(qtbot, app, room_id)
    view = app.main_window.room_list
    rect = view.visualRect(room_index(app, room_id))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: app.controller.current_room == room_id)
    timeline = app.controller.timeline(room_id)
    qtbot.waitUntil(lambda: timeline.loaded)
    assert app.main_window.timeline.model() is timeline
    return timeline


def unread(app: ChatApp, room_id: int) -> int:
    """The unread count the room list shows for a room."""
    return int(room_index(app, room_id).data(RoomListModel.Roles.Unread))


def say(server: Any, conn: Any, room_id: int, body: str, **extra: Any) -> dict[str, Any]:
    """``msg.send`` from a library connection; returns ``{msg_id, seq, ts}``."""
    args = {"room_id": room_id, "body": body, "client_msg_id": f"t{next(_ids)}", **extra}
    result: dict[str, Any] = server.request(conn, "msg.send", args)
    return result


def shared_room(server: Any, owner: Any, *members: str, name: str = "general",
                visibility: str = "public") -> int:
    """A room made by a library user, with ``members`` in it; its id.

    ``room.create`` only invites them; each accepts with ``room.join`` on a
    connection of their own that closes at once (their desktop clients, if
    logged in, see the room arrive as joined on another device).
    """
    room = server.request(owner, "room.create", {"name": name, "visibility": visibility,
                                                 "members": list(members)})
    for username in members:
        conn = server.wait(server.running.user(username, register=False))
        server.request(conn, "room.join", {"room_id": room["room_id"]})
        server.wait(conn.close())
    return int(room["room_id"])


def drop_files(widget: Any, paths: list[Any]) -> bool:
    """Drag ``paths`` over ``widget`` and drop them, as a file manager would:
    a QDragEnterEvent, a QDragMoveEvent, then a QDropEvent carrying their URLs.

    Returns:
        whether the widget accepted the drop.
    """
    from qtclient.qt import (
        QApplication,
        QDragEnterEvent,
        QDragMoveEvent,
        QDropEvent,
        QMimeData,
        QPointF,
        QUrl,
    )

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    centre = widget.rect().center()
    action, buttons = Qt.DropAction.CopyAction, Qt.MouseButton.LeftButton
    modifiers = Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(centre, action, mime, buttons, modifiers)
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    move = QDragMoveEvent(centre, action, mime, buttons, modifiers)
    QApplication.sendEvent(widget, move)
    drop = QDropEvent(QPointF(centre), action, mime, buttons, modifiers)
    QApplication.sendEvent(widget, drop)
    return drop.isAccepted()


def upload(server: Any, conn: Any, name: str, data: bytes,
           mime: str | None = None) -> dict[str, Any]:
    """Upload ``data`` from a library connection (PROTOCOL.md 7, raw ops); returns
    ``file.upload.finish``'s ``{file_id, name, size, sha256, mime}``."""
    import hashlib

    args: dict[str, Any] = {"name": name, "size": len(data),
                            "sha256": hashlib.sha256(data).hexdigest()}
    if mime:
        args["mime"] = mime
    begin = server.request(conn, "file.upload.begin", args)
    offset, chunk = int(begin["offset"]), int(begin["chunk_size"])
    while offset < len(data):
        piece = data[offset:offset + chunk]
        server.request(conn, "file.upload.chunk", {"upload_id": begin["upload_id"],
                                                   "offset": offset, "data": piece})
        offset += len(piece)
    result: dict[str, Any] = server.request(conn, "file.upload.finish",
                                            {"upload_id": begin["upload_id"]})
    return result


def fetch(server: Any, conn: Any, file_id: str) -> bytes:
    """Download a whole file on a library connection (``file.download``, raw)."""
    out = bytearray()
    while True:
        piece = server.request(conn, "file.download", {"file_id": file_id, "offset": len(out),
                                                       "length": 256 * 1024})
        out += piece["data"]
        if piece["eof"] or not piece["data"]:
            return bytes(out)
