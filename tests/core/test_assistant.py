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
import os
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from chatnet.assistant.account import BOT_ROLE
from chatnet.assistant.bot import QuestionRate, Verdict, mentions
from chatnet.assistant.completions import ChatCompletions, CompletionError, FailureKind
from chatnet.assistant.config import AssistantConfig
from chatnet.assistant.eventstream import MAX_LINE, EventStreamDecoder, EventStreamError
from chatnet.assistant.memory import ConversationMemory, Turn
from chatnet.assistant.reply import CUT_NOTE, MAX_BODY, MAX_PARTS, PLACEHOLDER, split_answer
from chatnet.config import ConfigError, ServerConfig
from chatnet.errors import ErrorCode
from tests.support.chat import expect_error, room_with_members, say, unique
from tests.support.completions import (
    FakeCompletions,
    Garbage,
    Silent,
    Status,
    Stream,
    Whole,
    start_endpoint,
)
from tests.support.events import EventLog, barrier, until, within
from tests.support.pki import fingerprint, write_pki
from tests.support.process import command
from tests.support.server import PASSWORD, RunningServer

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
    url = settings.pop("url_override", endpoint.url)
    config = AssistantConfig(url=url, **settings)
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


def _either(events: EventLog, done: Any) -> Any:
    """The first ``msg`` or ``msg.edited`` whose body satisfies ``done``."""
    from twisted.internet.defer import DeferredList

    sent = events.next("msg", where=lambda d: done(d["message"]["body"]), timeout=WAIT)
    edited = events.next("msg.edited", where=lambda d: done(d["body"]), timeout=WAIT)
    return DeferredList([sent, edited], fireOnOneCallback=True, consumeErrors=True)


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


async def reply_to(events: EventLog, question: dict[str, Any], done: Any,
                   sender: str = "assistant") -> str:
    """The assistant's reply to ``question`` once ``done(body)`` holds for it (as sent,
    or after an edit); returns that body."""
    first = (await within(events.next("msg", where=lambda d: d["message"]["sender"] == sender
                                      and d["message"].get("reply_to") == question["msg_id"]),
                          "the assistant's reply", WAIT)).data["message"]
    if done(first["body"]):
        return str(first["body"])
    edit = await within(events.next("msg.edited", msg_id=first["msg_id"],
                                    where=lambda d: done(d["body"])),
                        "the reply's final edit", WAIT)
    return str(edit.data["body"])


async def bot_joined(events: EventLog, room_id: int, name: str = "assistant") -> None:
    """Wait until the assistant has accepted the invitation to ``room_id``."""
    await within(events.next("room.member", room_id=room_id, username=name, change="joined"),
                 "the assistant joining", WAIT)


async def group_room(owner: Any, events: EventLog, *others: Any, bot: bool = True) -> int:
    """A private room of ``owner`` and ``others`` (who join), with the assistant invited
    (it joins by itself)."""
    room_id = await room_with_members(owner, *others, name=unique("room"))
    if bot:
        await within(owner.request("room.invite", {"room_id": room_id,
                                                   "username": "assistant"}), "room.invite")
        await bot_joined(events, room_id)
    return room_id


async def replies_in(conn: Any, room_id: int, sender: str = "assistant") -> list[dict[str, Any]]:
    """The messages ``sender`` has in a room, oldest first."""
    history = await within(conn.request("msg.history", {"room_id": room_id, "limit": 200}),
                           "msg.history")
    return [m for m in history["messages"] if m["sender"] == sender]


# -- rooms: mentions, context ---------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_room_messages_are_answered_only_when_they_mention_the_assistant(
        make_server, endpoint):
    """In a room, ``@assistant`` in the body or ``assistant`` in ``mentions`` gets a
    reply; a message without either, or an address that merely contains the name,
    does not (the endpoint is never asked)."""
    server = await with_assistant(make_server, endpoint)
    alice, bob = await server.user("alice"), await server.user("bob")
    events = EventLog(alice, "alice")
    room_id = await group_room(alice, events, bob)
    ignored = [await say(alice, room_id, "nobody in particular"),
               await say(bob, room_id, "mail x@assistant.example or assistant@example.org")]
    by_body = await say(alice, room_id, "what do you think, @Assistant?")
    by_list = await say(bob, room_id, "and you?", mentions=["assistant"])
    for question in (by_body, by_list):
        assert await reply_to(events, question, lambda b: b == "Hello world") == "Hello world"
    replies = await replies_in(alice, room_id)
    assert sorted(r["reply_to"] for r in replies) == sorted([by_body["msg_id"],
                                                              by_list["msg_id"]])
    assert all(r["reply_to"] not in {q["msg_id"] for q in ignored} for r in replies)
    assert len(endpoint.bodies) == 2


@pytest_twisted.ensureDeferred
async def test_the_context_is_the_rooms_earlier_turns_and_no_other_rooms(make_server,
                                                                         endpoint):
    """The endpoint gets the room's earlier messages (others' as ``user`` turns named by
    sender, the assistant's own answers as ``assistant`` turns) ending with the
    question, and nothing from another room the assistant is in."""
    server = await with_assistant(make_server, endpoint)
    alice, bob = await server.user("alice"), await server.user("bob")
    events = EventLog(alice, "alice")
    ops = await group_room(alice, events, bob)
    other = await group_room(alice, events)
    await say(alice, ops, "the code word is tulip")
    await say(bob, ops, "noted")
    await say(alice, other, "the secret is banana")
    endpoint.then(Whole("It is tulip."))
    first = await say(alice, ops, "@assistant what is the code word?")
    assert await reply_to(events, first, lambda b: b == "It is tulip.")
    second = await say(bob, ops, "@assistant and backwards?")
    await reply_to(events, second, lambda b: b == "Hello world")

    asked = [[(m["role"], m["content"]) for m in body["messages"][1:]]
             for body in endpoint.bodies]
    assert asked[0] == [("user", "alice: the code word is tulip"), ("user", "bob: noted"),
                        ("user", "alice: @assistant what is the code word?")]
    assert asked[1] == [*asked[0], ("assistant", "It is tulip."),
                        ("user", "bob: @assistant and backwards?")]
    assert "banana" not in repr(endpoint.bodies)
    # The system message names the assistant.
    assert "assistant" in endpoint.bodies[0]["messages"][0]["content"]


@pytest_twisted.ensureDeferred
async def test_the_assistant_never_answers_itself(make_server, endpoint):
    """An answer that mentions the assistant (in a room and in a DM) starts no loop: its
    own messages are never questions."""
    server = await with_assistant(make_server, endpoint)
    alice = await server.user("alice")
    events = EventLog(alice, "alice")
    room_id = await group_room(alice, events)
    endpoint.then(Whole("Ask @assistant again, assistant!"),
                  Stream(["@assistant", " says hi"]))
    question = await say(alice, room_id, "@assistant loop?")
    await reply_to(events, question, lambda b: b == "Ask @assistant again, assistant!")
    dm = await within(alice.request("dm.open", {"username": "assistant"}), "dm.open")
    in_dm = await say(alice, dm["room_id"], "and here?")
    await reply_to(events, in_dm, lambda b: b == "@assistant says hi")
    # One more question: had the assistant answered itself, it would have asked first.
    last = await say(alice, room_id, "@assistant done?")
    await reply_to(events, last, lambda b: b == "Hello world")
    assert len(endpoint.bodies) == 3
    assert [r["reply_to"] for r in await replies_in(alice, room_id)] == [
        question["msg_id"], last["msg_id"]]



@pytest_twisted.ensureDeferred
async def test_burn_after_reading_messages_never_reach_the_endpoint(make_server, endpoint):
    """A question with a ttl is answered with a note and not sent anywhere; a ttl
    message is not part of later context either; a deleted message leaves the context."""
    server = await with_assistant(make_server, endpoint)
    alice, events, room_id = await dm_with_bot(server)
    secret = await say(alice, room_id, "the vault code is 1234", ttl=60)
    note = await reply_to(events, secret, lambda b: b.startswith("I do not read"))
    assert "burn-after-reading" in note
    gone = await say(alice, room_id, "my old address is 5 Elm Street")
    await within(alice.request("msg.delete", {"room_id": room_id, "msg_id": gone["msg_id"]}),
                 "msg.delete")
    question = await say(alice, room_id, "what do you know?")
    await reply_to(events, question, lambda b: b == "Hello world")
    assert len(endpoint.bodies) == 2  # the old address was answered, then deleted
    asked = repr(endpoint.bodies[1]["messages"])
    assert "1234" not in asked and "Elm Street" not in asked
    assert "what do you know?" in asked


# -- failures ----------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_endpoint_failures_are_answered_with_a_clear_apology(make_server, endpoint):
    """HTTP 500 and 401, garbage (not JSON, JSON without choices, a page of HTML), an
    endpoint that never answers and one that stops in the middle of its answer: each
    question gets an apology saying what went wrong (the text that came is kept)."""
    server = await with_assistant(make_server, endpoint, timeout=1.0, questions_burst=20)
    alice, events, room_id = await dm_with_bot(server)
    cases = [
        (Status(500, "model crashed"), "failed (HTTP 500)"),
        (Status(401, "bad key"), "refused my credentials (HTTP 401)"),
        (Status(429, "slow"), "is busy (HTTP 429"),
        (Garbage(b"data: {not json\n\n"), "sent an answer I could not read"),
        (Garbage(b'data: {"id": 1}\n\n'), "sent an answer I could not read"),
        (Garbage(b"<html>Bad gateway</html>", b"text/html"), "sent an answer I could not read"),
        (Garbage(b'{"choices": []}', b"application/json"), "sent an answer I could not read"),
        (Silent(), "did not answer within 1 s"),
        (Stream(["Partial answer", " and more"], stall_after=1), "did not answer within 1 s"),
    ]
    for behaviour, expected in cases:
        endpoint.then(behaviour)
        question = await say(alice, room_id, f"question {unique()}")
        body = await reply_to(events, question, lambda b, e=expected: e in b)  # type: ignore[misc]
        assert body.startswith("Sorry, I could not answer: ") or body.startswith(
            "Partial answer\n\nSorry, I could not answer: "), body
        if isinstance(behaviour, Stream):
            assert body.startswith("Partial answer\n\n")


@pytest_twisted.ensureDeferred
async def test_an_unreachable_endpoint_is_answered_with_an_apology(make_server, endpoint):
    """Nothing listening at the endpoint's address: "cannot be reached"."""
    resource, port = await start_endpoint()
    closed = resource.url
    await port.stopListening()
    server = await with_assistant(make_server, endpoint, url_override=closed)
    alice, events, room_id = await dm_with_bot(server)
    question = await say(alice, room_id, "anyone?")
    body = await reply_to(events, question, lambda b: "cannot be reached" in b)
    assert body.startswith("Sorry, I could not answer: the language model service cannot be "
                           "reached right now.")


# -- limits: the asker's rate, the body limit --------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_past_their_rate_a_person_is_told_once_to_slow_down(make_server, endpoint):
    """With a burst of 2: two questions are answered, the third gets one short "slow
    down" reply (without asking the endpoint), the fourth nothing; someone else is
    still answered."""
    server = await with_assistant(make_server, endpoint, questions_burst=2,
                                  questions_per_minute=1)
    alice, events, room_id = await dm_with_bot(server, "alice")
    answered = [await say(alice, room_id, "one"), await say(alice, room_id, "two")]
    for question in answered:
        await reply_to(events, question, lambda b: b == "Hello world")
    third = await say(alice, room_id, "three")
    body = await reply_to(events, third, lambda b: b.startswith("Slow down"))
    assert "2 questions at once and 1 a minute" in body and "Ask me again in" in body
    fourth = await say(alice, room_id, "four")
    bob, bob_events, bob_room = await dm_with_bot(server, "bob")
    await reply_to(bob_events, await say(bob, bob_room, "hi"), lambda b: b == "Hello world")
    replies = await replies_in(alice, room_id)
    assert [r["reply_to"] for r in replies] == [q["msg_id"] for q in (*answered, third)]
    assert fourth["msg_id"] not in [r["reply_to"] for r in replies]
    assert len(endpoint.bodies) == 3


@pytest_twisted.ensureDeferred
async def test_a_long_answer_continues_in_more_messages_and_is_cut_past_the_last(
        make_server, endpoint):
    """An answer longer than a message body (16,000 characters) continues in a second
    reply, cut between words; one longer than the parts allowed ends with a note and
    the rest is not read."""
    server = await with_assistant(make_server, endpoint)
    alice, events, room_id = await dm_with_bot(server)
    words = " ".join(f"w{i}" for i in range(5000))  # 28,889 characters
    endpoint.then(Stream([words[:10_000], words[10_000:]]),
                  Stream(["x" * 9_000 + " "] * 8))
    question = await say(alice, room_id, "talk a lot")
    await within(events.next("msg", where=lambda d: d["message"].get("reply_to") ==
                             question["msg_id"] and d["message"]["body"].endswith("w4999")),
                 "the second part", WAIT)
    # The first part was edited to its final text before the second was sent.
    parts = await replies_in(alice, room_id)
    assert [p["reply_to"] for p in parts] == [question["msg_id"]] * 2
    assert all(len(p["body"]) <= MAX_BODY for p in parts)
    assert " ".join(p["body"] for p in parts) == words

    too_long = await say(alice, room_id, "more")
    # The note ends the last part: in the message as sent, or by an edit.
    await within(_either(events, lambda body: body.endswith(CUT_NOTE)), "the cut note", WAIT)
    cut = [p for p in await replies_in(alice, room_id) if p["reply_to"] == too_long["msg_id"]]
    assert len(cut) == MAX_PARTS
    assert all(len(p["body"]) <= MAX_BODY for p in cut)
    assert cut[-1]["body"].endswith("\n\n" + CUT_NOTE)


# -- the account, TLS to itself ---------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_without_an_endpoint_there_is_no_assistant_account(server):
    """No --assistant-url: nothing runs and the account does not exist."""
    assert server.service.assistant is None
    alice = await server.user("alice")
    await expect_error(alice.request("user.get", {"username": "assistant"}),
                       ErrorCode.NOT_FOUND)


@pytest_twisted.ensureDeferred
async def test_the_account_is_made_once_and_given_a_new_password_at_each_start(
        make_server, endpoint, tmp_path):
    """The first start creates the account (role bot); a restart on the same data
    gives it a new password (the old one no longer works) and it logs in again."""
    data = tmp_path / "kept"
    first = await with_assistant(make_server, endpoint, data_dir=data)
    assert first.service.assistant is not None
    session = first.service.assistant.session
    assert session is not None and session.login_result is not None
    assert session.login_result["roles"] == [BOT_ROLE]
    old_password = session.password
    await first.stop()
    second = await with_assistant(make_server, endpoint, data_dir=data)
    assert second.service.assistant is not None
    assert second.service.assistant.session is not None
    assert second.service.assistant.session.password != old_password
    conn = await second.connect()
    await expect_error(conn.login("assistant", str(old_password)), ErrorCode.UNAUTHENTICATED)
    alice, events, room_id = await dm_with_bot(second)
    await reply_to(events, await say(alice, room_id, "still there?"), lambda b: b == "Hello world")


@pytest.mark.expect_logged_errors
@pytest_twisted.ensureDeferred
async def test_a_persons_account_of_that_name_is_never_taken_over(make_server, endpoint,
                                                                  tmp_path):
    """An account named like the assistant that is not the assistant's (no bot role):
    the server logs an error and runs without the assistant; the person's password
    still works."""
    data = tmp_path / "taken"
    before = await make_server(data_dir=data)
    await (await before.user("assistant", PASSWORD)).close()
    await before.stop()
    server = await make_server(data_dir=data, assistant=AssistantConfig(url=endpoint.url))
    assert server.service.assistant is None
    await (await server.user("assistant", PASSWORD, register=False)).close()


@pytest_twisted.ensureDeferred
async def test_it_connects_to_a_server_whose_certificate_names_another_host(
        make_server, endpoint, tmp_path):
    """With an operator's certificate for chat.example.com only (not 127.0.0.1), the
    assistant still reaches its server over loopback: it checks the certificate for
    that name and trusts the pinned top of the chain."""
    pki = write_pki(tmp_path / "pki", hostnames=("chat.example.com",), addresses=())
    server = await with_assistant(make_server, endpoint, tls_cert=pki.cert_file,
                                  tls_key=pki.key_file)
    assistant = server.service.assistant
    assert assistant is not None
    assert (assistant.host, assistant.server_name) == ("127.0.0.1", "chat.example.com")
    assert assistant.pin == fingerprint(pki.ca)
    assert assistant.session is not None and assistant.session.connected


# -- twistd chatnet-assistant ------------------------------------------------------------------

def test_twistd_lists_the_assistant_plugin_and_its_options():
    """``twistd --help`` lists chatnet-assistant; its --help explains every option."""
    listing = subprocess.run([command("twistd"), "--help"], capture_output=True, text=True,
                             timeout=60)
    assert "chatnet-assistant" in listing.stdout
    options = subprocess.run([command("twistd"), "chatnet-assistant", "--help"],
                             capture_output=True, text=True, timeout=60)
    for option in ("--host", "--port", "--ca", "--pin", "--user", "--url", "--model",
                   "--key-env", "--timeout", "CHATNET_PASSWORD"):
        assert option in options.stdout, option
    server_options = subprocess.run([command("twistd"), "chatnet", "--help"],
                                    capture_output=True, text=True, timeout=60)
    for option in ("--assistant-url", "--assistant-model", "--assistant-key-env",
                   "--assistant-name", "--assistant-timeout"):
        assert option in server_options.stdout, option


@pytest.mark.parametrize(("args", "expected"), [
    (["--url", "http://127.0.0.1:9"], "--host is required"),
    (["--host", "localhost"], "--url is required"),
    (["--host", "localhost", "--url", "ftp://x"], "--url must be an http:// or https:// URL"),
    (["--host", "localhost", "--url", "http://x", "--pin", "zz"], "--pin must be a SHA-256"),
    (["--host", "localhost", "--url", "http://x", "--key-env", "sk-123abc!"],
     "--key-env must be the NAME of an environment variable"),
    (["--host", "localhost", "--url", "http://x", "--timeout", "soon"],
     "--timeout must be a number of seconds"),
    (["--host", "localhost", "--url", "http://x", "--user", "Not Valid"],
     "--user must be a username"),
    (["--host", "localhost", "--url", "http://x"], "set CHATNET_PASSWORD"),
])
def test_the_assistant_plugin_refuses_bad_options_naming_them(tmp_path, args, expected):
    """Each wrong or missing value stops ``twistd chatnet-assistant`` with a message
    naming it; without the password variable it says to set it."""
    env = {k: v for k, v in os.environ.items() if k != "CHATNET_PASSWORD"}
    result = subprocess.run([command("twistd"), "-n", "--pidfile=", "chatnet-assistant", *args],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr, result.stdout + result.stderr


def test_the_servers_assistant_options_are_checked(tmp_path):
    """``twistd chatnet`` refuses a bad --assistant-url and assistant options without it."""
    for args, expected in ((["--assistant-url", "localhost:8080"], "--assistant-url must be"),
                           (["--assistant-model", "m"], "--assistant-model needs "
                                                        "--assistant-url")):
        result = subprocess.run([command("twistd"), "-n", "--pidfile=", "chatnet",
                                 "--data-dir", str(tmp_path / "d"), *args],
                                capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert result.returncode != 0
        assert expected in result.stdout + result.stderr


@pytest_twisted.ensureDeferred
async def test_twistd_chatnet_assistant_answers_on_its_own(server, endpoint, tmp_path):
    """The standalone plugin, a real ``twistd`` process, logs in to a running server
    with an existing account (password from CHATNET_PASSWORD, the CA file) and
    answers a DM."""
    helper = await server.user("helper")
    await helper.close()
    alice = await server.user("alice")
    events = EventLog(alice, "alice")
    room = await within(alice.request("dm.open", {"username": "helper"}), "dm.open")
    log = tmp_path / "assistant.log"
    env = {**os.environ, "CHATNET_PASSWORD": PASSWORD}
    process = subprocess.Popen(
        [command("twistd"), "-n", "--pidfile=", f"--logfile={log}", "chatnet-assistant",
         "--host", "localhost", "--port", str(server.port), "--ca", str(server.ca),
         "--user", "helper", "--url", endpoint.url, "--model", "m1"],
        cwd=tmp_path, env=env)
    try:
        await within(events.next("presence", username="helper", state="online"),
                     "the assistant's login", 30)
        # Logged in is not yet listening: a question sent during its first catch-up is
        # history to it. It logs when it listens (another process: no event to await).
        await until(lambda: "assistant helper logged in" in log.read_text(),
                    "the assistant to listen", 30)
        question = await say(alice, room["room_id"], "who are you?")
        await reply_to(events, question, lambda b: b == "Hello world", sender="helper")
        assert endpoint.bodies[0]["model"] == "m1"
    finally:
        process.terminate()
        # Not process.wait(): the process closes its TLS connection to the server
        # in this process, whose reactor must keep running meanwhile.
        await until(lambda: process.poll() is not None, "twistd to stop", 20)
    assert "assistant helper logged in" in log.read_text()


# -- the parts, without a network ---------------------------------------------------------------

def test_the_event_stream_decoder_takes_events_cut_anywhere():
    """SSE events come out whole however the bytes are cut: LF, CRLF or CR line ends,
    several data lines joined, comments and other fields ignored, a last event without
    its blank line given by finish(); an endless line is refused."""
    stream = (b": keep-alive\r\n\r\nevent: x\r\ndata: {\"a\": 1}\r\n\r\n"
              b"data: one\ndata:two\n\nid: 7\rdata: [DONE]\r\rdata: tail")
    for cut in range(len(stream) + 1):
        decoder = EventStreamDecoder()
        events = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) + decoder.finish()
        assert events == ['{"a": 1}', "one\ntwo", "[DONE]", "tail"], cut
    one_by_one = EventStreamDecoder()
    assert [e for i in range(len(stream)) for e in one_by_one.feed(stream[i:i + 1])] + \
        one_by_one.finish() == ['{"a": 1}', "one\ntwo", "[DONE]", "tail"]
    with pytest.raises(EventStreamError):
        EventStreamDecoder().feed(b"data: " + b"x" * MAX_LINE)


def test_answers_are_split_between_words_within_the_body_limit():
    """Parts are at most the size given, cut after a line break or a space, and
    nothing is lost but the white space at the cuts."""
    text = "\n".join(" ".join(f"word{i}-{j}" for j in range(30)) for i in range(300))
    parts = split_answer(text, 1000)
    assert all(0 < len(p) <= 1000 for p in parts)
    assert "".join("".join(p.split()) for p in parts) == "".join(text.split())
    assert split_answer("x" * 2500, 1000) == ["x" * 1000, "x" * 1000, "x" * 500]
    assert split_answer("") == [""]


def test_mentions_are_found_in_the_list_or_as_at_name_in_the_body():
    """``@name`` counts in any case and before punctuation, not inside other names or
    addresses; the ``mentions`` list counts too."""
    yes = ["@assistant hi", "hi @Assistant.", "(@assistant)", "ok @assistant, go", "@ASSISTANT?"]
    no = ["assistant hi", "@assistant2", "me@assistant", "@assistant.bot", "@assistant-x"]
    assert all(mentions({"body": b}, "assistant") for b in yes)
    assert not any(mentions({"body": b}, "assistant") for b in no)
    assert mentions({"body": "hi", "mentions": ["bob", "Assistant"]}, "assistant")


def test_memory_keeps_the_newest_turns_within_its_bounds():
    """A prompt holds at most N turns and C characters, newest kept, oldest first, up to
    the question; edits change a turn, deletions remove it; unfinished own turns and
    other rooms never appear; the least active rooms are forgotten."""
    memory = ConversationMemory(max_messages=3, max_chars=40, max_rooms=2)
    for seq, text in enumerate(["first", "second", "third", "fourth", "fifth"], start=1):
        memory.remember(1, Turn(seq, 100 + seq, "bob", text))
    memory.remember(1, Turn(6, 106, "assistant", "", own=True, complete=False))
    memory.remember(2, Turn(1, 201, "eve", "other room"))
    prompt = memory.prompt(1, "SYSTEM", question_seq=5)
    assert prompt == [{"role": "system", "content": "SYSTEM"},
                      {"role": "user", "content": "bob: third"},
                      {"role": "user", "content": "bob: fourth"},
                      {"role": "user", "content": "bob: fifth"}]
    memory.update(1, 104, "FOURTH")
    memory.forget(1, 103)
    memory.update(1, 106, "my answer", complete=True)
    assert [m["content"] for m in memory.prompt(1, "S", 6)[1:]] == [
        "bob: FOURTH", "bob: fifth", "my answer"]
    assert memory.prompt(1, "S", 6)[-1]["role"] == "assistant"
    memory.remember(1, Turn(7, 107, "bob", "y" * 100))  # alone over the characters: cut
    assert memory.prompt(1, "S", 7)[1:] == [{"role": "user", "content": ("bob: " + "y" * 100)[:40]}]
    memory.remember(3, Turn(1, 301, "zed", "new room"))
    assert len(memory) == 2 and memory.turns(2) == []  # room 2 was the least active


def test_the_question_rate_answers_a_burst_then_warns_once():
    """A burst is answered, the next question gets SLOW_DOWN with the wait, later ones
    IGNORE until the bucket allows one again; people are counted apart."""
    from twisted.internet.task import Clock

    clock = Clock()
    rate = QuestionRate(per_minute=6, burst=2, clock=clock)
    assert [rate.admit("a")[0] for _ in range(2)] == [Verdict.ANSWER] * 2
    verdict, wait = rate.admit("a")
    assert verdict is Verdict.SLOW_DOWN and wait == pytest.approx(10.0)
    assert rate.admit("a")[0] is Verdict.IGNORE
    assert rate.admit("b")[0] is Verdict.ANSWER
    clock.advance(10)
    assert rate.admit("a")[0] is Verdict.ANSWER
    assert rate.admit("a")[0] is Verdict.SLOW_DOWN
    assert "Ask me again in 10 s" in rate.slow_down(9.2)


def test_assistant_options_are_validated_with_their_names():
    """The server's assistant options: a URL is required for the others, the URL must
    be http(s), the key is a variable's name; requests go to {url}/v1/chat/completions
    (a URL already ending in /v1 gets no second one)."""
    assert AssistantConfig.from_options({}, "assistant-") is None
    config = AssistantConfig.from_options({"assistant-url": "http://h:1/", "assistant-name":
                                           "Bot", "assistant-timeout": "5"}, "assistant-")
    assert config is not None and config.name == "bot" and config.timeout == 5.0
    assert config.completions_url == "http://h:1/v1/chat/completions"
    assert AssistantConfig(url="http://h:11434/v1").completions_url == \
        "http://h:11434/v1/chat/completions"
    assert AssistantConfig(url="u", key_env="K").api_key({"K": " sk "}) == "sk"
    assert AssistantConfig(url="u", key_env="K").api_key({}) is None
    for options, message in (({"assistant-key-env": "K"}, "--assistant-key-env needs"),
                             ({"assistant-url": "http://h?x=1"}, r"without \?query"),
                             ({"assistant-url": "http://h", "assistant-timeout": "0"},
                              "between 0.1 and 3600")):
        with pytest.raises(ConfigError, match=message):
            AssistantConfig.from_options(options, "assistant-")


@pytest_twisted.ensureDeferred
async def test_the_completions_client_reads_whole_and_streamed_answers(endpoint):
    """Straight against the endpoint: a JSON answer, a stream without [DONE] that ends
    cleanly, a stream cut at max_chars, an error inside the stream."""
    client = ChatCompletions(reactor, endpoint.url + "/v1/chat/completions", timeout=5,
                             max_chars=12)
    pieces: list[str] = []
    try:
        endpoint.then(Whole("whole answer"), Stream(["no ", "done"], done=False),
                      Stream(["0123456789", "abcdef", "never read"]),
                      Garbage(b'data: {"error": {"message": "overloaded"}}\n\n'))
        assert (await client.complete([], pieces.append)).text == "whole answer"
        assert (await client.complete([], pieces.append)).text == "no done"
        cut = await client.complete([], pieces.append)
        assert (cut.text, cut.cut) == ("0123456789ab", True)
        with pytest.raises(CompletionError) as failed:
            await client.complete([], pieces.append)
        assert failed.value.kind is FailureKind.REFUSED and "overloaded" in failed.value.detail
        assert "reported an error" in failed.value.apology
        assert "model" not in endpoint.bodies[0] and "authorization" not in endpoint.headers[0]
    finally:
        await client.close()
