"""The Redis broker: several nodes, one cluster.

Keys (all under ``broker.prefix``, ``P`` below):

- ``P:stream``: every publication of the cluster, in one Redis stream bounded
  to about ``broker.history_size`` entries and, with ``broker.history_ttl``,
  to about that many seconds (entries older, by Redis's clock, are trimmed
  when a node publishes). A publication is added by a Lua
  script that reads the epoch and adds the entry atomically; every node reads
  the stream with a blocking ``XREAD`` from the last id it delivered, so each
  publication reaches each node once and in the stream's order, whichever
  node or HTTP request it started on. The publishing node hands its own
  publications to its members as soon as the script answers (with their ids
  and the id of the entry before them), if it has delivered every older
  entry, else right after it has; its reader skips them. A node whose link
  to Redis broke reads on from where it stopped when the link is back:
  nothing is lost as long as the stream still holds it.
- ``P:epoch``: a random string set when the stream is (re)created. Recovery
  offsets are ``epoch:id``; an offset of another epoch (Redis restarted
  without its data, the stream lost) is refused, so the client is told to
  re-sync instead of silently missing events.
- ``P:control``: the control channel (announcements), a smaller stream read
  by the same ``XREAD``.
- ``P:alive`` (sorted set: node -> expiry in Redis' clock) and ``P:reports``
  (hash: node -> its latest stats): each node's heartbeat every
  ``broker.heartbeat`` seconds. A node missing its heartbeats for
  ``broker.node_ttl`` seconds (killed, cut off) is removed by the first live
  node that sees it, which announces ``switchboard:node_gone`` so that the
  plugins drop what that node held (presence: its devices). A node that was
  only cut off finds, at its first heartbeat back, that it had been removed:
  it writes its counts again and announces ``switchboard:node_back`` so that
  the plugins announce again what it holds.
- ``P:session:{pid}``: a dropped Socket.IO session kept for recovery, expiring
  after ``socketio.recovery_window``.

Where Redis runs: ``redis://`` / ``rediss://`` (one server), ``redis+sentinel://``
(a primary found, and followed across failovers, through Sentinel) or
``redis+cluster://`` (Redis Cluster: the keys carry the hash tag ``{P}``, so
they share one slot and the scripts and the two-stream ``XREAD`` stay atomic
on one shard); see :func:`parse_url`.

While Redis cannot be reached, :meth:`RedisBroker.publish` raises
:class:`~.broker.BrokerUnavailable` (clients get ``broker_unavailable``, the
HTTP API 503), ``available`` is False (``/ready`` answers 503 ``degraded``),
and the node goes on serving its connections; the reader and the heartbeat
reconnect with a back-off.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import secrets
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from typing import Any

import attrs
import coredis
import coredis.exceptions
import trio
from coredis.connection import BaseConnection, TCPLocation
from coredis.retry import NoRetryPolicy

from .auth import Identity
from .broker import (
    NODE_BACK,
    NODE_GONE,
    Announcement,
    AnnouncementHandler,
    BrokerUnavailable,
    ControlHandlers,
    Deliver,
    Publication,
    new_node_id,
)
from .recovery import Recovery, SavedSession, missed_by
from .redis_encoding import (
    decode_publication,
    dumps,
    encode_publication,
    is_entry_id,
    loads,
    stream_id,
    text_of,
)
from .redis_location import parse_url
from .session import Session

log = logging.getLogger("switchboard.broker")

#: Seconds an ``XREAD`` blocks in Redis before it is asked again.
READ_BLOCK = 1.0
#: Publications added by one script call, at most.
PUBLISH_BATCH = 500
#: Entries taken by one ``XREAD``.
READ_COUNT = 1000
#: Reads of nothing new a recovery makes while the reader is ahead of it.
RECOVERY_EMPTY_READS = 20
#: Publications of this node kept while they wait for older entries of the
#: stream to be delivered first, at most (beyond, the reader delivers them).
EARLY_LIMIT = 10_000
#: Back-off of the reader and the heartbeat while Redis is unreachable.
RETRY_FIRST = 0.1
RETRY_LONGEST = 2.0
#: Seconds a command may take before Redis counts as unreachable.
COMMAND_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
#: Announcements kept in the control stream, at most (about).
CONTROL_SIZE = 1000

_UNREACHABLE = (coredis.exceptions.ConnectionError, TimeoutError, OSError,
                coredis.exceptions.BusyLoadingError, coredis.exceptions.ReadOnlyError,
                # Sentinel without a primary (or naming one that stepped down
                # already), Cluster failing over
                coredis.exceptions.PrimaryNotFoundError, coredis.exceptions.StalePrimaryError,
                coredis.exceptions.ClusterDownError,
                coredis.exceptions.TryAgainError, coredis.exceptions.ClusterError)

# KEYS: stream, epoch; ARGV: history size, history ttl (ms, 0: none), new
# epoch, publication...
# Returns the epoch, the id of the entry before the first added ('0-0' if
# none) and the ids of the entries added.
_PUBLISH_MANY = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[3]
  redis.call('SET', KEYS[2], epoch)
end
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local out = {epoch, newest[1] and newest[1][1] or '0-0'}
for i = 4, #ARGV do
  out[i - 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', epoch,
                          'p', ARGV[i])
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  -- entry ids are Redis's clock in ms: the older ones go (whole nodes of the
  -- stream at a time, as with MAXLEN ~)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if now > ttl then
    redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%d', now - ttl))
  end
end
return out
"""

_EPOCH = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""

# KEYS: alive, reports; ARGV: node, ttl (ms), report, prefix
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- 1 when this node was not among the live ones (its first heartbeat, or removed)
local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {added}
for _, node in ipairs(dead) do
  redis.call('ZREM', KEYS[1], node)
  redis.call('HDEL', KEYS[2], node)
  -- the dead node's counts stop counting; say which totals fell to 0
  local mine = ARGV[4] .. ':node:' .. node .. ':counts'
  local emptied = {}
  for _, entry in ipairs(redis.call('SMEMBERS', mine)) do
    local sep = string.find(entry, '\\0', 1, true)
    local group, member = string.sub(entry, 1, sep - 1), string.sub(entry, sep + 1)
    local key = ARGV[4] .. ':count:' .. group .. ':' .. member
    redis.call('HDEL', key, node)
    local total = 0
    for _, n in ipairs(redis.call('HVALS', key)) do total = total + tonumber(n) end
    if total <= 0 then
      redis.call('SREM', ARGV[4] .. ':members:' .. group, member)
      table.insert(emptied, entry)
    end
  end
  redis.call('DEL', mine)
  table.insert(out, node)
  table.insert(out, emptied)
end
return out
"""

# KEYS: count hash, members set, alive, this node's count set
# ARGV: node, delta (or, with ARGV[5] = 'set', the node's count itself),
# entry (group NUL member), member
_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n
if ARGV[5] == 'set' then
  n = tonumber(ARGV[2])
  redis.call('HSET', KEYS[1], ARGV[1], n)
else
  n = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
end
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[4], ARGV[3])
else
  redis.call('SADD', KEYS[4], ARGV[3])
end
local total = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local expiry = redis.call('ZSCORE', KEYS[3], fields[i])
  if fields[i] == ARGV[1] or (expiry and tonumber(expiry) > now) then
    total = total + tonumber(fields[i + 1])
  end
end
if total > 0 then
  redis.call('SADD', KEYS[2], ARGV[4])
else
  redis.call('SREM', KEYS[2], ARGV[4])
end
return total
"""

# KEYS: members set, alive; ARGV: prefix, group
_COUNTS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local fields = redis.call('HGETALL', ARGV[1] .. ':count:' .. ARGV[2] .. ':' .. member)
  local total = 0
  for i = 1, #fields, 2 do
    local expiry = redis.call('ZSCORE', KEYS[2], fields[i])
    if expiry and tonumber(expiry) > now then total = total + tonumber(fields[i + 1]) end
  end
  if total > 0 then
    table.insert(out, member)
    table.insert(out, total)
  end
end
return out
"""

_REFRESH = """
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local value = ARGV[i + 1]
  if value == '' then
    redis.call('PEXPIRE', key, ttl)
  else
    redis.call('SET', key, value, 'PX', ttl)
  end
end
return #KEYS
"""

_REPORTS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local alive = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local out = {}
for _, node in ipairs(alive) do
  local report = redis.call('HGET', KEYS[2], node)
  if report then
    table.insert(out, node)
    table.insert(out, report)
  end
end
return out
"""


# -- the broker ---------------------------------------------------------------


class _Line:
    """Commands sent straight on one connection of a client's pool, without
    the client's layers around each command (a lease from the pool, the
    retry policy, telemetry): on the paths every publication takes (the
    publish script, the reader's ``XREAD``) they cost more CPU than the rest
    of the command. Not on Redis Cluster, where the client routes each command
    to its shard. A connection that breaks is replaced by the pool's next."""

    def __init__(self, client: coredis.Redis[bytes]) -> None:
        self._client = client
        self._connection: BaseConnection | None = None

    async def call(self, command: bytes, *args: Any, blocking: bool = False) -> Any:
        connection = self._connection
        if connection is None or not connection.usable:
            pool = self._client.connection_pool
            connection = await pool.get_connection()
            # back in the pool, which replaces it when it breaks (only this uses it)
            pool.release(connection)
            self._connection = connection
        try:
            return await connection.create_request(command, *args,
                                                   disconnect_on_cancellation=blocking)
        except coredis.exceptions.ReadOnlyError:
            # a primary turned replica (Sentinel failover): ask the pool again
            connection.invalidate("the server is a replica now")
            raise

    async def script(self, script: str, keys: list[str], *args: Any) -> Any:
        """Run ``script`` by its SHA1 (sent whole once, when Redis does not
        have it: after a restart, say)."""
        try:
            return await self.call(b"EVALSHA", script_sha(script), len(keys), *keys, *args)
        except coredis.exceptions.NoScriptError:
            return await self.call(b"EVAL", script, len(keys), *keys, *args)


@functools.cache
def script_sha(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


def _fields(flat: list[Any]) -> dict[bytes, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class RedisBroker:
    """:class:`~.broker.Broker` on Redis (see the module's docstring)."""

    clustered = True

    def __init__(self, url: str, *, prefix: str = "switchboard", heartbeat: float = 2.0,
                 node_ttl: float = 6.0, history_size: int = 10_000,
                 history_ttl: float = 0.0) -> None:
        self.url = url
        self.location = parse_url(url)
        self.prefix = prefix
        #: What every key starts with: on Redis Cluster the prefix is a hash tag,
        #: so that every key of the cluster is in one slot.
        self.key_prefix = f"{{{prefix}}}" if self.location.kind == "cluster" else prefix
        self.heartbeat = heartbeat
        self.node_ttl = node_ttl
        self.history_size = history_size
        #: Milliseconds of history kept (0: bounded by ``history_size`` only).
        self.history_ttl_ms = math.ceil(history_ttl * 1000)
        self.node_id = new_node_id()
        self.control = ControlHandlers()
        p = self.key_prefix
        self.stream_key = f"{p}:stream"
        self.control_key = f"{p}:control"
        self.epoch_key = f"{p}:epoch"
        self.alive_key = f"{p}:alive"
        self.reports_key = f"{p}:reports"
        self._sentinel: coredis.Sentinel[bytes] | None = None
        #: The id of the stream entry up to which this node has handed every
        #: entry to the hub (its reader, or :meth:`publish_many` for the
        #: node's own; at the start, the newest entry of the stream): what
        #: comes after reaches an attached session live, not by a replay.
        self.delivered_id: tuple[int, int] | None = None
        #: This node's publications added to the stream but not handed to the
        #: hub yet, as they wait for an older entry the reader has not
        #: delivered: the id of that entry -> (id, recovery offset, publication).
        self._early: dict[tuple[int, int], tuple[tuple[int, int], str, Publication]] = {}
        self._deliver: Deliver | None = None
        #: The epoch of the stream as this node last saw it.
        self.epoch: str | None = None
        self._available = False
        self._client: coredis.Redis[bytes] | None = None
        self._recovery: RedisRecovery | None = None
        self._forget: list[str] = []
        self._publisher: coredis.Redis[bytes] | None = None
        self._publisher_line: _Line | None = None
        #: This node's counts (:meth:`count`), to write again if Redis lost them.
        self._counts: dict[str, dict[str, int]] = {}
        self._counts_lost = False
        #: A heartbeat of this node has reached Redis (a later one that finds
        #: the node missing from the live ones: it had been taken for gone).
        self._beaten = False
        #: Taken for gone: NODE_BACK is to be announced once its counts are back.
        self._back_due = False
        self._forget_added = trio.Event()

    # -- clients ---------------------------------------------------------------

    def _new_client(self, stream_timeout: float, **options: Any) -> coredis.Redis[bytes]:
        where = self.location
        if where.kind == "sentinel":
            assert self._sentinel is not None
            return self._sentinel.primary_for(
                where.service, stream_timeout=stream_timeout, **options)
        if where.kind == "cluster":
            if "max_connections" in options:  # (the publisher: one per node)
                options["max_connections_per_node"] = True
            # (typed as a single server's client: the commands used are the same)
            return coredis.RedisCluster(  # type: ignore[return-value]
                startup_nodes=[TCPLocation(host, port) for host, port in where.hosts],
                username=where.username, password=where.password, ssl=where.tls,
                decode_responses=False, retry_policy=NoRetryPolicy(),
                stream_timeout=stream_timeout, connect_timeout=CONNECT_TIMEOUT, **options)
        return coredis.Redis.from_url(
            self.url, decode_responses=False, retry_policy=NoRetryPolicy(),
            stream_timeout=stream_timeout, connect_timeout=CONNECT_TIMEOUT, **options)

    def _open_sentinel(self) -> coredis.Sentinel[bytes]:
        where = self.location
        sentinel_options: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT,
                                            "stream_timeout": COMMAND_TIMEOUT}
        if where.sentinel_password:
            sentinel_options["password"] = where.sentinel_password
        return coredis.Sentinel(
            [TCPLocation(host, port) for host, port in where.hosts],
            sentinel_kwargs=sentinel_options, decode_responses=False,
            retry_policy=NoRetryPolicy(), connect_timeout=CONNECT_TIMEOUT,
            username=where.username, password=where.password, db=where.db)

    def _redis(self) -> coredis.Redis[bytes]:
        if self._client is None:
            raise BrokerUnavailable("the broker is not running")
        return self._client

    @property
    def available(self) -> bool:
        return self._available

    def _lost(self, what: str, exc: BaseException) -> None:
        if self._available:
            log.warning("Redis unreachable (%s): %s", what, exc)
        self._available = False

    # -- publishing ------------------------------------------------------------

    async def publish(self, publication: Publication) -> None:
        await self.publish_many([publication])

    async def publish_many(self, publications: list[Publication]) -> None:
        """Add ``publications`` to the stream, in order, and return once Redis
        has them (so what a caller publishes next comes after them).

        Every publication of this node goes through one connection
        (pipelined: concurrent calls do not wait for each other's answers),
        so Redis takes them in the order they were made.

        This node's members get them as soon as Redis answers, without
        waiting for the reader to read them back, when every older entry of
        the stream has been delivered here (Redis answers with the id of the
        entry before them); otherwise right after that entry is (see
        :meth:`_hand_over`). The reader skips what was delivered this way."""
        redis = self._publisher
        if redis is None:
            raise BrokerUnavailable("the broker is not running")
        if not self._available:  # (also: not yet reading, so it could miss this)
            raise BrokerUnavailable("Redis is not answering")
        for start in range(0, len(publications), PUBLISH_BATCH):
            batch = publications[start:start + PUBLISH_BATCH]
            encoded = list(map(encode_publication, batch))
            line = self._publisher_line
            try:
                if line is not None:
                    added = await line.script(_PUBLISH_MANY, [self.stream_key, self.epoch_key],
                                              self.history_size, self.history_ttl_ms,
                                              secrets.token_hex(8), *encoded)
                else:
                    added = await redis.eval(_PUBLISH_MANY,
                                             keys=[self.stream_key, self.epoch_key],
                                             args=[self.history_size, self.history_ttl_ms,
                                                   secrets.token_hex(8), *encoded])
            except _UNREACHABLE as exc:
                self._lost("publish", exc)
                sent = f"; {start} of {len(publications)} sent" if start else ""
                raise BrokerUnavailable(f"Redis is not answering ({exc}){sent}") from None
            assert isinstance(added, list)
            self._published(text_of(added[0]), text_of(added[1]),
                            [text_of(entry_id) for entry_id in added[2:]], encoded)

    def _published(self, epoch: str, before: str, entry_ids: list[str],
                   encoded: list[str]) -> None:
        """Hand this node's publications, just added to the stream after the
        entry ``before``, to the hub now if the entries up to ``before`` are
        delivered here, or keep them until they are."""
        deliver = self._deliver
        if deliver is None or epoch != self.epoch or self.delivered_id is None:
            return  # (a stream this node's reader is not reading yet: it will)
        previous = stream_id(before)
        for entry_id, text in zip(entry_ids, encoded, strict=True):
            at = stream_id(entry_id)
            if at > self.delivered_id:  # (else the reader was quicker)
                # the same object as the other nodes get (JSON's, not the caller's)
                publication = decode_publication(text)
                offset = f"{epoch}:{entry_id}"
                if previous == self.delivered_id:
                    self._hand_over(deliver, at, offset, publication)
                elif len(self._early) < EARLY_LIMIT:
                    self._early[previous] = (at, offset, publication)
            previous = at

    def _hand_over(self, deliver: Deliver, at: tuple[int, int], offset: str,
                   publication: Publication | None) -> None:
        """Deliver the entry ``at`` (the one after ``delivered_id``; None: an
        unreadable one, skipped), then those of this node's publications that
        waited for it."""
        self.delivered_id = at
        if publication is not None:
            deliver(publication, offset)
        early = self._early
        while early:
            waiting = early.pop(at, None)
            if waiting is None:
                return
            at, offset, publication = waiting
            self.delivered_id = at
            deliver(publication, offset)

    def _drop_passed(self) -> None:
        """Forget kept publications the reader went past: it delivered them
        itself (the entry they waited for was trimmed away before it was read)."""
        delivered = self.delivered_id
        if delivered is None:
            return
        for key, (at, _, _) in list(self._early.items()):
            if at > delivered:
                return  # (kept in the stream's order, mostly: the rest later)
            del self._early[key]

    async def announce(self, topic: str, data: Any) -> None:
        redis = self._redis()
        try:
            await redis.xadd(self.control_key,
                             {"c": dumps([topic, data, self.node_id])},
                             trim_strategy=coredis.PureToken.MAXLEN, threshold=CONTROL_SIZE,
                             trim_operator=coredis.PureToken.APPROXIMATELY)
        except _UNREACHABLE as exc:
            self._lost("announce", exc)
            raise BrokerUnavailable(f"Redis is not answering ({exc})") from None

    def on_announcement(self, topic: str, handler: AnnouncementHandler) -> None:
        self.control.add(topic, handler)

    def forget_soon(self, key: str) -> None:
        """Delete ``key`` in the background (best effort: it expires anyway)."""
        self._forget.append(key)
        self._forget_added.set()

    async def _forget_keys(self, redis: coredis.Redis[bytes]) -> None:
        while True:
            await self._forget_added.wait()
            self._forget_added = trio.Event()
            keys, self._forget = self._forget, []
            try:
                await redis.delete(keys)
            except _UNREACHABLE as exc:
                self._lost("delete", exc)

    def recovery(self, window: float, max_events: int) -> Recovery:
        self._recovery = RedisRecovery(self, window)
        return self._recovery

    async def nodes(self) -> dict[str, dict[str, Any]]:
        redis = self._redis()
        try:
            flat = await redis.eval(_REPORTS, keys=[self.alive_key, self.reports_key])
        except _UNREACHABLE as exc:
            self._lost("stats", exc)
            raise BrokerUnavailable(f"Redis is not answering ({exc})") from None
        assert isinstance(flat, list)
        return {text_of(flat[i]): loads(flat[i + 1]) for i in range(0, len(flat), 2)}

    # -- running ---------------------------------------------------------------

    async def run(self, deliver: Deliver, report: Callable[[], dict[str, Any]], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with AsyncExitStack() as stack:
            if self.location.kind == "sentinel":
                self._sentinel = await stack.enter_async_context(self._open_sentinel())
            commands = self._new_client(COMMAND_TIMEOUT)
            publisher = self._new_client(COMMAND_TIMEOUT, max_connections=1)
            reader = self._new_client(READ_BLOCK + COMMAND_TIMEOUT)
            for client in (commands, publisher, reader):
                await stack.enter_async_context(client)
            await self._serve(commands, publisher, reader, deliver, report, task_status)

    async def _serve(self, commands: coredis.Redis[bytes], publisher: coredis.Redis[bytes],
                     reader: coredis.Redis[bytes], deliver: Deliver,
                     report: Callable[[], dict[str, Any]],
                     task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            self._client = commands
            self._publisher = publisher
            if self.location.kind != "cluster":
                self._publisher_line = _Line(publisher)
            self._deliver = deliver
            started = trio.Event()
            nursery.start_soon(self._read, reader, deliver, started)
            # Start serving when the reader knows where the stream is; if Redis
            # is unreachable, serve anyway (degraded) and catch up when it is back.
            with trio.move_on_after(CONNECT_TIMEOUT + COMMAND_TIMEOUT):
                await started.wait()
            try:  # counts of this node's sessions count from the start
                with trio.move_on_after(COMMAND_TIMEOUT):
                    await self._heartbeat(commands, report)
            except (*_UNREACHABLE, BrokerUnavailable) as exc:
                self._lost("heartbeat", exc)
            nursery.start_soon(self._beat, commands, report)
            nursery.start_soon(self._forget_keys, commands)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._client = self._publisher = self._deliver = None
                self._publisher_line = None
                self._early.clear()
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    try:
                        await commands.zrem(self.alive_key, [self.node_id])
                        await commands.hdel(self.reports_key, [self.node_id])
                    except Exception as exc:  # the others drop it after node_ttl
                        log.info("node %s not removed from Redis: %r", self.node_id, exc)

    async def _read(self, redis: coredis.Redis[bytes], deliver: Deliver,
                    started: trio.Event) -> None:
        last: str | None = None
        last_control = "$"
        delay = RETRY_FIRST
        line = _Line(redis) if self.location.kind != "cluster" else None
        while True:
            try:
                epoch = text_of(await redis.eval(_EPOCH, keys=[self.epoch_key],
                                               args=[secrets.token_hex(8)]))
                if last is None:
                    newest = await redis.xrevrange(self.stream_key, count=1)
                    last = text_of(newest[0].identifier) if newest else "0-0"
                    self.delivered_id = stream_id(last)
                    newest_control = await redis.xrevrange(self.control_key, count=1)
                    last_control = text_of(newest_control[0].identifier) \
                        if newest_control else "0-0"
                elif epoch != self.epoch:
                    log.warning("the Redis stream was lost (new epoch): reading the new one "
                                "from its start")
                    last, last_control = "0-0", "0-0"
                    self.delivered_id = (0, 0)
                    self._early.clear()
                    self._counts_lost = True
                self.epoch = epoch
                if not self._available:
                    log.info("Redis reachable")
                self._available = True
                started.set()
                delay = RETRY_FIRST
                while True:
                    answer = await self._xread(redis, line, last, last_control)
                    self._available = True  # (a failed publish may have said otherwise)
                    for key, entries in answer:
                        if key == self.stream_key:
                            for entry_id, fields in entries:
                                last = entry_id
                                self._deliver_entry(deliver, entry_id, fields)
                            if self._early:
                                self._drop_passed()
                        else:
                            for entry_id, fields in entries:
                                last_control = entry_id
                                self._dispatch(fields)
            except _UNREACHABLE as exc:
                self._lost("read", exc)
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_LONGEST)

    async def _xread(self, redis: coredis.Redis[bytes], line: _Line | None, last: str,
                     last_control: str) -> list[tuple[str, list[tuple[str, Any]]]]:
        """The entries after ``last`` in the stream and after ``last_control``
        in the control stream, by stream key (waiting up to ``READ_BLOCK``)."""
        if line is not None:
            raw = await line.call(b"XREAD", b"COUNT", READ_COUNT,
                                  b"BLOCK", int(READ_BLOCK * 1000), b"STREAMS",
                                  self.stream_key, self.control_key, last, last_control,
                                  blocking=True)
            return [(text_of(key), [(text_of(entry_id), _fields(flat))
                                    for entry_id, flat in entries])
                    for key, entries in (raw or {}).items()]
        answer = await redis.xread({self.stream_key: last, self.control_key: last_control},
                                   count=READ_COUNT, block=int(READ_BLOCK * 1000))
        return [(text_of(key), [(text_of(entry.identifier), entry.field_values)
                              for entry in entries])
                for key, entries in (answer or {}).items()]

    def _deliver_entry(self, deliver: Deliver, entry_id: str, fields: Any) -> None:
        at = stream_id(entry_id)
        delivered = self.delivered_id
        if delivered is not None and at <= delivered:
            return  # this node's own, handed to the hub when Redis took it
        epoch = text_of(fields.get(b"e", b""))
        if epoch != self.epoch:
            self.epoch = epoch
            self._early.clear()  # (kept for the stream of another epoch)
        publication: Publication | None
        try:
            publication = decode_publication(fields[b"p"])
        except (KeyError, ValueError, TypeError) as exc:
            log.error("unreadable publication %s in Redis: %s", entry_id, exc)
            publication = None
        self._hand_over(deliver, at, f"{epoch}:{entry_id}", publication)

    def _dispatch(self, fields: Any) -> None:
        try:
            topic, data, node = loads(fields[b"c"])
        except (KeyError, ValueError, TypeError) as exc:
            log.error("unreadable announcement in Redis: %s", exc)
            return
        self.control.dispatch(Announcement(topic, data, node))

    async def _heartbeat(self, redis: coredis.Redis[bytes],
                         report: Callable[[], dict[str, Any]]) -> None:
        dead = await redis.eval(_HEARTBEAT, keys=[self.alive_key, self.reports_key],
                                args=[self.node_id, int(self.node_ttl * 1000),
                                      dumps(report()), self.key_prefix])
        assert isinstance(dead, list)
        if int(dead[0]) and self._beaten:
            # cut off for longer than node_ttl: the other nodes dropped this
            # one's counts (and its users went offline there)
            log.warning("this node was taken for gone by the others (no heartbeat for "
                        "%g s): its counts are written again", self.node_ttl)
            self._counts_lost = self._back_due = True
        self._beaten = True
        for i in range(1, len(dead), 2):
            gone = text_of(dead[i])
            if gone == self.node_id:
                continue
            emptied: dict[str, list[str]] = {}
            for entry in dead[i + 1]:
                group, _, member = text_of(entry).partition("\0")
                emptied.setdefault(group, []).append(member)
            log.warning("node %s missed its heartbeats: gone", gone)
            await self.announce(NODE_GONE, {"node": gone, "emptied": emptied})
        # Redis came back without its data, a count failed, or taken for gone:
        # this node's counts again (either step failing: tried at the next beat)
        if self._counts_lost:
            await self._restore_counts(redis)
        if self._back_due:
            await self.announce(NODE_BACK, {"node": self.node_id})
            self._back_due = False

    async def _restore_counts(self, redis: coredis.Redis[bytes]) -> None:
        """Write this node's counts as they are now, whole: set, not added (they
        may be there already, when Redis kept its data or a restore was already
        done since it came back), and those fallen to 0 meanwhile taken out."""
        held = await redis.smembers(f"{self.key_prefix}:node:{self.node_id}:counts")
        for entry in sorted(text_of(e) for e in held):
            group, _, member = entry.partition("\0")
            if member not in self._counts.get(group, {}):
                await self._count(redis, group, member, 0, absolute=True)
        for group, members in list(self._counts.items()):
            for member in list(members):
                await self._count(redis, group, member, members.get(member, 0),
                                  absolute=True)
        self._counts_lost = False

    async def count(self, group: str, member: str, delta: int) -> int:
        members = self._counts.setdefault(group, {})
        n = members.get(member, 0) + delta
        if n > 0:
            members[member] = n
        else:
            members.pop(member, None)
        try:
            return await self._count(self._redis(), group, member, delta)
        except _UNREACHABLE as exc:
            self._lost("count", exc)
            self._counts_lost = True  # written again, whole, with the next heartbeat
            raise BrokerUnavailable(f"Redis is not answering ({exc})") from None

    async def _count(self, redis: coredis.Redis[bytes], group: str, member: str,
                     delta: int, *, absolute: bool = False) -> int:
        """Add ``delta`` to this node's count (``absolute``: set it to ``delta``)."""
        p = self.key_prefix
        total = await redis.eval(
            _COUNT, keys=[f"{p}:count:{group}:{member}", f"{p}:members:{group}",
                          self.alive_key, f"{p}:node:{self.node_id}:counts"],
            args=[self.node_id, delta, f"{group}\0{member}", member,
                  "set" if absolute else "add"])
        return max(int(total), 0)  # type: ignore[arg-type]

    async def counts(self, group: str) -> dict[str, int]:
        try:
            flat = await self._redis().eval(_COUNTS,
                                            keys=[f"{self.key_prefix}:members:{group}",
                                                  self.alive_key],
                                            args=[self.key_prefix, group])
        except _UNREACHABLE as exc:
            self._lost("counts", exc)
            raise BrokerUnavailable(f"Redis is not answering ({exc})") from None
        assert isinstance(flat, list)
        return {text_of(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def _beat(self, redis: coredis.Redis[bytes],
                    report: Callable[[], dict[str, Any]]) -> None:
        while True:
            try:
                await self._heartbeat(redis, report)
                if self._recovery is not None:
                    await self._recovery.refresh(redis)
            except (*_UNREACHABLE, BrokerUnavailable) as exc:
                self._lost("heartbeat", exc)
            await trio.sleep(self.heartbeat)


# -- recovery -----------------------------------------------------------------


def _canonical(identity: Identity) -> frozenset[str]:
    user, tenant = identity.user_id, identity.tenant_id
    return frozenset((f"user:{user}", f"tenant:{tenant}", f"tenant:{tenant}:agents"))


def _identity_json(identity: Identity) -> dict[str, Any]:
    return attrs.asdict(identity, recurse=False)


def _identity_of(data: dict[str, Any]) -> Identity:
    return Identity(**{**data, "rooms": tuple(data.get("rooms", ()))})


class RedisRecovery:
    """:class:`~.recovery.Recovery` in Redis: any node recovers any node's session.

    The state of every open session (``track``) is kept in Redis too, written
    when it opens and when its rooms change and refreshed with each heartbeat
    (expiring ``node_ttl`` + ``window`` after the last): when its node dies
    without saving it, another node can still recover it. A room joined less
    than a heartbeat before such a death may be missing from the recovered
    session."""

    local = False

    def __init__(self, broker: RedisBroker, window: float) -> None:
        self.broker = broker
        self.window = window
        #: pid -> (session, rooms last written, or None for never)
        self._tracked: dict[str, tuple[Session, frozenset[str] | None]] = {}

    def track(self, pid: str, session: Session) -> None:
        self._tracked[pid] = (session, None)

    def untrack(self, pid: str) -> None:
        if self._tracked.pop(pid, None) is not None:
            self.broker.forget_soon(self._key(pid))

    async def refresh(self, redis: coredis.Redis[bytes]) -> None:
        """Write the tracked sessions whose rooms changed; extend the others."""
        ttl = int((self.broker.node_ttl + self.window) * 1000)
        items = list(self._tracked.items())
        for start in range(0, len(items), 500):
            keys: list[str] = []
            values: list[str] = []
            written: list[tuple[str, Session, frozenset[str]]] = []
            for pid, (session, last) in items[start:start + 500]:
                rooms = frozenset(session.rooms - _canonical(session.identity))
                keys.append(self._key(pid))
                values.append("" if rooms == last else self._value(session.id,
                                                                     session.identity, rooms))
                written.append((pid, session, rooms))
            await redis.eval(_REFRESH, keys=keys, args=[ttl, *values])
            for pid, session, rooms in written:
                if pid in self._tracked:
                    self._tracked[pid] = (session, rooms)

    def _value(self, session_id: str, identity: Identity, rooms: frozenset[str]) -> str:
        return dumps({"session_id": session_id, "identity": _identity_json(identity),
                      "rooms": sorted(rooms)})

    def record(self, publication: Publication) -> str:  # pragma: no cover (not local)
        raise NotImplementedError("offsets come from the Redis stream")

    def _key(self, pid: str) -> str:
        return f"{self.broker.key_prefix}:session:{pid}"

    async def missed(self, offset: str, rooms: Iterable[str], tenant: str,
                     session_id: str) -> list[tuple[str, Publication]] | None:
        epoch, _, after = offset.partition(":")
        if not is_entry_id(after):
            return None  # (not an offset this broker gave)
        broker = self.broker
        redis = broker._redis()
        try:
            current = await redis.get(broker.epoch_key)
            if current is None or text_of(current) != epoch:
                return None  # the history the offset belongs to is gone
            if not await redis.xrange(broker.stream_key, after, after):
                return None  # trimmed away (or never there): cannot tell what was missed
            room_set = set(rooms)
            out: list[tuple[str, Publication, tuple[int, int]]] = []
            start, fetched = f"({after}", stream_id(after)
            empty_reads = 0
            while True:
                entries = await redis.xrange(broker.stream_key, start, "+", count=READ_COUNT)
                empty_reads = 0 if entries else empty_reads + 1
                for entry in entries:
                    entry_id = text_of(entry.identifier)
                    fetched = stream_id(entry_id)
                    publication = decode_publication(entry.field_values[b"p"])
                    if missed_by(publication, tenant, room_set, session_id):
                        out.append((f"{epoch}:{entry_id}", publication, fetched))
                if entries:
                    start = f"({text_of(entries[-1].identifier)}"
                # The caller attaches the session without waiting after this
                # returns: what this node handed to the hub up to now (its
                # reader, or its publishers for its own publications: every
                # entry up to delivered_id) is replayed, what it hands over
                # later reaches the session live. Read on while the node is
                # past what was read (it delivered entries added after the
                # last XRANGE), and leave out what it has not delivered yet (it
                # will, live): nothing twice, nothing missed.
                delivered = broker.delivered_id
                caught_up = delivered is None or delivered <= fetched \
                    or empty_reads > RECOVERY_EMPTY_READS  # (a stream made anew)
                if len(entries) < READ_COUNT and caught_up:
                    return [(offset, publication) for offset, publication, at in out
                            if delivered is None or at <= delivered]
        except _UNREACHABLE as exc:
            broker._lost("recovery", exc)
            raise BrokerUnavailable(f"Redis is not answering ({exc})") from None

    async def save(self, pid: str, saved: SavedSession) -> None:
        self._tracked.pop(pid, None)
        redis = self.broker._redis()
        value = self._value(saved.session_id, saved.identity, saved.rooms)
        try:
            await redis.set(self._key(pid), value, px=max(1, int(self.window * 1000)))
        except _UNREACHABLE as exc:
            self.broker._lost("recovery", exc)
            raise BrokerUnavailable(f"Redis is not answering ({exc})") from None

    async def restore(self, pid: str) -> SavedSession | None:
        redis = self.broker._redis()
        try:
            value = await redis.getdel(self._key(pid))
        except _UNREACHABLE as exc:
            self.broker._lost("recovery", exc)
            raise BrokerUnavailable(f"Redis is not answering ({exc})") from None
        if value is None:
            return None
        try:
            data = loads(value)
            return SavedSession(data["session_id"], _identity_of(data["identity"]),
                                frozenset(data["rooms"]), trio.current_time())
        except (KeyError, TypeError, ValueError) as exc:
            log.error("unreadable saved session in Redis: %s", exc)
            return None
