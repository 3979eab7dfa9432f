"""Retention (``--retention-days``, docs/security.md): once a day, messages older
than the retention period are deleted, and then the files no message, feed post
or profile refers to any more (their blobs once no file uses them)."""

from __future__ import annotations

from twisted.logger import Logger

from chatnet.services import Clock, ms
from chatnet.services.files import FileService
from chatnet.services.periodic import PeriodicJob
from chatnet.store import ChatStore

#: Seconds between retention runs (and one at start).
RETENTION_INTERVAL = 24 * 3600.0


class RetentionJob(PeriodicJob):
    """Deletes what is older than ``days`` days, in batches, once a day.

    Args:
        store: the chat store.
        files: the file service (removes the blobs).
        clock: drives the loop and tells the time.
        days: the retention period.
        interval: seconds between runs.
    """

    log = Logger()
    failure_message = "deleting messages past retention failed"

    def __init__(self, store: ChatStore, files: FileService, clock: Clock, days: int,
                 interval: float = RETENTION_INTERVAL) -> None:
        super().__init__(interval, clock)
        self.store = store
        self.files = files
        self.days = days

    async def run_once(self) -> tuple[int, int]:
        """Delete everything past retention now.

        Returns:
            ``(messages deleted, files deleted)``.
        """
        cutoff = ms(self.time_source) - self.days * 86_400_000
        messages = files = 0
        while True:
            count, hashes = await self.store.purge_before(cutoff)
            messages += count
            files += len(hashes)
            await self.files.release_blobs(hashes)
            if not count and not hashes:
                break
        if messages or files:
            self.log.info("retention ({days} days): deleted {messages} message(s) and "
                          "{files} file(s)", days=self.days, messages=messages, files=files)
        return messages, files
