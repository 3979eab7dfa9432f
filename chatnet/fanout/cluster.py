"""Fan-out across nodes over Redis pub/sub (DESIGN.md "Scale-out", docs/deployment.md).

Every node (a worker process, or a machine) holds its own sessions in a
:class:`~chatnet.fanout.local.LocalFanout`. :class:`ClusterFanout` extends it:
each delivery is made to this node's sessions at once and published once, already
encoded, on one Redis channel; every other node delivers it to its own sessions
from its own membership map. Changes of that map (joins, leaves, room deletions,
blocks) travel the same way, after they are committed, so every node routes an
event without a database read per recipient.

One channel for everything keeps the order in which a node published its events
(Redis keeps a publisher connection's order), which is the order a client sees:
a ``member.joined`` is never overtaken by the first message the new member gets.
The events of one reactor turn go together as one Redis message (the node's
number, then a msgpack array of events): one wake-up and one outbox flush on
each other node per turn rather than per event (docs/benchmarks.md, "Where a
cluster node's time went").

Cluster-wide state lives in Redis with an expiry (:data:`NODE_TTL`, ``--node-expiry``):

- ``{cluster}:alive:{node}``: this node is up (value: its monitor count);
- ``{cluster}:users:{node}``: hash user id → the presence state they chose, for
  every user with a session here;
- ``{cluster}:sessions:{node}``: hash session id → the session's description
  (``admin.sessions`` lists every node's);
- ``{cluster}:claim:{name}``: something only one node may hold at a time (a
  room's call: :meth:`ClusterFanout.claim`), value ``{node}:{tag}``.

A node that dies stops refreshing its keys: within :data:`NODE_TTL` seconds
its keys are gone, and every other node tells its own sessions that the users
who were only there went offline, and runs its :attr:`ClusterFanout.node_gone`
listeners (the call service ends the calls the dead node held and drops its
sessions from its own calls); a claim the dead node held is free at once. Pub/sub
does not replay what a node missed while Redis was away: on reconnecting, the
node reloads the membership and block maps from the database, re-reads every
node's presence and rewrites its own, and tells the others (``R``) to re-read
its presence, since what it published meanwhile was lost. Otherwise presence
travels as events: the heartbeat reads the hash only of a node not heard from.

The Redis client is txredisapi 1.6 (TWISTED-NOTES.md 5): it speaks Twisted
natively, so no thread or second event loop stands between a publish and the
reactor; the ``redis`` package's asyncio client would need a bridge per call.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgpack
import txredisapi
from twisted.application import service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from chatnet.fanout.local import LocalFanout
from chatnet.interfaces import ISessionMind
from chatnet.store import IdGenerator, node_of_id
from chatnet.wire.outbox import push_now

#: Seconds a node's keys live without a refresh (``--node-expiry``): a dead
#: node's users count as offline on the others at most this long after it died.
#: The heartbeat refreshes this node's keys and checks which others are alive,
#: three times as often.
NODE_TTL = 15
#: Publishes that may wait for Redis's answer at once; more are dropped (and
#: counted) rather than queued without bound while Redis is slow.
MAX_IN_FLIGHT = 50_000

# Claims (ClusterFanout.claim) are Lua scripts so that reading the holder and
# taking the key over happen at once in Redis: two nodes claiming together get
# one winner. A claim whose holder's ``alive`` key is gone (a dead node) is
# free at once, without waiting for the claim's own expiry. They read keys not
# passed in KEYS, which a single Redis allows (Redis Cluster would not).
#: KEYS[1] the claim; ARGV: this node's value, expiry (s), the alive keys' prefix.
#: Returns nil when this node holds the claim now, else the holder's value.
_CLAIM = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then
  local node = string.match(held, '^(%d+):')
  if node and redis.call('EXISTS', ARGV[3] .. node) == 1 then
    return held
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return false
"""
#: KEYS: claims; ARGV: this node's value of each, then the expiry (s). Extends
#: each claim this node holds, and writes again those that are gone (after a
#: Redis restart, or claimed while Redis was unreachable); leaves another
#: node's alone.
_REFRESH_CLAIMS = """
local ttl = tonumber(ARGV[#KEYS + 1])
for i, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  if not held or held == ARGV[i] then
    redis.call('SET', key, ARGV[i], 'EX', ttl)
  end
end
return 0
"""
#: KEYS[1] a claim, ARGV[1] this node's value: deleted only if still that.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisBus(service.Service):
    """Two Redis connections: one subscribed to the cluster's channel, one for
    publishing and for the keys. Both reconnect by themselves.

    Args:
        host: Redis host.
        port: Redis port.
        db: Redis database number (keys only; pub/sub ignores it).
        cluster: the cluster's name, prefix of the channel and of every key.
        on_message: called with each payload (bytes) published by any node.
        on_subscribed: called each time the subscription is (re)made: what was
            published meanwhile is lost and must be re-read from the database.
        reactor: the reactor.
        password: what Redis's ``requirepass`` asks for, or None.

    Attributes:
        published: payloads handed to Redis.
        dropped: payloads dropped because Redis was unreachable or too slow.
        received: payloads received (every node's, this one's too).
    """

    log = Logger()

    def __init__(self, host: str, port: int, db: int, cluster: str,
                 on_message: Callable[[bytes], None],
                 on_subscribed: Callable[[], None], reactor: Any,
                 password: str | None = None) -> None:
        self.host, self.port, self.db = host, port, db
        self.password = password
        self.cluster = cluster
        self.channel = f"{cluster}:events".encode()
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.reactor = reactor
        self.published = 0
        self.dropped = 0
        self.received = 0
        self.subscribed = False
        self._in_flight = 0
        self._commands: Any = None
        self._subscriber: Any = None

    def key(self, *parts: object) -> str:
        """A key of this cluster: ``{cluster}:part:part``."""
        return ":".join((self.cluster, *map(str, parts)))

    def startService(self) -> None:
        """Connect both connections (in the background; they retry for ever)."""
        super().startService()
        if txredisapi.RedisProtocol is not txredisapi.HiredisProtocol:
            # Works, but each element of a reply costs a reactor turn: a busy
            # node's subscription falls behind (setup.cfg, extra "cluster").
            self.log.warn("hiredis is not installed: Redis replies are parsed slowly")
        bus = self

        class Subscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc]
            def connectionMade(self) -> Any:
                d = super().connectionMade()
                d.addCallback(lambda _: self.subscribe([bus.channel]))
                d.addCallback(lambda _: bus._subscribed())
                d.addErrback(lambda f: bus.log.warn("subscribing to Redis failed: {why}",
                                                    why=f.getErrorMessage()))
                return d

            def messageReceived(self, pattern: Any, channel: Any, message: bytes) -> None:
                bus.received += 1
                bus.on_message(message)

            def connectionLost(self, why: Any) -> None:
                if bus.subscribed:
                    bus.log.warn("lost the Redis subscription; reconnecting")
                bus.subscribed = False
                super().connectionLost(why)

        subscriber = txredisapi.SubscriberFactory(isLazy=True)
        subscriber.protocol = Subscriber
        self._configure(subscriber)
        subscriber.startConnecting(self._endpoint())
        self._subscriber = subscriber
        commands = txredisapi.RedisFactory(None, self.db, 1, isLazy=True, charset=None,
                                           convertNumbers=False)
        self._configure(commands)
        commands.startConnecting(self._endpoint())
        self._commands = commands

    def _configure(self, factory: Any) -> None:
        factory.password = self.password
        factory.charset, factory.convertNumbers = None, False
        factory.initialDelay, factory.maxDelay = 0.2, 2.0
        factory.replyTimeout = 10

    def _endpoint(self) -> Any:
        return endpoints.HostnameEndpoint(self.reactor, self.host, self.port, timeout=5)

    def _subscribed(self) -> None:
        self.subscribed = True
        self.log.info("subscribed to {channel} on Redis {host}:{port}",
                      channel=self.channel.decode(), host=self.host, port=self.port)
        self.on_subscribed()

    @property
    def connected(self) -> bool:
        """Whether both connections are up (the subscription made)."""
        return self.subscribed and self._commands is not None and self._commands.size > 0

    def publish(self, payload: bytes) -> bool:
        """Publish ``payload`` to every node; False (and counted in ``dropped``)
        when Redis is unreachable or too far behind."""
        commands = self._commands
        if commands is None or not commands.size or self._in_flight >= MAX_IN_FLIGHT:
            self.dropped += 1
            return False
        self._in_flight += 1
        self.published += 1
        connection = commands.pool[0]
        d = connection.publish(self.channel, payload)
        d.addBoth(self._answered)
        # To the socket now, not when the reactor next polls: this turn may still
        # write hundreds of TLS connections, and the other nodes should be
        # fanning out meanwhile.
        push_now(connection.transport)
        return True

    def _answered(self, result: Any) -> None:
        self._in_flight -= 1

    def command(self, name: str, *args: Any) -> Deferred[Any]:
        """Run one Redis command (``"hset"``, ``"expire"``, …) on the command
        connection; fails with ``txredisapi.ConnectionError`` when it is down
        (never waits for a reconnection)."""
        commands = self._commands
        if commands is None or not commands.size:
            return fail(txredisapi.ConnectionError("Redis is unreachable"))
        return getattr(commands.pool[0], name)(*args)  # type: ignore[no-any-return]

    def stopService(self) -> Deferred[Any]:
        """Close both connections."""
        super().stopService()
        stops = [f.disconnect() for f in (self._subscriber, self._commands) if f is not None]
        self._subscriber = self._commands = None
        self.subscribed = False
        return gatherResults(stops, consumeErrors=True)


def _pack(*fields: Any) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]


def _batch(node: int, events: list[bytes]) -> bytes:
    """One PUBLISH: the publishing node's number in two bytes (so that a node skips
    its own without decoding them), then a msgpack array of events, each already
    packed as ``[kind, *args]`` (an array is its header followed by its items)."""
    header: bytes = msgpack.Packer().pack_array_header(len(events))
    return node.to_bytes(2, "big") + header + b"".join(events)


class ClusterFanout(LocalFanout):
    """This node's sessions, with every delivery also published to the other nodes.

    Args:
        node: this node's number (0-1023), unique in the cluster (it is claimed
            in Redis at start: :meth:`start`).
        ids: the store's id generator when ``node`` was picked at random: if
            another node holds it, another number is picked for both.
        expiry: seconds this node's keys live without a refresh (:data:`NODE_TTL`);
            the heartbeat runs three times as often.
        bus: the Redis connections (:class:`RedisBus`), made by the caller with
            this fan-out's :meth:`received` and :meth:`resubscribed` as callbacks.
        clock: the reactor (drives the heartbeat).

    Attributes:
        reload: called (and awaited) after every re-subscription, to reload the
            membership and block maps from the database; set by the server.
        on_presence: called with ``(user_id, state)`` when another node says a
            user's chosen presence changed (``None``: no session there any more).
        on_gone: called with the user ids that were online only on nodes that
            died; the user service tells this node's sessions they are offline.
        node_gone: listeners called with the number of each node found dead
            (its keys expired), before ``on_gone``; the call service ends the
            calls that node held. A listener that raises is logged and skipped.
        node_back: listeners called when events may have been lost between this
            node and another: with that node's number when it got its
            subscription back (its ``R``), and with None when this node did
            (after its maps are reloaded). The call service reconciles its calls
            with the other node(s) then. A listener that raises is logged and
            skipped.
    """

    log = Logger()

    def __init__(self, node: int, bus: RedisBus, clock: Any,
                 ids: IdGenerator | None = None, expiry: float = NODE_TTL) -> None:
        super().__init__()
        self.node = node
        self.expiry = max(1, round(expiry))
        self.ids = ids
        self._tried: set[int] = set()
        self._started = False
        self.bus = bus
        self.clock = clock
        self.reload: Callable[[], Awaitable[None]] | None = None
        self.on_presence: Callable[[int, str | None], None] | None = None
        self.on_gone: Callable[[set[int]], Awaitable[None]] | None = None
        self.node_gone: list[Callable[[int], None]] = []
        self.node_back: list[Callable[[int | None], None]] = []
        #: claim name -> this node's value of it (``{node}:{tag}``), refreshed
        #: by the heartbeat until released.
        self._claims: dict[str, str] = {}
        #: node -> user id -> the presence state chosen there.
        self._remote: dict[int, dict[int, str]] = {}
        #: node -> user id -> that user's sessions there (told with each attach
        #: and detach; a user online there with no count told counts as one).
        self._remote_counts: dict[int, dict[int, int]] = {}
        self._remote_monitors = 0
        self._presence: dict[int, str] = {}
        #: name -> called with ``(origin node, *args)`` for messages sent to this
        #: node alone (:meth:`send_node`), e.g. a call's requests to the node
        #: that holds it.
        self.node_handlers: dict[str, Callable[..., None]] = {"frame": self._frame_for}
        #: Events of this reactor turn, published together at its end (one
        #: Redis message per turn: fewer wake-ups and bigger write batches on the
        #: other nodes than one message per event).
        self._outgoing: list[bytes] = []
        self._flush_call: Any = None
        #: The heartbeat's refresh while it waits on Redis, else None.
        self._refreshing: Deferred[None] | None = None
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = clock
        self._handlers: dict[str, Callable[..., Any]] = {
            "r": super().deliver_room,
            "u": super().deliver_users,
            "m": super().deliver_message,
            "M": super().deliver_monitors,
            "a": super().deliver_all,
            "j": super().member_added,
            "l": super().member_removed,
            "d": super().room_removed,
            "b": super().blocked,
            "e": super().end_sessions,
        }

    # -- life cycle ---------------------------------------------------------------------

    async def start(self, reload: Callable[[], Awaitable[None]]) -> None:
        """Connect to Redis, claim this node's number, start the heartbeat.

        Args:
            reload: reloads the membership and block maps from the database,
                called after every re-subscription.

        Raises:
            ConfigError: another live node holds this node number.
            txredisapi.ConnectionError: Redis is unreachable at start.
        """
        from chatnet.config import ConfigError

        self.reload = reload
        self.bus.startService()
        await self._until_connected()
        while not await self.bus.command("set", self.bus.key("alive", self.node), b"0",
                                         self.expiry, None, True):  # NX: only if free
            if self.ids is None or len(self._tried) >= 64:
                raise ConfigError(f"node number {self.node} is in use by a live node of "
                                  f"cluster {self.bus.cluster!r}: give each node its own "
                                  "--node-id")
            self._tried.add(self.node)
            self.node = self.ids.node = secrets.randbelow(1024)
        await self.bus.command("sadd", self.bus.key("nodes"), [str(self.node)])
        await self.bus.command("delete", [self.bus.key("users", self.node),
                                          self.bus.key("sessions", self.node)])
        await self._read_nodes()
        self._heartbeat.start(self.expiry / 3, now=False)
        self._started = True
        self.log.info("node {node} of cluster {cluster} (Redis {host}:{port}); "
                      "{others} other node(s) up", node=self.node, cluster=self.bus.cluster,
                      host=self.bus.host, port=self.bus.port, others=len(self._remote))

    async def _until_connected(self, timeout: float = 10.0) -> None:
        from twisted.internet.task import deferLater

        waited = 0.0
        while not self.bus.connected:
            if waited >= timeout:
                raise txredisapi.ConnectionError(
                    f"Redis at {self.bus.host}:{self.bus.port} did not answer within "
                    f"{timeout:g} s")
            await deferLater(self.clock, 0.05, lambda: None)
            waited += 0.05

    async def stop(self) -> None:
        """Publish what this turn queued, stop the heartbeat, remove this node's
        keys, close the connections."""
        self._started = False
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_outgoing()
        if self._heartbeat.running:
            self._heartbeat.stop()
        if self.bus.connected:
            try:
                await self.bus.command("delete", [self.bus.key(k, self.node)
                                                  for k in ("alive", "users", "sessions")])
                await self.bus.command("srem", self.bus.key("nodes"), [str(self.node)])
            except Exception as exc:  # Redis left first: the keys expire anyway
                self.log.info("could not remove this node's keys: {why}", why=exc)
        await self.bus.stopService()

    @property
    def healthy(self) -> bool:
        """Whether the cluster bus is connected (False: degraded, serving local
        sessions only)."""
        return self.bus.connected

    # -- from the other nodes ------------------------------------------------------------

    def _publish(self, kind: str, *args: Any) -> bool:
        """Queue an event for this turn's PUBLISH; False (and nothing queued) when
        Redis is unreachable."""
        if not self.bus.connected:
            self.bus.dropped += 1
            return False
        self._outgoing.append(_pack(kind, *args))
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self._flush_outgoing)
        return True

    def flush_outgoing(self) -> None:
        """Publish the events queued this turn now (normally at the turn's end);
        the server calls it before writing this turn's frames to connections
        (``WriteCoalescer.first``)."""
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_outgoing()

    def _flush_outgoing(self) -> None:
        self._flush_call = None
        events, self._outgoing = self._outgoing, []
        if events:
            self.bus.publish(_batch(self.node, events))

    def received(self, payload: bytes) -> None:
        """One PUBLISH of a node: its events in order (this node's are skipped
        undecoded)."""
        origin = int.from_bytes(payload[:2], "big")
        if origin == self.node:
            return
        try:
            events = msgpack.unpackb(memoryview(payload)[2:], raw=False, use_list=True)
            if not isinstance(events, list):
                raise ValueError("not an array of events")
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            self.log.warn("undecodable cluster event dropped: {why}", why=exc)
            return
        for event in events:
            try:
                self._apply(origin, *event)
            except (TypeError, ValueError) as exc:
                self.log.warn("malformed cluster event from node {node} dropped: {why}",
                              node=origin, why=exc)

    def _apply(self, origin: int, kind: str, *args: Any) -> None:
        if kind == "p":
            self._remote_presence(origin, *args)
            return
        if kind == "R":
            self._background(Deferred.fromCoroutine(self._read_presence(origin)))
            self._tell(self.node_back, origin)
            return
        if kind == "c":
            user_id, count = args
            self._remote_counts.setdefault(origin, {})[int(user_id)] = int(count)
            return
        if kind == "n":
            target, name, *rest = args
            if target is None or target == self.node:
                node_handler = self.node_handlers.get(name)
                if node_handler is not None:
                    node_handler(origin, *rest)
            return
        handler = self._handlers.get(kind)
        if handler is None:
            self.log.warn("unknown cluster event {kind!r} from node {node}", kind=kind,
                          node=origin)
            return
        handler(*args)

    def resubscribed(self) -> None:
        """The subscription was (re)made: reload what may have been missed."""
        if not self._started or self.reload is None:
            return  # the first subscription: start() reads everything

        async def reload() -> None:
            assert self.reload is not None
            await self._until_connected(timeout=60.0)  # the command connection too
            await self.reload()
            await self._write_presence()
            # Events this node published while Redis was away are lost: the others
            # read its presence again (``R``).
            self._publish("R")
            await self._read_nodes()
            self._tell(self.node_back, None)
            self.log.info("cluster bus back: maps reloaded, presence rewritten, "
                          "{others} other node(s) up", others=len(self._remote))

        d = Deferred.fromCoroutine(reload())
        # Redis went away again meanwhile: the next subscription tries again.
        d.addErrback(lambda f: self.log.warn("re-reading cluster state failed: {why}",
                                             why=f.getErrorMessage()))

    def _remote_presence(self, node: int, user_id: int, state: str | None) -> None:
        users = self._remote.setdefault(node, {})
        if state is None:
            users.pop(user_id, None)
        else:
            users[user_id] = state
        if self.on_presence is not None:
            self.on_presence(user_id, state)

    # -- deliveries: here, then published ----------------------------------------------

    def deliver_room(self, room_id: int, frame: bytes,
                     exclude: ISessionMind | None = None) -> int:
        """:meth:`LocalFanout.deliver_room` here and on every other node."""
        self._publish("r", room_id, frame)
        return super().deliver_room(room_id, frame, exclude)

    def deliver_users(self, user_ids: Iterable[int], frame: bytes,
                      exclude: ISessionMind | None = None) -> int:
        """:meth:`LocalFanout.deliver_users` here and on every other node."""
        ids = list(user_ids)
        self._publish("u", ids, frame)
        return super().deliver_users(ids, frame, exclude)

    def deliver_users_here(self, user_ids: Iterable[int], frame: bytes) -> int:
        """:meth:`LocalFanout.deliver_users` on this node only."""
        return super().deliver_users(user_ids, frame)

    def deliver_message(self, room_id: int, frame: bytes, sender_id: int) -> int:
        """:meth:`LocalFanout.deliver_message` here and on every other node."""
        self._publish("m", room_id, frame, sender_id)
        return super().deliver_message(room_id, frame, sender_id)

    def deliver_monitors(self, frame: bytes) -> None:
        """:meth:`LocalFanout.deliver_monitors` here and on every other node that has
        a monitoring session."""
        if self._remote_monitors:
            self._publish("M", frame)
        super().deliver_monitors(frame)

    def deliver_all(self, frame: bytes) -> int:
        """:meth:`LocalFanout.deliver_all` here and on every other node."""
        self._publish("a", frame)
        return super().deliver_all(frame)

    def end_sessions(self, user_id: int, reason: str,
                     keep: ISessionMind | None = None) -> int:
        """:meth:`LocalFanout.end_sessions` here and every session of the user on
        the other nodes."""
        self._publish("e", user_id, reason)
        return super().end_sessions(user_id, reason, keep)

    def home_of(self, generated_id: int) -> int | None:
        """The node that made ``generated_id``, if another one."""
        node = node_of_id(generated_id)
        return None if node == self.node else node

    def send_node(self, node: int, name: str, *args: Any) -> bool:
        """Send ``args`` to one node's ``node_handlers[name]`` (through the one
        channel: every node receives it, the others skip it)."""
        return self._publish("n", node, name, *args)

    def send_all(self, name: str, *args: Any) -> bool:
        """Send ``args`` to ``node_handlers[name]`` of every other node."""
        return self._publish("n", None, name, *args)

    def send_session(self, node: int, user_id: int, session_id: str, frame: bytes) -> None:
        """Write a real-time frame (call audio) to one session on another node;
        dropped there if that session's output is waiting."""
        self.send_node(node, "frame", user_id, session_id, frame)

    def _frame_for(self, origin: int, user_id: int, session_id: str, frame: bytes) -> None:
        for session in self.sessions_of(user_id):
            if session.session_id == session_id:
                if not session.backed_up():
                    session.send_frame(frame)
                return

    # -- claims: one holder in the cluster -------------------------------------------

    async def claim(self, name: str, tag: str) -> str | None:
        """Hold ``{cluster}:claim:{name}`` for this node until :meth:`release`.

        The claim lives as long as this node's keys: the heartbeat refreshes it,
        and once this node counts as dead (its ``alive`` key gone) any node may
        take it over. While Redis is unreachable (degraded) the claim is only
        noted and granted (what this node alone knows is all it can check); the
        heartbeat writes it once Redis is back, unless another node took it
        meanwhile.

        Args:
            name: what is claimed, e.g. ``"call:{room_id}"``.
            tag: what this node holds it for (kept in the value), e.g. a call id.

        Returns:
            None when this node holds the claim now; else the ``tag`` of the
            live node holding it.

        Raises:
            txredisapi.ConnectionError, TimeoutError: Redis failed while asked.
        """
        value = f"{self.node}:{tag}"
        self._claims[name] = value
        if not self.bus.connected:
            return None
        try:
            held = await self.bus.command("eval", _CLAIM, [self.bus.key("claim", name)],
                                          [value, self.expiry, self.bus.key("alive", "")])
        except BaseException:
            self._claims.pop(name, None)
            raise
        if held is None:
            return None
        if self._claims.get(name) == value:
            del self._claims[name]
        return bytes(held).decode().partition(":")[2]

    def release(self, name: str) -> None:
        """Give up a claim this node holds (in the background; if Redis is away,
        the claim expires within ``expiry`` seconds as nothing refreshes it)."""
        value = self._claims.pop(name, None)
        if value is not None:
            self._background(self.bus.command("eval", _RELEASE,
                                              [self.bus.key("claim", name)], [value]))

    async def _refresh_claims(self) -> None:
        """Extend (or write again) every claim this node holds; a failure is
        logged, not raised, so that the heartbeat still looks for dead nodes."""
        if not self._claims:
            return
        names = list(self._claims)
        try:
            await self.bus.command("eval", _REFRESH_CLAIMS,
                                   [self.bus.key("claim", n) for n in names],
                                   [*(self._claims[n] for n in names), self.expiry])
        except Exception as exc:
            self.log.warn("refreshing this node's claims failed: {why}", why=exc)

    def monitoring(self) -> bool:
        """Whether any node has a session that asked for ``admin.monitor``."""
        return bool(self.monitors) or self._remote_monitors > 0

    # -- memberships and blocks: here, then published ----------------------------------

    def member_added(self, room_id: int, user_id: int) -> None:
        """Record a committed membership here and on every other node."""
        super().member_added(room_id, user_id)
        self._publish("j", room_id, user_id)

    def member_removed(self, room_id: int, user_id: int) -> None:
        """Record an ended membership here and on every other node."""
        super().member_removed(room_id, user_id)
        self._publish("l", room_id, user_id)

    def room_removed(self, room_id: int) -> None:
        """Forget a deleted room here and on every other node."""
        super().room_removed(room_id)
        self._publish("d", room_id)

    def blocked(self, blocker_id: int, blocked_id: int, on: bool) -> None:
        """Record a block or its end here and on every other node."""
        super().blocked(blocker_id, blocked_id, on)
        self._publish("b", blocker_id, blocked_id, on)

    # -- sessions and presence ---------------------------------------------------------

    def attach(self, session: ISessionMind) -> None:
        """Start delivering to a session; list it in ``{cluster}:sessions:{node}``."""
        super().attach(session)
        self._background(self.bus.command(
            "hset", self.bus.key("sessions", self.node), session.session_id,
            _pack(*_session_row(session, self.node).values())))
        self._publish("c", session.user_id, super().session_count(session.user_id))

    def detach(self, session: ISessionMind) -> None:
        """Stop delivering to a session; unlist it."""
        super().detach(session)
        if session.session_id:
            self._background(self.bus.command(
                "hdel", self.bus.key("sessions", self.node), [session.session_id]))
            self._publish("c", session.user_id, super().session_count(session.user_id))

    def session_count(self, user_id: int) -> int:
        """A user's sessions on every live node (``--max-sessions-per-user``): this
        node's, plus what the others last told (one for a node where the user is
        online but no count was told, e.g. after a Redis restart)."""
        count = super().session_count(user_id)
        for node, users in self._remote.items():
            if user_id in users:
                count += self._remote_counts.get(node, {}).get(user_id, 1)
        return count

    def remote_presence(self, user_id: int) -> str | None:
        """The presence state a user chose on another node where they have a
        session, or None (no session on any other live node)."""
        for users in self._remote.values():
            state = users.get(user_id)
            if state is not None:
                return state
        return None

    def presence_changed(self, user_id: int, state: str | None) -> None:
        """This node's view of a user changed: ``state`` is what they chose
        (``None``: their last session here ended). Written to Redis, then told to
        the other nodes."""
        if state is None:
            self._presence.pop(user_id, None)
            self._background(self.bus.command("hdel", self.bus.key("users", self.node),
                                              [str(user_id)]))
        else:
            self._presence[user_id] = state
            self._background(self.bus.command("hset", self.bus.key("users", self.node),
                                              str(user_id), state))
        self._publish("p", user_id, state)

    async def session_rows(self) -> list[dict[str, Any]]:
        """Every live session of the cluster, as ``admin.sessions`` rows (with
        ``node``); this node's from memory, the others' from Redis."""
        rows = await super().session_rows()
        for row in rows:
            row["node"] = self.node
        # The nodes listed in Redis, not those this node has heard from: a node
        # whose first presence event has not arrived yet still has sessions (a
        # dead node's hash has expired: it adds nothing).
        listed = await self.bus.command("smembers", self.bus.key("nodes"))
        for node in sorted({int(n) for n in listed or ()} - {self.node}):
            stored = await self.bus.command("hgetall", self.bus.key("sessions", node))
            for packed in (stored or {}).values():
                fields = msgpack.unpackb(packed, raw=False)
                rows.append(dict(zip(_SESSION_FIELDS, fields, strict=False)))
        return rows

    # -- the heartbeat -----------------------------------------------------------------

    def _beat(self) -> None:
        """One heartbeat. It does not wait for the previous one: a refresh whose
        round trips wait behind a busy reactor (thousands of connections closing
        at once) must not hold back the next refresh of this node's keys, or the
        other nodes count this one as dead."""
        if self._refreshing is not None:
            if self.bus.connected:
                self._background(self._keep_alive())
            return
        d = self._refreshing = Deferred.fromCoroutine(self._refresh())
        d.addErrback(lambda f: self.log.warn("cluster heartbeat failed: {why}",
                                             why=f.getErrorMessage()))
        d.addBoth(lambda _: setattr(self, "_refreshing", None))

    def _keep_alive(self) -> Deferred[Any]:
        """Extend this node's keys, all three sent at once (one round trip)."""
        bus = self.bus
        return gatherResults([
            bus.command("set", bus.key("alive", self.node),
                        str(len(self.monitors)).encode(), self.expiry),
            bus.command("expire", bus.key("users", self.node), self.expiry),
            bus.command("expire", bus.key("sessions", self.node), self.expiry),
        ], consumeErrors=True)

    async def _refresh(self) -> None:
        if not self.bus.connected:
            await self._forget_dead(set(self._remote), expired_only=True)
            return
        await self._keep_alive()
        await self._refresh_claims()
        await self._read_nodes(full=False)

    async def _write_presence(self) -> None:
        """Write this node's whole presence map again (after a Redis restart)."""
        bus = self.bus
        await bus.command("set", bus.key("alive", self.node),
                          str(len(self.monitors)).encode(), self.expiry)
        await bus.command("sadd", bus.key("nodes"), [str(self.node)])
        if self._presence:
            await bus.command("hmset", bus.key("users", self.node),
                              {str(u): s for u, s in self._presence.items()})
        for session in self.all_sessions():
            await bus.command("hset", bus.key("sessions", self.node), session.session_id,
                              _pack(*_session_row(session, self.node).values()))
        await self._refresh_claims()

    async def _read_nodes(self, full: bool = True) -> None:
        """Find the live nodes, forget dead ones, and read the presence of every
        other live node (``full``), or only of nodes not heard from yet (the
        heartbeat: the others' presence arrives as events).

        Why not every heartbeat: a node of 5,000 users is a reply of 10,000
        elements, read again every few seconds for nothing. Before ``hiredis``
        parsed replies, txredisapi gave each element a reactor turn of its own,
        which took a busy node over the 10 s reply timeout at 10,000 clients
        (docs/benchmarks.md, "Cost against size").
        """
        bus = self.bus
        members = await bus.command("smembers", bus.key("nodes"))
        nodes = sorted(int(n) for n in members or () if int(n) != self.node)
        alive = await bus.command("mget", [bus.key("alive", n) for n in nodes]) if nodes else []
        live = {n for n, value in zip(nodes, alive, strict=True) if value is not None}
        monitors = 0
        for node in live:
            if full or node not in self._remote:
                await self._read_presence(node)
        for node, value in zip(nodes, alive, strict=True):
            if node in live:
                monitors += int(value or 0)
        self._remote_monitors = monitors
        dead = set(nodes) - live
        if dead:
            await bus.command("srem", bus.key("nodes"), [str(n) for n in dead])
        await self._forget_dead(set(self._remote) - live)

    async def _read_presence(self, node: int) -> None:
        """Read one other node's presence map from its hash."""
        stored = await self.bus.command("hgetall", self.bus.key("users", node))
        self._remote[node] = {int(u): s.decode() for u, s in (stored or {}).items()}

    async def _forget_dead(self, nodes: set[int], expired_only: bool = False) -> None:
        if expired_only or not nodes:
            return  # without Redis, nothing tells a dead node from a live one
        gone: set[int] = set()
        for node in nodes:
            gone |= set(self._remote.pop(node, {}))
            self._remote_counts.pop(node, None)
            self.log.warn("node {node} stopped answering: its sessions count as ended",
                          node=node)
            self._tell(self.node_gone, node)
        gone = {u for u in gone if not self.sessions_of(u) and self.remote_presence(u) is None}
        if gone and self.on_gone is not None:
            await self.on_gone(gone)

    def _tell(self, listeners: Iterable[Callable[[Any], None]], node: int | None) -> None:
        """Call each of ``listeners`` with ``node``; one that raises is logged."""
        for listener in listeners:
            try:
                listener(node)
            except Exception:
                self.log.failure("a cluster listener failed (node {node})", node=node)

    def _background(self, d: Deferred[Any]) -> None:
        d.addErrback(lambda f: None)  # Redis away: the heartbeat writes it all again


_SESSION_FIELDS = ("session_id", "username", "peer", "since", "client", "node")


def _session_row(session: ISessionMind, node: int) -> dict[str, Any]:
    return {"session_id": session.session_id, "username": session.username,
            "peer": getattr(session, "peer", ""), "since": getattr(session, "since", 0),
            "client": getattr(session, "client", ""), "node": node}
