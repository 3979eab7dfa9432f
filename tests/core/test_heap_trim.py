"""HeapTrim: memory freed after a burst goes back to the operating system."""

from __future__ import annotations

import os
import sys

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from chatnet.services.periodic import HeapTrim

PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident set, from /proc (bytes)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim: Linux")
@pytest_twisted.ensureDeferred
async def test_memory_freed_after_a_burst_is_given_back():
    """64 MiB of 4 KiB blocks (from the C heap, not mmap) freed behind one that
    stays: glibc keeps the pages until trimmed; one run of the job returns them."""
    trim = HeapTrim(10.0, Clock())
    await trim.run_once()  # start from a trimmed heap
    burst = [os.urandom(1) * 4096 for _ in range(16 * 1024)]
    keep = os.urandom(1) * 4096  # allocated last: the heap's top cannot shrink past it
    before = resident_bytes()
    del burst
    freed = resident_bytes()
    assert before - freed < 16 * 1024 * 1024  # free() alone keeps the pages
    assert await trim.run_once() is True
    assert before - resident_bytes() > 48 * 1024 * 1024
    assert keep
