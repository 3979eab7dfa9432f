"""Full-text search (chatnet.store.search, ``msg.search``) on both engines: Chinese
words of two characters, English stems, ranking, snippets, and an index that
forgets deleted, expired and edited text at once."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from chatnet.store import ChatStore, Database
from chatnet.store.search import index_text, parse_query, snippet
from tests.core.test_store import T0, new_room, new_user, send


async def found(store: ChatStore, user: Any, query: str, **kw: Any) -> list[str]:
    """The bodies ``user`` finds for ``query``, in result order."""
    args = {"room_id": None, "sender": None, "since": None, "until": None, "limit": 50, **kw}
    messages, _more = await store.search(user.id, query, args.pop("room_id"),
                                         args.pop("sender"), args.pop("since"),
                                         args.pop("until"), args.pop("limit"), T0 + 10_000,
                                         **args)
    return [m["body"] for m in messages]


async def indexed(store: ChatStore, word: str) -> int:
    """How many entries the index itself holds for ``word`` (visibility aside)."""
    def count(t: Any) -> int:
        if t.engine.name == "sqlite":
            return int(t.scalar("SELECT COUNT(*) FROM message_search WHERE message_search "
                                "MATCH ?", (f'"{word}"',)))
        return int(t.scalar("SELECT COUNT(*) FROM messages WHERE search @@ "
                            "plainto_tsquery('english', ?)", (word,)))

    return await store.db.run_interaction("indexed", count)


def test_index_text_cuts_cjk_runs_into_pairs():
    """CJK runs become overlapping pairs plus their last character; other text stays."""
    assert index_text("报告数据已上传") .split() == ["报告", "告数", "数据", "据已", "已上",
                                                   "上传", "传"]
    assert index_text("see 数据 now").split() == ["see", "数据", "据", "now"]
    assert [t.kind for t in parse_query("数据 upload 传 \"x\" OR")] == [
        "phrase", "word", "prefix", "word", "word"]


@pytest_twisted.ensureDeferred
async def test_chinese_two_character_words_and_english_stems_are_found(store):
    """数据 is found inside 报告数据已上传 (no spaces in Chinese), one character too;
    "upload" finds "uploaded"; words must all match; a CJK phrase must be contiguous."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room = await new_room(store, alice, bob)
    for i, body in enumerate(["报告数据已上传", "the files were uploaded yesterday",
                              "数据库维护在周五", "上传失败", "nothing relevant here"]):
        await send(store, room, alice, body, ts=T0 + i)
    assert await found(store, bob, "数据", sort="recent") == ["数据库维护在周五", "报告数据已上传"]
    assert await found(store, bob, "上传", sort="recent") == ["上传失败", "报告数据已上传"]
    assert await found(store, bob, "传", sort="recent") == ["上传失败", "报告数据已上传"]
    assert await found(store, bob, "数据已上传") == ["报告数据已上传"]
    assert await found(store, bob, "数据上传") == []
    assert await found(store, bob, "upload") == ["the files were uploaded yesterday"]
    assert await found(store, bob, "UPLOADING file") == ["the files were uploaded yesterday"]
    assert await found(store, bob, "upload missing") == []


@pytest_twisted.ensureDeferred
async def test_results_are_ranked_by_relevance_then_recency(store):
    """The message where the words weigh most comes first; equal ones newest first;
    sort=recent is newest first whatever the relevance; offset pages on."""
    alice = await new_user(store, "alice")
    room = await new_room(store, alice)
    bodies = ["deploy deploy deploy the release", "a long note that mentions deploy once "
              "among many other words about lunch and weather and trains",
              "deploy today", "deploy tomorrow"]
    for i, body in enumerate(bodies):
        await send(store, room, alice, body, ts=T0 + i)
    await store.index_queued()  # ranked from the index, not from SQLite's queue
    ranked = await found(store, alice, "deploy")
    assert ranked[0] == "deploy deploy deploy the release"
    assert ranked[-1].startswith("a long note")
    assert ranked.index("deploy tomorrow") < ranked.index("deploy today")
    assert await found(store, alice, "deploy", sort="recent") == bodies[::-1]
    assert await found(store, alice, "deploy", limit=2, offset=2) == ranked[2:]


@pytest_twisted.ensureDeferred
async def test_results_carry_a_snippet_with_the_matches_marked(store):
    """Each result has snippet {text, marks}: the stemmed word and the CJK word are
    marked where they are; a long body is cut around the first match."""
    alice = await new_user(store, "alice")
    room = await new_room(store, alice)
    await send(store, room, alice, "Files UPLOADED: 报告数据已上传, upload again", ts=T0)
    await send(store, room, alice, "x " * 300 + "the upload finished" + " y" * 300, ts=T0 + 1)
    messages, _more = await store.search(alice.id, "upload 数据", None, None, None, None, 50,
                                         T0 + 10)
    [first] = messages
    text = first["snippet"]["text"]
    assert [text[a:b] for a, b in first["snippet"]["marks"]] == ["UPLOADED", "数据", "upload"]
    messages, _more = await store.search(alice.id, "upload", None, None, None, None, 50,
                                         T0 + 10)
    long = next(m for m in messages if m["body"].startswith("x "))["snippet"]
    assert long["text"].startswith("…") and long["text"].endswith("…")
    assert len(long["text"]) <= 162
    assert [long["text"][a:b] for a, b in long["marks"]] == ["upload"]


@pytest_twisted.ensureDeferred
async def test_deleted_expired_edited_and_room_deleted_text_never_matches(store):
    """Deleting, expiring, editing a message or deleting its room takes the old text
    out of the index in the same transaction: it matches nothing, and the index no
    longer holds it."""
    alice = await new_user(store, "alice")
    room = await new_room(store, alice)
    other = await new_room(store, alice, name="other")
    gone = (await send(store, room, alice, "zebra deleted", ts=T0)).message["msg_id"]
    await send(store, room, alice, "zebra burns", ts=T0, ttl=1)
    edited = (await send(store, room, alice, "zebra edited", ts=T0)).message["msg_id"]
    await send(store, other, alice, "zebra in a deleted room", ts=T0)
    await send(store, room, alice, "zebra stays", ts=T0)
    await store.index_queued()
    assert await indexed(store, "zebra") == 5
    await store.delete_message(room, gone, alice.id, False, T0 + 1)
    assert await store.expire_due(T0 + 1000) != []
    await store.edit_message(room, edited, alice.id, "giraffe now", T0 + 2, T0 + 2)
    await store.delete_room(other)
    assert await found(store, alice, "zebra") == ["zebra stays"]
    assert await found(store, alice, "giraffe") == ["giraffe now"]
    assert await indexed(store, "zebra") == 1
    assert await indexed(store, "deleted") == 0
    assert await indexed(store, "burn") == 0


@pytest_twisted.ensureDeferred
async def test_messages_from_before_the_index_are_indexed_at_start(engine):
    """A database from before schema 9: its messages are indexed by index_backlog
    (which the server runs at start), in batches, and then found."""
    db = Database(engine, reactor)
    try:
        assert await db.migrate(up_to=8) == 8
        store = ChatStore(db)
        alice = await new_user(store, "alice")

        def old_messages(t: Any) -> None:
            room = 77
            t.execute("INSERT INTO rooms (room_id, kind, name, topic, visibility, owner_id, "
                      "created_ts, last_seq) VALUES (?, 'group', 'old', '', 'public', ?, 0, 5)",
                      (room, alice.id))
            t.execute("INSERT INTO room_members (room_id, user_id, role, joined_ts, read_seq) "
                      "VALUES (?, ?, 'owner', 0, 0)", (room, alice.id))
            for seq in range(1, 6):
                t.execute("INSERT INTO messages (msg_id, room_id, seq, sender_id, ts, body, "
                          "client_msg_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (1000 + seq, room, seq, alice.id, T0 + seq, f"旧的消息 number {seq}",
                           f"old{seq}"))

        await db.run_interaction("old_messages", old_messages)
        await db.migrate()
        assert await found(store, alice, "消息") == []
        assert await store.index_backlog(batch=2) == 5
        assert await store.index_backlog() == 0
        assert len(await found(store, alice, "消息")) == 5
        assert await found(store, alice, "消息 3") == ["旧的消息 number 3"]
    finally:
        db.close()


def test_snippet_of_a_short_body_is_the_body():
    """A body shorter than the snippet is shown whole, marks on every match."""
    terms = parse_query("cat")
    assert snippet("Cats and a cat", terms) == {"text": "Cats and a cat",
                                                 "marks": [[0, 4], [11, 14]]}


@pytest.mark.parametrize("query", ["", "%", "   ", "!!!"])
def test_a_query_without_words_has_no_terms(query):
    """Nothing searchable in the query: no terms (the store then finds nothing)."""
    assert parse_query(query) == []


@pytest_twisted.ensureDeferred
async def test_relevance_ranks_the_newest_matches_and_recent_reaches_all(store, monkeypatch):
    """sort=relevance ranks only the RANK_WINDOW newest matches (a common word in a
    huge history stays fast); sort=recent pages through every match."""
    from chatnet.store import messages as message_store

    monkeypatch.setattr(message_store, "RANK_WINDOW", 3)
    alice = await new_user(store, "alice")
    room = await new_room(store, alice)
    await send(store, room, alice, "report report report report", ts=T0)
    for i in range(4):
        await send(store, room, alice, f"a longer line that mentions the report once, {i}",
                   ts=T0 + 1 + i)
    await store.index_queued()
    ranked = await found(store, alice, "report")
    assert len(ranked) == 3 and "report report report report" not in ranked
    recent = await found(store, alice, "report", sort="recent", limit=2)
    assert recent == ["a longer line that mentions the report once, 3",
                      "a longer line that mentions the report once, 2"]
    everything = await found(store, alice, "report", sort="recent")
    assert everything[-1] == "report report report report" and len(everything) == 5


@pytest_twisted.ensureDeferred
async def test_a_message_is_found_before_the_indexer_runs_and_then_from_the_index(store):
    """SQLite queues new messages for the indexer: they are found at once all the
    same; an edit or deletion while queued leaves nothing stale behind; the indexer
    then empties the queue into the index (PostgreSQL indexes at once)."""
    alice = await new_user(store, "alice")
    room = await new_room(store, alice)
    await send(store, room, alice, "quokka sighted", ts=T0)
    edited = (await send(store, room, alice, "quokka typo", ts=T0 + 1)).message["msg_id"]
    gone = (await send(store, room, alice, "quokka deleted", ts=T0 + 2)).message["msg_id"]
    assert await found(store, alice, "quokka", sort="recent") == [
        "quokka deleted", "quokka typo", "quokka sighted"]
    await store.edit_message(room, edited, alice.id, "wombat now", T0 + 3, T0 + 3)
    await store.delete_message(room, gone, alice.id, False, T0 + 4)
    assert await found(store, alice, "quokka") == ["quokka sighted"]
    assert await found(store, alice, "wombat") == ["wombat now"]
    await store.index_queued()
    queued = await store.db.run_interaction("queued", lambda t: int(t.scalar(
        "SELECT COUNT(*) FROM search_queue")) if t.engine.name == "sqlite" else 0)
    assert queued == 0
    assert await indexed(store, "quokka") == 1
    assert await indexed(store, "wombat") == 1
    assert await indexed(store, "typo") == 0 and await indexed(store, "deleted") == 0
    assert await found(store, alice, "quokka") == ["quokka sighted"]
