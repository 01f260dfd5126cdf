"""The watcher process: one asyncio loop holding many engines' event streams.

- Every ``lease / 4`` seconds a *cycle* renews this process's heartbeat and host leases
  in a few batched statements, works out a fair share (enabled hosts / live watchers),
  gives back hosts above it and claims free ones below it, and starts or stops streams
  to match (``HostWatch`` in ``posture/models/watch.py`` holds the decisions).
- Each held host has a ``HostStream`` task: decrypt its credentials, open ``/events``
  from where the last one left off, feed relevant events to its ``Debounce``, and
  reconnect with exponential backoff (jittered) when the engine goes away.
- A due burst goes to the *dispatcher*, which in one batch checks the hosts' poll
  leases (a host being polled right now is retried a second later, so a poll that
  started before the events cannot swallow them), enqueues ``poll_host`` for the
  others and records where each stream resumes.

All database and broker I/O runs on one thread (the ORM is synchronous); the loop only
does network I/O. The interval polls dispatched by beat go on regardless: events make
polls sooner, they never replace them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from posture import polling
from posture.collector import EngineTarget, MalformedAnswer
from posture.collector.engine import EngineError, EngineRejected, EngineUnreachable
from posture.models import DockerHost, HostWatch, PollRun, Watcher
from posture.models.querysets import FAILING_QUEUE, POLLS_QUEUE
from posture.models.watch import fair_share
from posture.tasks import poll_host

from .events import Burst, Debounce, Event
from .stream import open_stream

log = logging.getLogger(__name__)
T = TypeVar("T")

BACKOFF_BASE = 1.0
BACKOFF_MAX = 60.0
# A stream that stayed open this long was a success: the next failure starts the backoff afresh.
STABLE_AFTER = 10.0
# A host whose poll lease is held is asked again this much later.
BUSY_RETRY = 1.0
# The dispatcher waits this long after being woken, so simultaneous bursts share a batch.
BATCH_WAIT = 0.02
# How long the broker or database may be unavailable before the dispatcher tries again.
DISPATCH_RETRY = 2.0
# Tunnels and DNS run on threads: enough for many ssh hosts connecting at once.
IO_THREADS = 32
FAILURES = (*polling.ENGINE_FAILURES, EngineError, MalformedAnswer)


@dataclass(frozen=True)
class HostConfig:
    """What a stream needs to know about its host, as the last cycle read it."""

    pk: int
    name: str
    url: str
    insecure: bool
    interval: int

    @property
    def connection(self) -> tuple[str, bool]:
        return self.url, self.insecure


@dataclass
class Pending:
    """A burst on its way to the broker, with the stream's state to record."""

    stream: HostStream
    burst: Burst


@dataclass
class Stats:
    events: int = 0
    polls: int = 0
    busy: int = 0
    # Seconds from the engine's first event to the enqueue (engine clock) and from its
    # arrival here; the latest few thousand, for the benchmark.
    latencies: deque[tuple[float | None, float]] = field(default_factory=lambda: deque(maxlen=5000))

    def record(self, burst: Burst) -> tuple[float | None, float]:
        engine_lag = (time.time_ns() - burst.first_nano) / 1e9 if burst.first_nano else None
        pair = (engine_lag, time.monotonic() - burst.first_at)
        self.latencies.append(pair)
        return pair


def backoff(failures: int) -> float:
    """1, 2, 4 … 60 seconds, each between half and all of it so many hosts do not retry in step."""
    return min(BACKOFF_MAX, BACKOFF_BASE * 2**failures) * random.uniform(0.5, 1.0)


def _open_credentials(pk: int) -> tuple[contextlib.ExitStack, EngineTarget]:
    """The host's credentials decrypted into private files, as a poll has them (database thread)."""
    host = DockerHost.objects.filter(pk=pk).first()
    if host is None:
        raise EngineRejected("the host was removed")
    if host.scheme == "ssh" and not host.ssh_known_hosts.strip():
        # Trust on first use belongs to the poll, which stores the key it has read through.
        raise EngineRejected("the ssh host key is not pinned yet: it is pinned by the first successful poll")
    stack = contextlib.ExitStack()
    creds = stack.enter_context(polling.credentials(host))
    return stack, creds.target


class HostStream:
    """One held host: its event stream, reconnected for as long as the host is held."""

    def __init__(self, watcher: EventWatcher, config: HostConfig, since_nano: int | None, *, taken_over: bool = False) -> None:
        self.watcher = watcher
        self.config = config
        self.seen_nano = since_nano  # resume point for this process's next connection
        self.flushed_nano = since_nano  # resume point recorded in the database
        self.debounce = Debounce(watcher.quiet, watcher.max_delay)
        self.connected_at: datetime | None = None
        self.error = ""
        self.last_event_at: datetime | None = None
        # A stream lost while open, or a host whose last watcher died: the engine's event
        # buffer (256 events on Docker) may not reach back far enough, so poll once on connecting.
        self.resync = " (taken over from a watcher whose lease ran out); polling once" if taken_over else ""
        self._timer: asyncio.TimerHandle | None = None
        self.task = asyncio.create_task(self.run(), name=f"watch-{config.name}")

    def row(self) -> HostWatch:
        return HostWatch(
            host_id=self.config.pk, connected_at=self.connected_at, error=self.error, since_nano=self.flushed_nano, last_event_at=self.last_event_at
        )

    async def run(self) -> None:
        failures, said = 0, ""
        loop = asyncio.get_running_loop()
        while True:
            opened: float | None = None
            try:
                stack, target = await self._credentials()
                with stack:
                    async with open_stream(target, self.seen_nano) as stream:
                        opened = loop.time()
                        self._opened(stream.engine_time_nano)
                        async for event in stream.events():
                            if event.relevant:
                                self._event(event)
                raise EngineUnreachable("the engine ended the event stream")
            except FAILURES as exc:
                self._lost(str(exc))
            except DatabaseError as exc:
                self._lost(f"the database is unavailable: {exc}")
            except Exception as exc:  # a bug must not end this host's watch for good
                log.exception("%s: unexpected error in the event stream", self.config.name)
                self._lost(f"unexpected error: {type(exc).__name__}: {exc}")
            if opened is not None and loop.time() - opened >= STABLE_AFTER:
                failures = 0
            delay = backoff(failures)
            failures += 1
            # Said once per kind of failure, not once per attempt.
            log.log(logging.WARNING if self.error != said else logging.DEBUG, "%s: %s; reconnecting in %.1fs", self.config.name, self.error, delay)
            said = self.error
            await asyncio.sleep(delay)

    async def _credentials(self) -> tuple[contextlib.ExitStack, EngineTarget]:
        """Decrypted on the database thread; if we are cancelled meanwhile, the files are still removed."""
        loading = asyncio.ensure_future(self.watcher.db(_open_credentials, self.config.pk))
        try:
            return await asyncio.shield(loading)
        except asyncio.CancelledError:
            loading.add_done_callback(lambda f: f.result()[0].close() if not f.cancelled() and f.exception() is None else None)
            raise

    def _opened(self, engine_time_nano: int | None) -> None:
        self.connected_at, self.error = timezone.now(), ""
        if self.seen_nano is None and engine_time_nano is not None:
            # Watching begins: a later stream replays from here.
            self.seen_nano = self.flushed_nano = engine_time_nano - 1
        if self.resync:
            self._add(Event(type="daemon", action="reconnect", time_nano=0))
        log.log(logging.INFO if self.resync else logging.DEBUG, "%s: watching events%s", self.config.name, self.resync)
        self.resync = ""
        self.watcher.changed(self)

    def _lost(self, error: str) -> None:
        if self.connected_at is not None:
            # The engine may have restarted, or come back with other settings, which no event reports.
            self.resync = " again; polling once"
        elif self.error == error[:500]:
            return  # the same failure again: nothing new to record
        self.connected_at, self.error = None, error[:500]
        self.watcher.changed(self)

    def _event(self, event: Event) -> None:
        self.seen_nano = event.time_nano
        self.last_event_at = timezone.now()
        self.watcher.stats.events += 1
        self._add(event)

    def _add(self, event: Event) -> None:
        self._arm(self.debounce.add(event, time.monotonic()))

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, due - time.monotonic()), self._due)

    def _due(self) -> None:
        self._timer = None
        burst = self.debounce.take()
        if burst is not None:
            self.watcher.enqueue(self, burst)

    def retry(self, burst: Burst, after: float) -> None:
        """A burst the dispatcher could not send yet: back in, due again ``after`` seconds from now."""
        self.debounce.put_back(burst, hold_until=time.monotonic() + after)
        self._arm(self.debounce.due_at())

    def sent(self, burst: Burst) -> None:
        if burst.last_nano:
            self.flushed_nano = burst.last_nano

    async def stop(self) -> Burst | None:
        """End the stream; what was still waiting to be sent is returned, not lost."""
        if self._timer is not None:
            self._timer.cancel()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.connected_at = None
        return self.debounce.take()


class EventWatcher:
    def __init__(self, name: str, *, lease: float, quiet: float, max_delay: float, max_hosts: int) -> None:
        self.name = name
        self.lease = timedelta(seconds=lease)
        self.renew_every = lease / 4
        self.quiet, self.max_delay, self.max_hosts = quiet, max_delay, max_hosts
        self.hosts: dict[int, HostStream] = {}
        self.stats = Stats()
        self._pending: dict[int, Pending] = {}
        self._changed: set[int] = set()
        self._gone: dict[int, HostStream] = {}  # stopped streams whose last state is still to be written
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._closing = False
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watch-db")

    # --- the database thread ---------------------------------------------------------

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, partial(_in_db, fn, *args))

    # --- running ---------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="watch-io"))
        dispatcher = asyncio.create_task(self._dispatch_loop(), name="watch-dispatch")
        log.info(
            "watcher %s started (lease %ss, quiet %ss, max delay %ss, at most %d hosts)",
            self.name,
            self.lease.seconds,
            self.quiet,
            self.max_delay,
            self.max_hosts,
        )
        try:
            while not self._stopping.is_set():
                await self._cycle()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.renew_every)
        finally:
            await self._shutdown(dispatcher)

    async def _cycle(self) -> None:
        try:
            held = await self.db(self._claim)
        except DatabaseError as exc:
            # Streams stay open; leases not renewed in time go to other watchers.
            log.warning("watcher %s: database unavailable (%s); keeping %d stream(s) open", self.name, exc, len(self.hosts))
            return
        except Exception:
            log.exception("watcher %s: the lease cycle failed; trying again next cycle", self.name)
            return
        before = len(self.hosts)
        # Hosts given back or claimed by another, and hosts whose URL changed (reopened below).
        await self._drop([pk for pk, s in self.hosts.items() if pk not in held or s.config.connection != held[pk][0].connection])
        for pk, (config, since, taken_over) in held.items():
            stream = self.hosts.get(pk)
            if stream is None:
                self._gone.pop(pk, None)  # a reopened stream writes its own state
                self.hosts[pk] = HostStream(self, config, since, taken_over=taken_over)
            else:
                stream.config = config
        if len(self.hosts) != before:
            connected = sum(1 for s in self.hosts.values() if s.connected_at)
            log.info("watcher %s holds %d host(s) (%d connected)", self.name, len(self.hosts), connected)

    def _claim(self) -> dict[int, tuple[HostConfig, int | None, bool]]:
        """One cycle's lease work (database thread): heartbeat, renew, share out, claim."""
        now = timezone.now()
        until = now + self.lease
        alive = Watcher.heartbeat(self.name, now, self.lease, hosts=len(self.hosts))
        HostWatch.objects.ensure_rows()
        HostWatch.objects.release(self.name, HostWatch.objects.held_by(self.name).filter(host__enabled=False).values_list("host_id", flat=True))
        HostWatch.objects.renew(self.name, until)
        share = fair_share(DockerHost.objects.filter(enabled=True).count(), alive, self.max_hosts)
        held = list(HostWatch.objects.held_by(self.name).order_by("host_id").values_list("host_id", flat=True))
        if len(held) > share:
            # Above a fair share (another watcher joined): give back the newest, keep the rest still.
            HostWatch.objects.release(self.name, held[share:])
        taken: dict[int, bool] = {}
        if len(held) < share:
            taken = HostWatch.objects.claim(self.name, share - len(held), now, until)
        if share == self.max_hosts and (unwatched := HostWatch.objects.free(now).filter(host__enabled=True).count()):
            log.warning("watcher %s holds its limit of %d hosts; %d host(s) are not watched: start another watcher", self.name, self.max_hosts, unwatched)
        rows = (
            HostWatch.objects.held_by(self.name).select_related("host").only("since_nano", "host__name", "host__url", "host__insecure", "host__poll_interval")
        )
        return {
            r.host_id: (
                HostConfig(pk=r.host_id, name=r.host.name, url=r.host.url, insecure=r.host.insecure, interval=r.host.poll_interval),
                r.since_nano,
                taken.get(r.host_id, False),
            )
            for r in rows
        }

    async def _drop(self, pks: list[int]) -> None:
        """End these streams together; what they had not sent yet is sent now."""
        streams = [self.hosts.pop(pk) for pk in pks]
        bursts = await asyncio.gather(*(s.stop() for s in streams))
        for stream, burst in zip(streams, bursts, strict=True):
            if burst is not None:
                self.enqueue(stream, burst)
            self._gone[stream.config.pk] = stream
            self.changed(stream)

    # --- the dispatcher ---------------------------------------------------------------

    def enqueue(self, stream: HostStream, burst: Burst) -> None:
        self._pending[stream.config.pk] = Pending(stream, burst)
        self._wake.set()

    def changed(self, stream: HostStream) -> None:
        self._changed.add(stream.config.pk)
        self._wake.set()

    async def _dispatch_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._closing:
                await asyncio.sleep(BATCH_WAIT)
            pending, self._pending = self._pending, {}
            changed, self._changed = self._changed, set()
            streams = {pk: s for pk in changed | pending.keys() if (s := self.hosts.get(pk) or self._gone.get(pk)) is not None}
            if pending or changed:
                bursts = {pk: (p.stream.config, p.burst) for pk, p in pending.items()}
                try:
                    sent, busy = await self.db(self._flush, bursts, [s.row() for s in streams.values()])
                except Exception as exc:  # the broker or the database: keep everything and try again
                    log.warning("watcher %s: cannot enqueue polls or record streams (%s); retrying in %.0fs", self.name, exc, DISPATCH_RETRY)
                    if self._closing:
                        return
                    for p in pending.values():
                        p.stream.retry(p.burst, DISPATCH_RETRY)
                    self._changed |= changed
                    await asyncio.sleep(DISPATCH_RETRY)
                    self._wake.set()
                    continue
                for pk, p in pending.items():
                    if pk in sent:
                        p.stream.sent(p.burst)
                    elif pk in busy and not self._closing:
                        self.stats.busy += 1
                        p.stream.retry(p.burst, BUSY_RETRY)
                for pk in changed:
                    if pk not in self.hosts:
                        self._gone.pop(pk, None)
            if self._closing and not self._pending and not self._changed:
                return

    def _flush(self, bursts: dict[int, tuple[HostConfig, Burst]], rows: list[HostWatch]) -> tuple[set[int], set[int]]:
        """Enqueue one poll per burst unless a poll holds the host now, and record the
        streams' state and where each resumes (database thread). Returns (sent, busy)."""
        now = timezone.now()
        busy = set(PollRun.objects.holding(list(bursts), now).values_list("host_id", flat=True)) if bursts else set()
        failing = set(DockerHost.objects.filter(pk__in=list(bursts), failures__gt=0).values_list("pk", flat=True)) if bursts else set()
        sent: set[int] = set()
        for pk, (config, burst) in bursts.items():
            if pk in busy:
                continue
            # Never dropped for being late: a poll made redundant by another waits for
            # its lease and then finds nothing new, as any poll does.
            poll_host.apply_async((pk,), queue=FAILING_QUEUE if pk in failing else POLLS_QUEUE)
            sent.add(pk)
            self._log_sent(config, burst)
        for row in rows:
            if row.pk in sent and bursts[row.pk][1].last_nano:
                # Recorded only once the poll is on the queue: a crash in between replays the events.
                row.since_nano = bursts[row.pk][1].last_nano
        if rows:
            owned = set(HostWatch.objects.held_by(self.name).filter(pk__in=[r.pk for r in rows]).values_list("pk", flat=True))
            HostWatch.objects.bulk_update([r for r in rows if r.pk in owned], ["connected_at", "error", "since_nano", "last_event_at"])
        return sent, busy

    def _log_sent(self, config: HostConfig, burst: Burst) -> None:
        self.stats.polls += 1
        engine_lag, held = self.stats.record(burst)
        after_event = f"{engine_lag * 1000:.0f} ms after the first event, " if engine_lag is not None else "after a reconnection, "
        log.info(
            "poll of %s enqueued: %d event(s) over %.1fs (%s); %s%.0f ms after it arrived",
            config.name,
            burst.events,
            burst.last_at - burst.first_at,
            ", ".join(sorted(burst.subjects)[:5]) or "-",
            after_event,
            held * 1000,
        )

    # --- stopping ---------------------------------------------------------------------

    async def _shutdown(self, dispatcher: asyncio.Task[None]) -> None:
        """Send what is waiting, record where each stream stopped, give the hosts back."""
        await self._drop(list(self.hosts))
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(dispatcher, 30)
        except Exception as exc:
            log.warning("watcher %s: could not send everything before stopping: %s", self.name, exc)
        with contextlib.suppress(Exception):
            await self.db(self._leave)
        self._db.shutdown(wait=True)
        log.info("watcher %s stopped", self.name)

    def _leave(self) -> None:
        HostWatch.objects.release(self.name)
        Watcher.leave(self.name)


def _in_db(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` on the database thread with a usable connection, as a request would have."""
    close_old_connections()
    try:
        return fn(*args)
    except DatabaseError:
        connection.close()  # reconnect next time rather than reuse a broken connection
        raise
