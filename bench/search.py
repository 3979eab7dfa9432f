"""What the full-text index costs and gives (docs/benchmarks.md "Search").

1. **Write cost**: the send transaction with and without its index row, on the
   store itself (SQLite, groups of one: the cost a quiet server pays per
   message): ``ChatStore.send_message`` N times, then the same with the index
   write turned off, alternating rounds, and the difference per message.
2. **Query time** over a room history of ``--messages`` messages (a mix of
   English and Chinese sentences): ``msg.search`` through the store for a
   common word, a rare one, an English stem, a two-character Chinese word and
   two words, on SQLite and PostgreSQL (``--postgres CONNINFO``).

Usage::

    .venv/bin/python bench/search.py --messages 100000 [--postgres postgresql://127.0.0.1/test]
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


async def fill(store: ChatStore, messages: int, rng: random.Random) -> tuple[int, int]:
    owner = store.ids.next_id()
    await store.create_user(owner, "owner", "Owner", "h", (), 0)
    room = store.ids.next_id()
    await store.create_room(room, "group", "bench", "", "public", owner, 0)
    for n in range(messages):
        await store.send_message(store.ids.next_id(), room, owner, "owner", 1_000 + n,
                                 sentence(rng, n), f"c{n}", None, None, None)
    return owner, room


async def write_cost(store: ChatStore, owner: int, room: int, rounds: int, per_round: int
                     ) -> tuple[float, float]:
    """Median µs per send with and without the index write."""
    real_add = search_module.SearchIndex.add
    with_index: list[float] = []
    without: list[float] = []
    rng = random.Random(7)
    for r in range(rounds):
        for indexed in (True, False) if r % 2 == 0 else (False, True):
            search_module.SearchIndex.add = real_add if indexed else staticmethod(  # type: ignore[method-assign]
                lambda t, msg_id, body: None)
            start = time.perf_counter()
            for n in range(per_round):
                await store.send_message(store.ids.next_id(), room, owner, "owner",
                                         10**12 + r * per_round + n, sentence(rng, n + 1),
                                         f"w{r}-{indexed}-{n}", None, None, None)
            took = (time.perf_counter() - start) / per_round * 1e6
            (with_index if indexed else without).append(took)
    search_module.SearchIndex.add = real_add  # type: ignore[method-assign]
    return statistics.median(with_index), statistics.median(without)


async def query_times(store: ChatStore, owner: int, repeat: int) -> list[tuple[str, float, int]]:
    rows = []
    for query in ("the", "zyxwvut", "upload", "数据", "deploy friday"):
        took = []
        found = 0
        for _ in range(repeat):
            start = time.perf_counter()
            messages, _more = await store.search(owner, query, None, None, None, None, 50,
                                                 10**13)
            took.append((time.perf_counter() - start) * 1000)
            found = len(messages)
        rows.append((query, statistics.median(took), found))
    return rows


async def run(reactor: Any, args: argparse.Namespace) -> None:
    engines: list[tuple[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="chatnet-bench-search-"))
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
        owner, room = await fill(store, args.messages, random.Random(1))
        print(f"{name}: {args.messages:,} messages stored in "
              f"{time.perf_counter() - started:.1f} s")
        indexed, plain = await write_cost(store, owner, room, args.rounds, args.per_round)
        print(f"{name}: send transaction {plain:.0f} µs without the index row, {indexed:.0f} µs "
              f"with it (+{indexed - plain:.0f} µs, {100 * (indexed - plain) / plain:+.0f} %)")
        for query, ms, found in await query_times(store, owner, args.repeat):
            print(f"{name}: search {query!r:16} {ms:7.2f} ms (median of {args.repeat}), "
                  f"{found} results on the page")
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--postgres", help="a PostgreSQL conninfo (its tables are emptied)")
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main()
