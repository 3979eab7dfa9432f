"""What the full-text index costs and gives (docs/benchmarks.md "Search").

1. **Fill**: ``--messages`` messages (a mix of English and Chinese sentences,
   one in a thousand with a rare word) in ``--rooms`` rooms, written in bulk
   (10,000 a transaction, with their index rows), then the index's size.
2. **Write cost**: the send transaction with and without indexing, on the
   store itself (groups of one: the cost a quiet server pays per message):
   ``ChatStore.send_message`` N times (on SQLite plus the indexer's batch for
   them), then the same with the index write turned off, alternating rounds,
   and the difference per message.
3. **Query times**, p50 and p99 over ``--repeat`` runs each: ``msg.search``
   (through the store) for a common word, a rare one, an English stem, a
   two-character Chinese word and two words; ``msg.history`` pages of 50 at
   random seqs and around random dates — against DESIGN.md's targets
   (history p99 <= 10 ms, search p99 <= 100 ms at 1M messages).

On SQLite, and on PostgreSQL with ``--postgres CONNINFO`` (its chatnet tables
are emptied).

Usage::

    .venv/bin/python bench/search.py --messages 1000000 [--postgres postgresql://127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatnet.store import ChatStore, Database, PostgresEngine, SqliteEngine
from chatnet.store import search as search_module

ENGLISH = ["the release is uploaded", "deploy the build on friday", "lunch at noon today",
           "the report files were uploading slowly", "please review the pull request",
           "meeting moved to the big room", "coffee machine is broken again"]
CHINESE = ["报告数据已上传", "周五发布新版本", "今天中午一起吃饭", "数据库维护在周末进行",
           "请检查一下代码", "会议改到大会议室"]


def sentence(rng: random.Random, n: int) -> str:
    base = rng.choice(ENGLISH if n % 3 else CHINESE)
    return f"{base} #{n}" if n % 1000 else f"{base} zyxwvut rare marker"


async def fill(store: ChatStore, messages: int, rooms: int, rng: random.Random
               ) -> tuple[int, list[int]]:
    """Bulk-write ``messages`` messages over ``rooms`` rooms, with their index rows."""
    owner = store.ids.next_id()
    await store.create_user(owner, "owner", "Owner", "h", (), 0)
    room_ids = []
    for n in range(rooms):
        room = store.ids.next_id()
        await store.create_room(room, "group", f"bench{n}", "", "public", owner, 0)
        room_ids.append(room)
    per_room = messages // rooms
    batch = 10_000

    def write(t: Any, room: int, first: int, count: int) -> None:
        rows = []
        for seq in range(first, first + count):
            n = seq + room_ids.index(room) * per_room
            rows.append((store.ids.next_id(), room, seq, owner, 1_000_000 + n * 1000,
                         sentence(rng, n), f"b{room}-{seq}"))
        columns = "msg_id, room_id, seq, sender_id, ts, body, client_msg_id"
        for row in rows:
            if t.engine.name == "sqlite":
                # Straight into the index, as the start-up backlog does (the queue is
                # for sends: search reads it message by message).
                t.execute(f"INSERT INTO messages ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?)", row)
                search_module.SearchIndex.add_now(t, row[0], row[5])
            else:
                search_module.SearchIndex.insert_message(t, columns, row, row[0], row[5])
        t.execute("UPDATE rooms SET last_seq = ? WHERE room_id = ?", (first + count - 1, room))

    for room in room_ids:
        for first in range(1, per_room + 1, batch):
            await store.db.run_interaction("bench_fill", write, room, first,
                                           min(batch, per_room - first + 1))
    return owner, room_ids


async def index_size(store: ChatStore) -> int:
    """Bytes the search index takes (SQLite: the FTS5 segment blocks, plus ~32
    bytes per segment-index row; PostgreSQL: the GIN index plus the tsvector
    column)."""
    def size(t: Any) -> int:
        if t.engine.name == "sqlite":
            # The FTS5 segments (blocks) and their b-tree index: what the index stores.
            data = int(t.scalar("SELECT COALESCE(SUM(LENGTH(block)), 0) FROM "
                                "message_search_data") or 0)
            idx = int(t.scalar("SELECT COUNT(*) FROM message_search_idx") or 0) * 32
            return data + idx
        return int(t.scalar("SELECT pg_relation_size('messages_search') + "
                            "COALESCE(SUM(pg_column_size(search)), 0) FROM messages"))

    return await store.db.run_interaction("index_size", size)


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) of ``samples``."""
    ordered = sorted(samples)
    return (ordered[len(ordered) // 2],
            ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))])


async def write_cost(store: ChatStore, owner: int, room: int, rounds: int, per_round: int
                     ) -> tuple[float, float]:
    """Median µs per send with and without the index write."""
    index = search_module.SearchIndex
    real_insert = index.insert_message

    def plain_insert(t: Any, columns: str, values: tuple[Any, ...], msg_id: int,
                     body: str) -> None:
        marks = ", ".join("?" * len(values))
        t.execute(f"INSERT INTO messages ({columns}) VALUES ({marks})", values)

    with_index: list[float] = []
    without: list[float] = []
    rng = random.Random(7)
    for r in range(rounds):
        for indexed in (True, False) if r % 2 == 0 else (False, True):
            index.insert_message = real_insert if indexed else plain_insert  # type: ignore[method-assign,assignment]
            start = time.perf_counter()
            for n in range(per_round):
                await store.send_message(store.ids.next_id(), room, owner, "owner",
                                         10**12 + r * per_round + n, sentence(rng, n + 1),
                                         f"w{r}-{indexed}-{n}", None, None, None)
            if indexed:
                # SQLite's queue is indexed later in one batch: that is the index's
                # cost too (nothing to do on PostgreSQL).
                await store.index_queued(per_round)
            took = (time.perf_counter() - start) / per_round * 1e6
            (with_index if indexed else without).append(took)
    index.insert_message = real_insert  # type: ignore[method-assign]
    return statistics.median(with_index), statistics.median(without)


async def query_times(store: ChatStore, owner: int, room_ids: list[int], messages: int,
                      repeat: int) -> list[tuple[str, float, float, int]]:
    """(what, p50 ms, p99 ms, results) for searches and history pages."""
    rows = []
    now = 10**13
    for query in ("the", "zyxwvut", "upload", "数据", "deploy friday"):
        took = []
        found = 0
        for _ in range(repeat):
            start = time.perf_counter()
            page, _more = await store.search(owner, query, None, None, None, None, 50, now)
            took.append((time.perf_counter() - start) * 1000)
            found = len(page)
        p50, p99 = percentiles(took)
        rows.append((f"search {query!r}", p50, p99, found))
    rng = random.Random(3)
    per_room = messages // len(room_ids)
    for label in ("history by seq", "history by date"):
        took = []
        for _ in range(repeat):
            room = rng.choice(room_ids)
            start = time.perf_counter()
            if label == "history by seq":
                page, _more = await store.history(room, rng.randint(2, per_room), None, 50, now,
                                                  viewer_id=owner)
            else:
                n = rng.randint(0, per_room - 1) + room_ids.index(room) * per_room
                page, _a, _b, _c = await store.history_around(room, None, 1_000_000 + n * 1000,
                                                              50, now, viewer_id=owner)
            took.append((time.perf_counter() - start) * 1000)
        p50, p99 = percentiles(took)
        rows.append((label, p50, p99, len(page)))
    return rows


async def run(reactor: Any, args: argparse.Namespace) -> None:
    engines: list[tuple[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="chatnet-bench-search-"))
    if not args.no_sqlite:
        engines.append(("sqlite", SqliteEngine(work / "search.db")))
    if args.postgres:
        engines.append(("postgresql", PostgresEngine(args.postgres)))
    for name, engine in engines:
        db = Database(engine, reactor)
        await db.migrate()
        store = ChatStore(db)
        if name == "postgresql":
            await db.run_interaction("reset", lambda t: t.execute(
                "TRUNCATE messages, rooms, room_members, users CASCADE"))
        started = time.perf_counter()
        owner, room_ids = await fill(store, args.messages, args.rooms, random.Random(1))
        if name == "postgresql":
            # What autovacuum would have done by then: the planner needs the
            # statistics (term frequencies) to choose between the GIN index and
            # walking msg_id backwards.
            await db.run_interaction("analyze", lambda t: t.execute("ANALYZE"))
        print(f"{name}: {args.messages:,} messages in {args.rooms} rooms written in "
              f"{time.perf_counter() - started:.0f} s; index {await index_size(store) / 2**20:.0f}"
              " MiB", flush=True)
        for what, p50, p99, found in await query_times(store, owner, room_ids, args.messages,
                                                       args.repeat):
            print(f"{name}: {what:24} p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  "
                  f"({found} on the page)", flush=True)
        indexed, plain = await write_cost(store, owner, room_ids[0], args.rounds,
                                          args.per_round)
        print(f"{name}: send transaction {plain:.0f} µs without the index row, {indexed:.0f} µs "
              f"with it (+{indexed - plain:.0f} µs, {100 * (indexed - plain) / plain:+.0f} %)",
              flush=True)
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--postgres", help="a PostgreSQL conninfo (its tables are emptied)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main()
