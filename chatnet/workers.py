"""``twistd chatnet --workers N``: N server processes behind one port.

One Python process is bound by its interpreter lock (docs/benchmarks.md,
"Why one process stops near 3,500 msgs/s"); a machine's other cores need other
processes. The parent binds N listening sockets on the same address with
``SO_REUSEPORT`` (while still privileged: ``--uid/--gid`` drop privileges after
``privilegedStartService``), then starts N workers, each a ``twistd chatnet``
that adopts one socket (``--listen-fd``) and joins the cluster through Redis
(:mod:`chatnet.fanout.cluster`), exactly as a node on another machine would.

Why a socket per worker with ``SO_REUSEPORT`` rather than one shared socket:
the kernel spreads new connections evenly over the sockets by a hash of their
addresses, where one shared socket lets whichever process wakes first take a
whole burst of waiting connections. The parent keeps every socket open, so
while a worker restarts, connections hashed to its socket wait in the backlog
instead of being refused.

The parent supervises: a worker that exits is started again after a delay that
doubles from 1 s up to 30 s while it keeps failing (reset once it has run for a
minute). Stopping the parent (SIGTERM, SIGINT) sends SIGTERM to every worker,
which shut down in order (``session.ended {shutdown}`` to their clients), and
kills any worker still running after the grace period.

Only worker 0 runs the cluster's periodic jobs on the shared data (``--no-jobs``
on the others).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from twisted.application import service
from twisted.internet import protocol
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from chatnet.config import ServerConfig

#: Seconds before the first restart of a worker that exited; doubles up to
#: :data:`MAX_RESTART_DELAY` while it keeps exiting.
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
#: Seconds a worker must run before its restart delay is reset.
STEADY_AFTER = 60.0
#: Seconds after the grace period a worker has to exit before it is killed.
KILL_AFTER = 5.0
#: Bytes of one worker log line kept (a longer one is cut).
MAX_LOG_LINE = 16 * 1024
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+[+-]\d{4} ")
#: The descriptor a worker finds its listening socket on.
WORKER_FD = 3

#: Options a worker does not inherit from the parent's command line.
_PARENT_ONLY = {"workers", "listen-fd", "listen", "port", "interface", "no-jobs",
                "node-id", "metrics-port"}


def die_with_parent() -> None:
    """In a worker: ask Linux to send SIGTERM when the parent dies (a SIGKILLed
    supervisor must not leave workers serving on). Elsewhere, nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def reuseport_socket(interface: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket with ``SO_REUSEPORT`` (IPv6 when ``interface`` has a
    ``:``), non-blocking, inheritable by child processes.

    Raises:
        OSError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((interface, port))
    sock.listen(backlog)
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def worker_arguments(options: Any, index: int, node_base: int | None,
                     metrics_port: int | None) -> list[str]:
    """The ``twistd chatnet`` options of worker ``index``: the parent's own,
    without those only the parent uses, plus the worker's socket, node number
    (``node_base + index`` when the parent was given ``--node-id``) and metrics
    port (``metrics_port + index``), and ``--no-jobs`` on all but worker 0.

    Args:
        options: the parent's parsed :class:`chatnet.tap.Options`.
    """
    args: list[str] = []
    flags = {name for name, *_ in options.optFlags}
    for name, *_ in options.optParameters:
        value = options.get(name)
        if name in _PARENT_ONLY or value is None:
            continue
        args.append(f"--{name}={value}")
    args += [f"--{name}" for name in sorted(flags - _PARENT_ONLY) if options.get(name)]
    args.append(f"--listen-fd={WORKER_FD}")
    if node_base is not None:
        args.append(f"--node-id={node_base + index}")
    if metrics_port is not None:
        args.append(f"--metrics-port={metrics_port + index}")
    if index:
        args.append("--no-jobs")
    return args


class WorkerProcess(protocol.ProcessProtocol):
    """One worker's process: its log lines go into the parent's log (one log for
    the whole server, each line marked with the worker), its exit to the
    supervisor."""

    log = Logger()

    def __init__(self, supervisor: WorkerSupervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.started = supervisor.reactor.seconds()
        self.ended: Deferred[None] = Deferred()
        self._partial = b""

    def outReceived(self, data: bytes) -> None:
        """Log each complete line the worker wrote."""
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()[-MAX_LOG_LINE:]
        for line in lines:
            if line.strip():
                # The parent's log stamps the time: the worker's own stamp goes.
                text = _TIMESTAMP.sub("", line[:MAX_LOG_LINE].decode("utf-8", "replace"))
                self.log.info("worker {index}: {line}", index=self.index, line=text)

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        """Tell the supervisor; fire ``ended``."""
        self.supervisor.worker_ended(self, reason.value)
        self.ended.callback(None)


class WorkerSupervisor(service.Service):
    """Binds the port, runs ``count`` workers, restarts those that exit.

    Args:
        config: the validated configuration (``workers``, ``interface``, ``port``,
            ``node_id``, ``metrics_port``, ``shutdown_grace``).
        options: the parsed command line, passed on to the workers.
        reactor: the reactor (spawns processes; the clock).
        executable: the Python that runs the workers.

    Attributes:
        port: the port the sockets are bound to (the chosen one with ``--port 0``).
        workers: index -> the running worker's process protocol.
        restarts: how many times a worker was started again.
    """

    log = Logger()

    def __init__(self, config: ServerConfig, options: Any, reactor: Any,
                 executable: str = sys.executable) -> None:
        self.config = config
        self.options = options
        self.reactor = reactor
        self.executable = executable
        self.count = config.workers
        self.port = config.port
        self.sockets: list[socket.socket] = []
        self.workers: dict[int, WorkerProcess] = {}
        self.restarts = 0
        self._delay: dict[int, float] = {}
        self._pending: dict[int, Any] = {}

    def privilegedStartService(self) -> None:
        """Bind one ``SO_REUSEPORT`` socket per worker, all on the same address.

        Raises:
            OSError: the address cannot be bound.
        """
        from chatnet.wire.tls import LISTEN_BACKLOG

        super().privilegedStartService()
        first = reuseport_socket(self.config.interface, self.config.port, LISTEN_BACKLOG)
        self.port = first.getsockname()[1]
        self.sockets = [first] + [
            reuseport_socket(self.config.interface, self.port, LISTEN_BACKLOG)
            for _ in range(self.count - 1)]

    def startService(self) -> None:
        """Start every worker."""
        super().startService()
        if not self.sockets:
            self.privilegedStartService()
        self.log.info("starting {count} workers on {interface}:{port}", count=self.count,
                      interface=self.config.interface, port=self.port)
        for index in range(self.count):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        self._pending.pop(index, None)
        process = WorkerProcess(self, index)
        args = [self.executable, "-m", "twisted", "--log-format=text", "chatnet",
                *worker_arguments(self.options, index, self.config.node_id,
                                  self.config.metrics_port)]
        self.reactor.spawnProcess(process, self.executable, args, env=dict(os.environ),
                                  childFDs={0: "w", 1: "r", 2: "r",
                                            WORKER_FD: self.sockets[index].fileno()})
        self.workers[index] = process
        self.log.info("worker {index} started (pid {pid})", index=index,
                      pid=process.transport.pid if process.transport else "?")

    def worker_ended(self, process: WorkerProcess, why: Any) -> None:
        """A worker exited: start it again (after a delay) unless stopping."""
        index = process.index
        if self.workers.get(index) is process:
            del self.workers[index]
        if not self.running:
            return
        ran = self.reactor.seconds() - process.started
        delay = RESTART_DELAY if ran >= STEADY_AFTER else min(
            self._delay.get(index, RESTART_DELAY / 2) * 2, MAX_RESTART_DELAY)
        self._delay[index] = delay
        self.restarts += 1
        self.log.warn("worker {index} exited ({why}); starting it again in {delay:g} s",
                      index=index, why=why, delay=delay)
        self._pending[index] = self.reactor.callLater(delay, self._spawn, index)

    def stopService(self) -> Deferred[Any]:
        """SIGTERM every worker; SIGKILL those still running after the grace
        period; then close the sockets."""
        super().stopService()
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        running = list(self.workers.values())
        for process in running:
            _signal(process, signal.SIGTERM)
        kill = self.reactor.callLater(self.config.shutdown_grace + KILL_AFTER, _kill_all,
                                      running)
        done = DeferredList([p.ended for p in running])

        def closed(result: Any) -> Any:
            if kill.active():
                kill.cancel()
            for sock in self.sockets:
                sock.close()
            self.sockets = []
            return result

        return done.addBoth(closed)


def _signal(process: WorkerProcess, signum: int) -> None:
    with contextlib.suppress(Exception):  # already gone
        process.transport.signalProcess(signum)  # type: ignore[union-attr]


def _kill_all(processes: Sequence[WorkerProcess]) -> None:
    for process in processes:
        if not process.ended.called:
            _signal(process, signal.SIGKILL)
