"""Server-sent events (the ``text/event-stream`` format), decoded without I/O.

OpenAI-compatible endpoints stream an answer as events whose ``data`` is one
JSON chunk, ending with ``data: [DONE]``::

    data: {"choices": [{"delta": {"content": "Hel"}}]}

    data: {"choices": [{"delta": {"content": "lo"}}]}

    data: [DONE]

:class:`EventStreamDecoder` follows the WHATWG rules that matter here: lines
end with CRLF, LF or CR; an empty line ends an event; ``data:`` lines (one
leading space removed) are joined with newlines; comments (``:``) and other
fields (``event:``, ``id:``, ``retry:``) are ignored.
"""

from __future__ import annotations

#: The longest line accepted, in bytes: a longer one is not an event stream.
MAX_LINE = 1024 * 1024


class EventStreamError(ValueError):
    """The bytes are not an event stream (a line longer than :data:`MAX_LINE`,
    or data that is not UTF-8)."""


class EventStreamDecoder:
    """Cuts a byte stream into the ``data`` of its events.

    Feed bytes as they arrive with :meth:`feed`; it returns the data of each
    event completed by them. Call :meth:`finish` at the end of the stream for an
    event that was not followed by an empty line.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, data: bytes) -> list[str]:
        """Take more bytes.

        Returns:
            the data of every event they complete, in order (possibly none).

        Raises:
            EventStreamError: a line is over :data:`MAX_LINE` bytes or not UTF-8.
        """
        self._buffer += data
        events: list[str] = []
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                if len(self._buffer) > MAX_LINE:
                    raise EventStreamError(f"a line of more than {MAX_LINE} bytes")
                return events
            end, after = cut
            line, self._buffer = self._buffer[:end], self._buffer[after:]
            event = self._line(line)
            if event is not None:
                events.append(event)

    def finish(self) -> list[str]:
        """The end of the stream: the data of an event left without its empty line.

        Raises:
            EventStreamError: as :meth:`feed`.
        """
        events: list[str] = []
        if self._buffer:
            line, self._buffer = self._buffer, b""
            self._line(line.rstrip(b"\r"))
        if self._data:
            events.append("\n".join(self._data))
            self._data = []
        return events

    def _line(self, line: bytes) -> str | None:
        if not line:
            if not self._data:
                return None
            event, self._data = "\n".join(self._data), []
            return event
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise EventStreamError("a line that is not UTF-8") from None
        field, colon, value = text.partition(":")
        if field == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        elif not colon and text == "data":
            self._data.append("")
        return None


def _line_end(buffer: bytes) -> tuple[int, int] | None:
    """Where the first line of ``buffer`` ends and the next begins, or None when
    no line is complete yet (a CR at the very end may be the start of a CRLF)."""
    lf, cr = buffer.find(b"\n"), buffer.find(b"\r")
    if cr == -1 or (lf != -1 and lf < cr):
        return None if lf == -1 else (lf, lf + 1)
    if cr + 1 == len(buffer):
        return None
    return (cr, cr + 2) if buffer[cr + 1:cr + 2] == b"\n" else (cr, cr + 1)
