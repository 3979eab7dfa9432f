"""The full-text index of messages: what is indexed, how a query becomes a match
expression, and the snippet shown with a result (PROTOCOL.md 6, ``msg.search``;
docs/protocol.md "Search").

Both engines index the same *index text*, derived from a message's body:

- Words in scripts that separate them with spaces are left as they are; the
  engine's own stemmer makes "uploaded" and "upload" one term (SQLite FTS5's
  ``porter`` tokenizer, PostgreSQL's ``english`` text search configuration).
- Runs of Chinese and Japanese characters, written without spaces, are cut
  into overlapping pairs (``报告数据`` → ``报告 告数 数据 据``; the last character
  also alone), so that any word of two or more characters is a phrase of
  consecutive pairs, and one character is a pair's prefix.

SQLite keeps the index in a contentless FTS5 table (``message_search``, rowid =
``msg_id``): no second copy of the text, so removing a message from it means
giving the text it was indexed with, which :func:`index_text` recomputes from
the body. PostgreSQL keeps a ``tsvector`` column on ``messages`` with a GIN index.
The store updates the index in the same transaction as the message (send, edit,
delete, expiry, room deletion): a deleted or expired message never matches.

On SQLite a send does not write the FTS5 table itself: each transaction that
does costs a new index segment (about half a millisecond at a million
messages), so the send queues its ``msg_id`` in ``search_queue`` and
:meth:`SearchIndex.index_queued` (run by the server a few times a second)
moves the queue into the index in one transaction. ``msg.search`` matches the
queued messages directly (:func:`matches`), so what was sent is found at
once; an edit or a deletion of a queued message just changes what the
indexer will find (or takes it out of the queue).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import snowballstemmer

#: Han ideographs (with extensions and compatibility forms), Hiragana, Katakana:
#: scripts written without spaces between words.
_CJK = ("\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
        "\U00020000-\U0002fa1f")
_CJK_RUN = re.compile(f"[{_CJK}]+")
#: A query's parts: a CJK run, or a word of letters and digits.
_QUERY_PART = re.compile(f"[{_CJK}]+|[^\\W{_CJK}]+")
_WORD = re.compile(f"[^\\W{_CJK}]+")

#: Characters of body a snippet shows around the first match.
SNIPPET_CHARS = 160
#: Terms a query may have (the rest are ignored): each is a condition.
MAX_TERMS = 16

_stemmer = snowballstemmer.stemmer("porter")


def index_text(body: str) -> str:
    """The text indexed for ``body`` (module docstring): CJK runs as overlapping
    pairs plus their last character, everything else unchanged."""
    def pairs(match: re.Match[str]) -> str:
        run = match.group(0)
        grams = [run[i:i + 2] for i in range(len(run) - 1)]
        grams.append(run[-1])
        return " " + " ".join(grams) + " "

    return _CJK_RUN.sub(pairs, body)


@dataclass(frozen=True)
class Term:
    """One condition of a query.

    Attributes:
        kind: ``word`` (matched by stem), ``phrase`` (a CJK word: its pairs, in
            order) or ``prefix`` (one CJK character: any pair it begins).
        text: the word, the space-separated pairs, or the character.
        shown: what to look for in a body when marking a snippet.
    """

    kind: str
    text: str
    shown: str


def parse_query(query: str) -> list[Term]:
    """The terms of a free-text query (every term must match), at most
    :data:`MAX_TERMS`; punctuation and operators are not syntax, only separators."""
    terms: list[Term] = []
    seen: set[tuple[str, str]] = set()
    for part in _QUERY_PART.findall(query):
        if _CJK_RUN.fullmatch(part):
            if len(part) == 1:
                term = Term("prefix", part, part)
            else:
                term = Term("phrase", " ".join(part[i:i + 2] for i in range(len(part) - 1)),
                            part)
        else:
            term = Term("word", part.casefold(), part.casefold())
        if (term.kind, term.text) not in seen:
            seen.add((term.kind, term.text))
            terms.append(term)
        if len(terms) == MAX_TERMS:
            break
    return terms


def fts5_match(terms: list[Term]) -> str:
    """An FTS5 ``MATCH`` expression for ``terms``: every one, each quoted (so that
    nothing in the query is FTS5 syntax)."""
    def quoted(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'

    parts = []
    for term in terms:
        parts.append(quoted(term.text) + ("*" if term.kind == "prefix" else ""))
    return " AND ".join(parts)


def postgres_tsquery(terms: list[Term]) -> tuple[str, list[Any]]:
    """A PostgreSQL ``tsquery`` expression for ``terms`` (all of them) and its
    parameters: words through ``plainto_tsquery``, CJK words as phrases, one CJK
    character as a prefix."""
    parts: list[str] = []
    args: list[Any] = []
    for term in terms:
        if term.kind == "word":
            parts.append("plainto_tsquery('english', ?)")
            args.append(term.text)
        elif term.kind == "phrase":
            parts.append("phraseto_tsquery('english', ?)")
            args.append(term.text)
        else:
            parts.append("to_tsquery('english', ?)")
            args.append(term.text + ":*")
    return "(" + " && ".join(parts) + ")", args


def snippet(body: str, terms: list[Term], width: int = SNIPPET_CHARS) -> dict[str, Any]:
    """The part of ``body`` around its first match, with every match marked.

    Words are marked when their stem is a query word's stem (Porter, as the
    index stems them), CJK words wherever they occur.

    Returns:
        ``{text, marks}``: ``text`` is at most ``width`` characters of the body
        (``…`` where it was cut), ``marks`` the ``[start, end]`` offsets of the
        matches in ``text``, in Unicode code points, end exclusive.
    """
    stems = {_stemmer.stemWord(t.text) for t in terms if t.kind == "word"}
    marks: list[tuple[int, int]] = []
    if stems:
        for match in _WORD.finditer(body):
            if _stemmer.stemWord(match.group(0).casefold()) in stems:
                marks.append(match.span())
    for term in terms:
        if term.kind != "word":
            start = body.find(term.shown)
            while start >= 0:
                marks.append((start, start + len(term.shown)))
                start = body.find(term.shown, start + len(term.shown))
    marks.sort()
    first = marks[0][0] if marks else 0
    start = max(0, min(first - width // 4, len(body) - width))
    end = min(len(body), start + width)
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(body) else ""
    text = prefix + body[start:end] + suffix
    shift = len(prefix) - start
    shown = [[max(a, start) + shift, min(b, end) + shift] for a, b in marks
             if a < end and b > start]
    merged: list[list[int]] = []
    for mark in shown:
        if merged and mark[0] <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], mark[1])
        else:
            merged.append(mark)
    return {"text": text, "marks": merged}


def _plain(word: str) -> str:
    """``word`` casefolded without diacritics (as FTS5's ``remove_diacritics 2``)."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def matches(body: str, terms: list[Term]) -> bool:
    """Whether ``body`` matches every term as the index would: words by Porter stem
    (case and accents aside), CJK words and characters where they occur."""
    if not terms:
        return False
    stems = {_stemmer.stemWord(_plain(m.group(0))) for m in _WORD.finditer(body)}
    for term in terms:
        if term.kind == "word":
            if _stemmer.stemWord(_plain(term.text)) not in stems:
                return False
        elif term.shown not in body:
            return False
    return True


class SearchIndex:
    """Keeps an engine's index in step with ``messages`` (module docstring).

    Every method runs inside the caller's transaction (a :class:`Txn`).
    """

    @staticmethod
    def add(t: Any, msg_id: int, body: str) -> None:
        """Index a message (new, or edited after :meth:`remove` of its old body):
        at once on PostgreSQL, through the queue on SQLite."""
        if not body:
            return
        if t.engine.name == "sqlite":
            t.execute("INSERT OR IGNORE INTO search_queue (msg_id) VALUES (?)", (msg_id,))
        else:
            t.execute("UPDATE messages SET search = to_tsvector('english', ?) "
                      "WHERE msg_id = ?", (index_text(body), msg_id))

    @staticmethod
    def add_now(t: Any, msg_id: int, body: str) -> None:
        """Index a message at once, queue or not (the indexer, the backlog)."""
        if not body:
            return
        if t.engine.name == "sqlite":
            t.execute("INSERT INTO message_search (rowid, text) VALUES (?, ?)",
                      (msg_id, index_text(body)))
        else:
            SearchIndex.add(t, msg_id, body)

    @staticmethod
    def index_queued(t: Any, batch: int) -> int:
        """Move up to ``batch`` queued messages into the index (SQLite; nothing to
        do on PostgreSQL). A message deleted or expired meanwhile is dropped.

        Returns:
            how many queue entries were handled.
        """
        if t.engine.name != "sqlite":
            return 0
        rows = t.execute("SELECT q.msg_id, m.body, m.deleted FROM search_queue q JOIN "
                         "messages m ON m.msg_id = q.msg_id ORDER BY q.msg_id LIMIT ?",
                         (batch,)).fetchall()
        for msg_id, body, deleted in rows:
            if not deleted:
                SearchIndex.add_now(t, int(msg_id), str(body or ""))
        if rows:
            t.execute("DELETE FROM search_queue WHERE msg_id <= ?", (int(rows[-1][0]),))
        return len(rows)

    @staticmethod
    def insert_message(t: Any, columns: str, values: tuple[Any, ...], msg_id: int,
                       body: str) -> None:
        """``INSERT INTO messages (columns) VALUES (values)`` and index it: on
        PostgreSQL the ``tsvector`` is written with the row (an ``UPDATE`` after
        it would leave a dead row version per message), on SQLite the message is
        queued for the indexer (module docstring)."""
        marks = ", ".join("?" * len(values))
        if t.engine.name == "sqlite" or not body:
            t.execute(f"INSERT INTO messages ({columns}) VALUES ({marks})", values)
            SearchIndex.add(t, msg_id, body)
        else:
            t.execute(f"INSERT INTO messages ({columns}, search) VALUES ({marks}, "
                      "to_tsvector('english', ?))", (*values, index_text(body)))

    @staticmethod
    def remove(t: Any, msg_id: int, body: str) -> None:
        """Forget a message; ``body`` is the text it was indexed with (SQLite's
        contentless table removes exactly the terms it is given)."""
        if not body:
            return
        if t.engine.name == "sqlite":
            t.execute("DELETE FROM search_queue WHERE msg_id = ?", (msg_id,))
            if t.rowcount:
                return  # queued, so never indexed: nothing to take out
            t.execute("INSERT INTO message_search (message_search, rowid, text) "
                      "VALUES ('delete', ?, ?)", (msg_id, index_text(body)))
        else:
            t.execute("UPDATE messages SET search = NULL WHERE msg_id = ?", (msg_id,))

    @classmethod
    def remove_many(cls, t: Any, rows: list[tuple[Any, ...]]) -> None:
        """Forget ``[(msg_id, body)]``."""
        for msg_id, body in rows:
            cls.remove(t, int(msg_id), str(body or ""))
