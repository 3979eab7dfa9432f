"""The assistant (PROTOCOL.md 11, docs/assistant.md) against a real server and a real
HTTP endpoint: the server runs with the assistant's options, the bot logs in over
loopback TLS through the client library, and answers from a ``twisted.web``
endpoint on 127.0.0.1 speaking the OpenAI chat-completions API
(tests/support/completions.py): streamed chunks, whole answers, error statuses,
garbage and silence. People are ordinary connections; everything is awaited
as events, never slept for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted

from chatnet.assistant.config import AssistantConfig
from chatnet.assistant.reply import PLACEHOLDER
from chatnet.config import ServerConfig
from tests.support.chat import say, unique
from tests.support.completions import (
    FakeCompletions,
    Stream,
    start_endpoint,
)
from tests.support.events import EventLog, barrier, within
from tests.support.server import RunningServer

#: Seconds a wait for the assistant may take (edits are paced at 0.5 s).
WAIT = 10.0


@pytest_twisted.async_yield_fixture
async def endpoint() -> AsyncIterator[FakeCompletions]:
    """A fake OpenAI-compatible endpoint on 127.0.0.1."""
    resource, port = await start_endpoint()
    yield resource
    await port.stopListening()


async def with_assistant(make_server: Any, endpoint: FakeCompletions,
                         **settings: Any) -> RunningServer:
    """A server running its assistant against ``endpoint``, logged in."""
    server_settings = {k: settings.pop(k) for k in list(settings)
                       if k in {f.name for f in dataclasses.fields(ServerConfig)}}
    config = AssistantConfig(url=endpoint.url, **settings)
    server: RunningServer = await make_server(assistant=config, **server_settings)
    assert server.service.assistant is not None
    await within(server.service.assistant.when_ready(), "the assistant's login", WAIT)
    return server


def from_bot(name: str = "assistant") -> Any:
    """An EventLog predicate: a ``msg`` sent by the assistant."""
    return lambda data: data["message"]["sender"] == name


async def dm_with_bot(server: RunningServer, username: str | None = None
                      ) -> tuple[Any, EventLog, int]:
    """A new user with a direct room open to the assistant: (connection, events, room id)."""
    person = await server.user(username or unique("u"))
    events = EventLog(person, "person")
    room = await within(person.request("dm.open", {"username": "assistant"}), "dm.open")
    return person, events, int(room["room_id"])


async def answer_of(events: EventLog, question: dict[str, Any], final: str) -> dict[str, Any]:
    """Wait until the assistant's reply to ``question`` reads ``final``; return the reply."""
    placeholder = (await within(events.next("msg", where=lambda d: d["message"].get(
        "reply_to") == question["msg_id"]), "the assistant's placeholder", WAIT)).data["message"]
    if placeholder["body"] != final:
        await within(events.next("msg.edited", msg_id=placeholder["msg_id"], body=final),
                     f"the edit to {final!r}", WAIT)
    return placeholder


# -- direct messages, streaming ----------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_a_direct_message_gets_a_streamed_reply(make_server, endpoint, monkeypatch):
    """A DM is answered as a reply: a placeholder and typing at once, an edit as each
    piece of the stream arrives, and the concatenated chunks at the end; the request is
    a streamed chat completion with the model, the key from the named variable, and the
    question as the last user turn."""
    monkeypatch.setenv("CHATNET_TEST_LLM_KEY", "sk-test-123")
    stream = Stream(["Hel", "lo, ", "alice!"], held=True)
    endpoint.then(stream)
    server = await with_assistant(make_server, endpoint, model="test-model",
                                  key_env="CHATNET_TEST_LLM_KEY")
    alice, events, room_id = await dm_with_bot(server, "alice")
    question = await say(alice, room_id, "hello there")

    placeholder = (await within(events.next("msg", where=from_bot()), "placeholder",
                                WAIT)).data["message"]
    assert placeholder["reply_to"] == question["msg_id"]
    assert placeholder["body"] == PLACEHOLDER
    await within(events.next("typing", room_id=room_id, username="assistant", typing=True),
                 "typing", WAIT)
    body = await within(endpoint.request_number(1), "the endpoint's request", WAIT)
    assert body["stream"] is True and body["model"] == "test-model"
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][-1] == {"role": "user", "content": "alice: hello there"}
    assert endpoint.headers[0]["authorization"] == "Bearer sk-test-123"

    shown = ""
    for piece in ("Hel", "lo, ", "alice!"):
        stream.release()
        shown += piece
        # Trailing white space waits for what follows it.
        edit = await within(events.next("msg.edited", msg_id=placeholder["msg_id"],
                                        body=shown.rstrip()),
                            f"the edit showing {shown!r}", WAIT)
        assert edit.data["room_id"] == room_id
    stream.release()  # [DONE]
    history = await alice.request("msg.history", {"room_id": room_id})
    await barrier(alice)
    replies = [m for m in history["messages"] if m["sender"] == "assistant"]
    assert [(m["body"], m["reply_to"]) for m in replies] == [("Hello, alice!", question["msg_id"])]
    await within(events.next("typing", room_id=room_id, username="assistant", typing=False),
                 "typing stopped", WAIT)
