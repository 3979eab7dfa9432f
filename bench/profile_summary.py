"""Summarise a py-spy ``--format raw`` profile (collapsed stacks) of the server.

``bench/fanout.py --profile PATH`` writes such a file. This prints the
functions with the most samples where they are the innermost frame ("self")
and anywhere on the stack ("total"), as a share of all samples, plus an
optional breakdown of the samples under chosen functions.

Usage::

    .venv/bin/python bench/profile_summary.py out.txt [--top 30] [--under deliver_users]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _name(frame: str, keep_line: bool) -> str:
    if keep_line:
        return frame
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match.group('func')} ({path})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--lines", action="store_true", help="keep line numbers")
    parser.add_argument("--under", action="append", default=[],
                        help="also break down the samples below frames containing this text")
    parser.add_argument("--only", default=None,
                        help="only stacks with a frame containing this text (e.g. mainLoop "
                             "for the reactor thread)")
    parser.add_argument("--drop-leaf", action="append", default=[],
                        help="drop stacks whose innermost frame contains this text "
                             "(e.g. epoll_wait: idle time in --native profiles)")
    args = parser.parse_args()

    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    under: dict[str, Counter[str]] = {u: Counter() for u in args.under}
    samples = 0
    for raw in args.profile.read_text(errors="replace").splitlines():
        match = _LINE.match(raw)
        if not match:
            continue
        stack, count = match.group(1), int(match.group(2))
        frames = stack.split(";")
        if args.only and args.only not in stack:
            continue
        if any(text in frames[-1] for text in args.drop_leaf):
            continue
        names = [_name(f, args.lines) for f in frames]
        samples += count
        own[names[-1]] += count
        for name in set(names):
            total[name] += count
        for text, counter in under.items():
            for i, name in enumerate(names):
                if text in name:
                    child = names[i + 1] if i + 1 < len(names) else "(self)"
                    counter[child] += count
                    break
    if not samples:
        raise SystemExit("no samples")
    print(f"{samples} samples")
    for title, counter in (("self", own), ("total (inclusive)", total)):
        print(f"\n-- top {args.top} by {title} --")
        for name, count in counter.most_common(args.top):
            print(f"{100 * count / samples:6.1f} %  {name}")
    for text, counter in under.items():
        below = sum(counter.values())
        print(f"\n-- directly below '{text}' ({100 * below / samples:.1f} % of samples) --")
        for name, count in counter.most_common(args.top):
            print(f"{100 * count / samples:6.1f} %  {name}")


if __name__ == "__main__":
    main()
