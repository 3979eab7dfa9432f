"""Qt item models over the chat state (STYLE.md habit 18, after Nheko's RoomlistModel and
Mumble's UserModel).

Each model is a ``QAbstractListModel`` with a ``Roles`` enum; it changes only
through its domain methods (``add_message``, ``set_presence`` …), which emit
the precise Qt signals, so views never see a half-updated list.
"""

from qtclient.models.members import MemberListModel
from qtclient.models.rooms import RoomListModel, RoomSortProxy
from qtclient.models.thumbnails import ThumbnailCache
from qtclient.models.timeline import MessageItem, TimelineModel
from qtclient.models.transfers import RoomUploadsProxy, TransfersModel

__all__ = ["MemberListModel", "MessageItem", "RoomListModel", "RoomSortProxy",
           "RoomUploadsProxy", "ThumbnailCache", "TimelineModel", "TransfersModel"]
