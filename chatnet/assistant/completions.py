"""An OpenAI-compatible chat-completions client that streams (treq).

:class:`ChatCompletions` posts ``{model?, messages, stream: true}`` to
``{url}/v1/chat/completions`` (with ``Authorization: Bearer KEY`` when it has a
key) and hands each piece of ``choices[0].delta.content`` to a callback as the
server-sent events arrive, until ``data: [DONE]``. An endpoint that ignores
``stream`` and answers one JSON document (``choices[0].message.content``) is
read too. Every way the endpoint can let the assistant down becomes one
:class:`CompletionError` whose :attr:`~CompletionError.apology` can be shown
to the person who asked:

* it cannot be reached, or drops the connection (``unreachable``);
* it answers with an HTTP error status (``refused``: 401, 429, 500 …);
* it sends something that is not a completion (``malformed``);
* it stays silent for ``timeout`` seconds, before the answer starts or in the
  middle of it (``timeout``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from treq.client import HTTPClient
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers

from chatnet.assistant.eventstream import EventStreamDecoder, EventStreamError

#: Bytes of an error response read for its message, and of a whole JSON answer.
MAX_ERROR_BODY = 4096
MAX_JSON_BODY = 4 * 1024 * 1024
#: Characters of an endpoint's error message kept for the log.
_DETAIL_CHARS = 200


class FailureKind(StrEnum):
    """How the endpoint failed (see the module docstring)."""

    UNREACHABLE = "unreachable"
    REFUSED = "refused"
    MALFORMED = "malformed"
    TIMEOUT = "timeout"


class CompletionError(Exception):
    """The endpoint gave no usable answer.

    Args:
        kind: how it failed.
        detail: what happened, for the operator's log (one line).
        status: the HTTP status for ``refused``.
        timeout: the timeout in seconds, for ``timeout``.

    Attributes:
        partial: the text received before the failure (``""`` if none).
    """

    def __init__(self, kind: FailureKind, detail: str, *, status: int | None = None,
                 timeout: float | None = None) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail
        self.status = status
        self.timeout = timeout
        self.partial = ""

    @property
    def apology(self) -> str:
        """One or two sentences for the person who asked: what went wrong and
        what they (or the operator) can do."""
        start = "Sorry, I could not answer: "
        if self.kind is FailureKind.TIMEOUT:
            return (f"{start}the language model did not answer within {self.timeout:g} s. "
                    "Please try again later.")
        if self.kind is FailureKind.UNREACHABLE:
            return (f"{start}the language model service cannot be reached right now. "
                    "Please try again later.")
        if self.kind is FailureKind.MALFORMED:
            return (f"{start}the language model service sent an answer I could not read. "
                    "The server's operator should check the assistant's endpoint.")
        status = self.status or 0
        if not status:
            return (f"{start}the language model service reported an error. "
                    "Please try again later.")
        if status in (401, 403):
            return (f"{start}the language model service refused my credentials "
                    f"(HTTP {status}). The server's operator should check the "
                    "assistant's API key.")
        if status == 429:
            return (f"{start}the language model service is busy (HTTP 429, too many "
                    "requests). Please try again in a minute.")
        if status >= 500:
            return (f"{start}the language model service failed (HTTP {status}). "
                    "Please try again later.")
        return (f"{start}the language model service refused the request (HTTP {status}). "
                "The server's operator should check the assistant's settings.")


@dataclass(frozen=True)
class Completion:
    """A finished answer.

    Attributes:
        text: the whole answer (the pieces given to the callback, joined).
        cut: True when the answer reached the size limit and the rest was not read.
    """

    text: str
    cut: bool = False


class ChatCompletions:
    """Talks to one OpenAI-compatible endpoint.

    Args:
        reactor: the reactor (connections and timers).
        url: the full URL to post to (``…/v1/chat/completions``).
        model: the ``model`` field; ``""`` leaves it out.
        api_key: sent as ``Authorization: Bearer`` when given.
        timeout: seconds the endpoint may stay silent (connecting and until the
            response starts; then between two pieces of the body).
        max_chars: characters of an answer read at most; the rest is not read
            (:attr:`Completion.cut`).
    """

    log = Logger()

    def __init__(self, reactor: Any, url: str, *, model: str = "", api_key: str | None = None,
                 timeout: float = 60.0, max_chars: int = 64_000) -> None:
        self.reactor = reactor
        self.url = url
        self.model = model
        self.timeout = timeout
        self.max_chars = max_chars
        self._api_key = api_key
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.retryAutomatically = False  # a completion costs money: never twice
        self._http = HTTPClient(Agent(reactor, pool=self._pool, connectTimeout=timeout))

    def request_body(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """The JSON document posted for ``messages`` (``[{role, content}]``)."""
        body: dict[str, Any] = {"messages": messages, "stream": True}
        if self.model:
            body["model"] = self.model
        return body

    async def complete(self, messages: list[dict[str, str]],
                       on_text: Callable[[str], bool | None]) -> Completion:
        """Ask for an answer and stream it.

        Args:
            messages: the conversation, ``[{"role": "system"|"user"|"assistant",
                "content": str}]``.
            on_text: called with each piece of the answer as it arrives; when it
                returns False the rest is not read, and the completion is
                :attr:`~Completion.cut`.

        Returns:
            the whole answer.

        Raises:
            CompletionError: the endpoint failed (its ``partial`` holds what had
                arrived). Cancelling the coroutine's Deferred stops the request.
        """
        headers = Headers({"Content-Type": ["application/json"],
                           "Accept": ["text/event-stream, application/json"]})
        if self._api_key:
            headers.setRawHeaders("Authorization", [f"Bearer {self._api_key}"])
        payload = json.dumps(self.request_body(messages), ensure_ascii=False).encode("utf-8")
        d = self._http.post(self.url, data=payload, headers=headers, allow_redirects=False,
                            unbuffered=True)
        # Not addTimeout: the agent reports a cancelled request as "response never
        # received", so whether it was the timer that cancelled is noted here.
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            d.cancel()

        timer = self.reactor.callLater(self.timeout, expire)
        try:
            response = await d
        except Exception as exc:
            if expired:
                raise CompletionError(FailureKind.TIMEOUT, f"no response from {self.url} within "
                                      f"{self.timeout:g} s", timeout=self.timeout) from None
            if isinstance(exc, defer.CancelledError):
                raise
            raise CompletionError(FailureKind.UNREACHABLE,
                                  f"{self.url}: {_describe(exc)}") from None
        finally:
            if timer.active():
                timer.cancel()
        if response.code != 200:
            reader = _BodyReader(self.reactor, self.timeout, MAX_ERROR_BODY)
            response.deliverBody(reader)
            try:
                text = await reader.done
            except CompletionError:
                text = b""
            raise CompletionError(FailureKind.REFUSED,
                                  f"HTTP {response.code} from {self.url}: {_error_detail(text)}",
                                  status=response.code)
        kind = ",".join(response.headers.getRawHeaders("content-type") or []).lower()
        streamed = "event-stream" in kind or "json" not in kind
        answer = _AnswerReader(self.reactor, self.timeout, on_text, self.max_chars, streamed)
        response.deliverBody(answer)
        completion: Completion = await answer.done
        return completion

    def close(self) -> Deferred[None]:
        """Close the kept-alive connections; fires when they are closed."""
        closed: Deferred[None] = self._pool.closeCachedConnections()
        return closed


class _TimedBody(Protocol):
    """Reads a response body, giving up after ``timeout`` seconds without a byte.

    ``done`` fires once: with the subclass's result, or with a
    :class:`CompletionError`; the connection is dropped on failure.
    """

    def __init__(self, clock: Any, timeout: float) -> None:
        self.clock = clock
        self.timeout = timeout
        self.done: Deferred[Any] = Deferred()
        self._timer = clock.callLater(timeout, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        if self._timer.active():
            self._timer.reset(self.timeout)
        try:
            self.received(data)
        except CompletionError as exc:
            self.fail(exc)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._timer.active():
            self._timer.cancel()
        if self.done.called:
            return
        try:
            if reason.check(ResponseDone, PotentialDataLoss):
                self.ended()
            else:
                raise CompletionError(FailureKind.UNREACHABLE, "the connection was lost during "
                                      f"the answer: {_describe(reason.value or Exception())}")
        except CompletionError as exc:
            self.fail(exc)

    def _timed_out(self) -> None:
        self.fail(CompletionError(FailureKind.TIMEOUT, f"nothing more within {self.timeout:g} s",
                                  timeout=self.timeout))

    def succeed(self, result: Any) -> None:
        """Fire ``done`` with ``result`` (once)."""
        if self._timer.active():
            self._timer.cancel()
        if not self.done.called:
            self.done.callback(result)

    def fail(self, error: CompletionError) -> None:
        """Fire ``done`` with ``error`` (once) and drop the connection."""
        if self._timer.active():
            self._timer.cancel()
        if not self.done.called:
            self.done.errback(error)
        self.stop()

    def stop(self) -> None:
        """Read no more: drop the connection."""
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def received(self, data: bytes) -> None:
        """A piece of the body (subclasses)."""

    def ended(self) -> None:
        """The body is complete (subclasses)."""


class _BodyReader(_TimedBody):
    """The first ``limit`` bytes of a body (an error's explanation)."""

    def __init__(self, clock: Any, timeout: float, limit: int) -> None:
        super().__init__(clock, timeout)
        self.limit = limit
        self.body = b""

    def received(self, data: bytes) -> None:
        self.body += data
        if len(self.body) >= self.limit:
            self.succeed(self.body[:self.limit])
            self.stop()

    def ended(self) -> None:
        self.succeed(self.body)


class _AnswerReader(_TimedBody):
    """The answer: server-sent events (``streamed``) or one JSON document."""

    def __init__(self, clock: Any, timeout: float, on_text: Callable[[str], bool | None],
                 max_chars: int, streamed: bool) -> None:
        super().__init__(clock, timeout)
        self.on_text = on_text
        self.max_chars = max_chars
        self.streamed = streamed
        self.decoder = EventStreamDecoder()
        self.pieces: list[str] = []
        self.length = 0
        self.body = b""

    def fail(self, error: CompletionError) -> None:
        error.partial = "".join(self.pieces)
        super().fail(error)

    def received(self, data: bytes) -> None:
        if not self.streamed:
            self.body += data
            if len(self.body) > MAX_JSON_BODY:
                raise CompletionError(FailureKind.MALFORMED,
                                      f"a JSON answer of more than {MAX_JSON_BODY} bytes")
            return
        try:
            events = self.decoder.feed(data)
        except EventStreamError as exc:
            raise CompletionError(FailureKind.MALFORMED, str(exc)) from None
        for event in events:
            self.event(event)
            if self.done.called:
                return

    def ended(self) -> None:
        if not self.streamed:
            document = _json(self.body)
            self.text(_message_content(document))
            self.succeed(Completion("".join(self.pieces)))
            return
        try:
            events = self.decoder.finish()
        except EventStreamError as exc:
            raise CompletionError(FailureKind.MALFORMED, str(exc)) from None
        for event in events:
            self.event(event)
        if not self.done.called:
            if not self.pieces:
                raise CompletionError(FailureKind.MALFORMED,
                                      "the stream ended without an answer or [DONE]")
            # Lenient: a stream that ended cleanly without [DONE] is complete.
            self.succeed(Completion("".join(self.pieces)))

    def event(self, data: str) -> None:
        """One server-sent event's data: a JSON chunk or ``[DONE]``."""
        if data.strip() == "[DONE]":
            self.succeed(Completion("".join(self.pieces)))
            return
        if not data.strip():
            return
        chunk = _json(data.encode("utf-8"))
        choices = chunk.get("choices")
        if choices == [] and "error" not in chunk:
            return  # e.g. a final usage-only chunk
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise CompletionError(FailureKind.MALFORMED, f"a chunk without choices: "
                                  f"{_error_detail(data.encode('utf-8'))}")
        delta = choices[0].get("delta")
        if not isinstance(delta, dict):
            raise CompletionError(FailureKind.MALFORMED, "a chunk without choices[0].delta")
        content = delta.get("content")
        if content is not None and not isinstance(content, str):
            raise CompletionError(FailureKind.MALFORMED, "choices[0].delta.content is not text")
        if content:
            self.text(content)

    def text(self, piece: str) -> None:
        """Pass a piece of the answer on, up to ``max_chars`` in all."""
        room = self.max_chars - self.length
        cut = len(piece) >= room
        piece = piece[:room]
        if piece:
            self.pieces.append(piece)
            self.length += len(piece)
            if self.on_text(piece) is False:
                cut = True
        if cut:
            self.succeed(Completion("".join(self.pieces), cut=True))
            self.stop()


def _json(data: bytes) -> dict[str, Any]:
    """A JSON object, or ``malformed``; an ``{"error": …}`` object is ``refused``."""
    try:
        document = json.loads(data)
    except ValueError:
        raise CompletionError(FailureKind.MALFORMED,
                              f"not JSON: {_error_detail(data)}") from None
    if not isinstance(document, dict):
        raise CompletionError(FailureKind.MALFORMED, f"not a JSON object: {_error_detail(data)}")
    if "error" in document and "choices" not in document:
        raise CompletionError(FailureKind.REFUSED, f"an error in the answer: "
                              f"{_error_detail(data)}")
    return document


def _message_content(document: dict[str, Any]) -> str:
    """``choices[0].message.content`` of a whole (not streamed) completion."""
    choices = document.get("choices")
    message = choices[0].get("message") if isinstance(choices, list) and choices and \
        isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise CompletionError(FailureKind.MALFORMED,
                              "a JSON answer without choices[0].message.content")
    return content


def _error_detail(body: bytes) -> str:
    """The message in an endpoint's error body (OpenAI's ``{"error": {"message"}}``,
    vLLM's ``{"message"}``, FastAPI's ``{"detail"}``), else the start of the text;
    one line, at most :data:`_DETAIL_CHARS` characters."""
    text = body.decode("utf-8", "replace")
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        error = document.get("error")
        for candidate in (error.get("message") if isinstance(error, dict) else error,
                          document.get("message"), document.get("detail")):
            if isinstance(candidate, str) and candidate:
                text = candidate
                break
    line = " ".join(text.split())
    return (line[:_DETAIL_CHARS] + "…") if len(line) > _DETAIL_CHARS else (line or "(no body)")


def _describe(error: BaseException) -> str:
    """A readable phrase for a connection failure (treq wraps them in lists)."""
    reasons = getattr(error, "reasons", None)
    if isinstance(reasons, list) and reasons:
        return "; ".join(r.getErrorMessage() if isinstance(r, Failure) else str(r)
                         for r in reasons)
    return str(error) or error.__class__.__name__
