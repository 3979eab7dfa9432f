"""A real OpenAI-compatible chat-completions endpoint on loopback, for the assistant's tests.

:class:`FakeCompletions` is a ``twisted.web`` resource served over real HTTP on
127.0.0.1 (:func:`start_endpoint`). Each ``POST /v1/chat/completions`` is
recorded (body and headers) and answered by the next :class:`Behaviour` the
test queued (``endpoint.then(...)``), or by the default one: a streamed
"Hello world". Behaviours: a stream of server-sent events (optionally held
chunk by chunk by the test, :class:`Stream` with ``held=True``), a whole JSON
answer, an HTTP error status, garbage, silence (to hit the timeout).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import endpoints, reactor
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site


def sse_chunk(content: str) -> bytes:
    """One server-sent event holding a chunk with ``choices[0].delta.content``."""
    chunk = {"id": "chatcmpl-test", "object": "chat.completion.chunk",
             "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


class Behaviour:
    """How one request is answered."""

    def render(self, request: Request) -> bytes | int:
        """Answer ``request`` (twisted.web's ``render`` contract)."""
        raise NotImplementedError


@dataclass
class Stream(Behaviour):
    """``text/event-stream`` chunks, then ``[DONE]`` (unless ``done`` is False).

    With ``held``, each chunk waits for :meth:`release` (the test sees every
    edit it causes before letting the next one go); the ``[DONE]`` too.
    ``stall_after``: after that many chunks, send nothing more (a stream that
    stops in the middle).
    """

    chunks: list[str]
    held: bool = False
    done: bool = True
    stall_after: int | None = None
    role_chunk: bool = True
    _gates: deque[Deferred[None]] = field(default_factory=deque)
    _waiting: Deferred[None] | None = None

    def release(self, count: int = 1) -> None:
        """Let the next ``count`` held pieces go."""
        for _ in range(count):
            if self._waiting is not None and not self._waiting.called:
                waiting, self._waiting = self._waiting, None
                waiting.callback(None)
            else:
                gate: Deferred[None] = Deferred()
                gate.callback(None)
                self._gates.append(gate)

    def _gate(self) -> Deferred[None]:
        if self._gates:
            return self._gates.popleft()
        self._waiting = Deferred()
        return self._waiting

    def render(self, request: Request) -> int:
        request.setHeader(b"content-type", b"text/event-stream")
        Deferred.fromCoroutine(self._write(request))
        return NOT_DONE_YET

    async def _write(self, request: Request) -> None:
        gone: list[bool] = []
        request.notifyFinish().addBoth(lambda _r: gone.append(True))
        if self.role_chunk:
            request.write(b'data: {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}'
                          b"\n\n")
        for index, chunk in enumerate(self.chunks):
            if self.stall_after is not None and index >= self.stall_after:
                return
            if self.held:
                await self._gate()
            if gone:
                return
            request.write(sse_chunk(chunk))
        if self.held:
            await self._gate()
        if gone:
            return
        if self.done:
            request.write(DONE)
        request.finish()


@dataclass
class Whole(Behaviour):
    """One JSON document (an endpoint that does not stream)."""

    text: str

    def render(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"choices": [{"index": 0, "message": {
            "role": "assistant", "content": self.text}, "finish_reason": "stop"}]}).encode()


@dataclass
class Status(Behaviour):
    """An HTTP error with an OpenAI-style error body."""

    code: int
    message: str = "something went wrong"

    def render(self, request: Request) -> bytes:
        request.setResponseCode(self.code)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"error": {"message": self.message, "type": "test"}}).encode()


@dataclass
class Garbage(Behaviour):
    """A 200 answer that is not a completion."""

    body: bytes
    content_type: bytes = b"text/event-stream"

    def render(self, request: Request) -> bytes:
        request.setHeader(b"content-type", self.content_type)
        return self.body


class Silent(Behaviour):
    """Never answers (the client's timeout must end it)."""

    def render(self, request: Request) -> int:
        return NOT_DONE_YET


class FakeCompletions(Resource):
    """The endpoint (module docstring).

    Attributes:
        bodies: the JSON body of every request, in order.
        headers: each request's headers (lower-case names -> value).
        url: the base URL, once started.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.default: Behaviour = Stream(["Hello", " world"])
        self.script: deque[Behaviour] = deque()
        self.url = ""
        self._waiters: list[tuple[int, Deferred[dict[str, Any]]]] = []

    def then(self, *behaviours: Behaviour) -> None:
        """Answer the next requests with these, in order."""
        self.script.extend(behaviours)

    def request_number(self, number: int) -> Deferred[dict[str, Any]]:
        """A Deferred firing with the body of the ``number``-th request (1-based),
        at once if it has come."""
        d: Deferred[dict[str, Any]] = Deferred()
        if len(self.bodies) >= number:
            d.callback(self.bodies[number - 1])
        else:
            self._waiters.append((number, d))
        return d

    def render_POST(self, request: Request) -> bytes | int:
        if request.path != b"/v1/chat/completions":
            request.setResponseCode(404)
            return b'{"error": {"message": "no such path"}}'
        assert request.content is not None
        self.bodies.append(json.loads(request.content.read()))
        self.headers.append({k.decode().lower(): v[0].decode()
                             for k, v in request.requestHeaders.getAllRawHeaders()})
        for waiter in [w for w in self._waiters if w[0] <= len(self.bodies)]:
            self._waiters.remove(waiter)
            waiter[1].callback(self.bodies[waiter[0] - 1])
        behaviour = self.script.popleft() if self.script else self.default
        return behaviour.render(request)


async def start_endpoint() -> tuple[FakeCompletions, Any]:
    """Serve a :class:`FakeCompletions` on 127.0.0.1, a free port.

    Returns:
        the resource (``url`` set) and the listening port (stop it afterwards).
    """
    resource = FakeCompletions()
    site = Site(resource)
    site.noisy = False
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    resource.url = f"http://127.0.0.1:{port.getHost().port}"
    return resource, port
