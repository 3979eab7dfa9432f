"""The one error taxonomy of chatnet (PROTOCOL.md section 2, "Error codes").

Services raise :class:`ChatError` with an :class:`ErrorCode`; the wire layer
turns it into ``{"id": ..., "error": {"code", "message", "details"?}}``.
Any other exception is logged server-side and goes out as ``internal``
without a traceback. The client library raises the same class when a
response carries an error, so both sides share one vocabulary.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Error codes of PROTOCOL.md section 2, spelled exactly as on the wire."""

    BAD_REQUEST = "bad_request"
    UNKNOWN_OP = "unknown_op"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    BANNED = "banned"
    PROTOCOL_VERSION = "protocol_version"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class ChatError(Exception):
    """An error with a protocol error code, safe to show to the peer.

    Args:
        code: one of :class:`ErrorCode`.
        message: human-readable text; for ``bad_request`` it names the field.
        details: optional extra map sent as ``details`` (e.g.
            ``{"retry_after_ms": 250}`` with ``rate_limited``).
    """

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None):
        super().__init__(f"{code.value}: {message}")
        self.code = ErrorCode(code)
        self.message = message
        self.details = details

    def to_wire(self) -> dict[str, Any]:
        """Return the ``error`` map of a response (PROTOCOL.md section 2).

        Returns:
            ``{"code": str, "message": str, "details"?: map}``.
        """
        error: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.details:
            error["details"] = self.details
        return error

    @classmethod
    def from_wire(cls, error: Any) -> ChatError:
        """Build a ChatError from a response's ``error`` map.

        Unknown codes (from a newer server) become ``internal`` with the
        original code kept in the message, so a client never crashes on them.

        Args:
            error: the ``error`` value of a response; expected to be a map.

        Returns:
            the equivalent :class:`ChatError`.
        """
        if not isinstance(error, dict):
            return cls(ErrorCode.INTERNAL, f"malformed error: {error!r}")
        raw_code = error.get("code")
        message = str(error.get("message", ""))
        details = error.get("details")
        try:
            code = ErrorCode(str(raw_code))
        except ValueError:
            code = ErrorCode.INTERNAL
            message = f"{raw_code}: {message}"
        return cls(code, message, details if isinstance(details, dict) else None)


class StorageUnavailable(ChatError):
    """The server's storage failed for a reason that passes (disk full, database
    locked or read-only, connection to the database lost): code ``unavailable``,
    the request may be sent again later (PROTOCOL.md 2, "Error codes").

    Args:
        message: what the peer is told.
    """

    def __init__(self, message: str = "the server's storage is unavailable; try again") -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message)


def bad_request(message: str) -> ChatError:
    """Shorthand for a ``bad_request`` error whose message names the field."""
    return ChatError(ErrorCode.BAD_REQUEST, message)


def not_found(message: str = "not found") -> ChatError:
    """Shorthand for ``not_found``."""
    return ChatError(ErrorCode.NOT_FOUND, message)


def forbidden(message: str = "forbidden") -> ChatError:
    """Shorthand for ``forbidden``."""
    return ChatError(ErrorCode.FORBIDDEN, message)
