"""Sending queued telemetry to the registry: in the background, batched, with backoff.

Contract: `POST <registry_url>` (…/api/v1/telemetry) with a JSON array of
events; a 2xx reply `{"accepted": N, "rejected": M, "results": [...]}` takes
the whole batch out of the queue (rejected events are logged and counted,
never retried). 408, 429, 5xx and network errors keep the batch: tenacity
retries a few times within the cycle (honouring Retry-After), then the cycle
ends and the next attempt time is persisted, so a restart does not hammer the
registry. Any other 4xx drops the batch and logs it.

The sender never blocks a request or start-up: it runs as its own task, the
first scheduled send waits `first_send_delay_seconds` after start, and the
stop gives it at most `shutdown_flush_seconds` (≤ 2 s) for a last send.
Consent is checked again before every batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
)
from tenacity.stop import stop_base

from lightspeed.store.queries import StateStore
from lightspeed.store.settings import RuntimeSettings
from lightspeed.store.telemetry_queue import QueuedEvent
from lightspeed.telemetry.registry_client import RegistryClient, RegistryRejected, RegistryUnavailable
from lightspeed.telemetry.service import TelemetryService
from lightspeed_common.backoff import RetryAfterOrBackoff, retry_after_of
from lightspeed_common.config import TelemetryConfig

log = structlog.get_logger(__name__)
SECTION = "telemetry_sender"
LEASE = "telemetry_sender"
LEASE_MARGIN_SECONDS = 60.0  # past a cycle's longest run, the lease of a process that died lapses
LEASE_WAIT_SECONDS = 60.0  # another worker is sending: look again after this (or when woken)
ANOTHER_SENDER = "another worker is sending"
MAX_NOT_BEFORE = timedelta(days=7)  # a Retry-After longer than this is not believed


@dataclass
class SendOutcome:
    result: str  # sent, nothing_to_send, disabled, deferred, failed
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    dropped: int = 0
    remaining: int = 0
    error: str | None = None
    retry_at: str | None = None
    finished_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _LongRetryAfter(stop_base):
    """Stop retrying within a cycle when the registry asks for a longer wait than the cap."""

    def __init__(self, cap: float) -> None:
        self._cap = cap

    def __call__(self, retry_state: RetryCallState) -> bool:
        retry_after = retry_after_of(retry_state.outcome.exception() if retry_state.outcome else None)
        return retry_after is not None and retry_after > self._cap


def _count(reply: dict[str, Any], key: str, default: int) -> int:
    value = reply.get(key)
    return value if isinstance(value, int) and value >= 0 else default


class TelemetrySender:
    def __init__(
        self,
        config: TelemetryConfig,
        service: TelemetryService,
        settings: RuntimeSettings,
        client: RegistryClient | None,
        *,
        on_sent: Callable[[int, int], None] = lambda accepted, rejected: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        store: StateStore | None = None,
    ) -> None:
        self._config = config
        self._service = service
        self._settings = settings
        self._client = client
        self._on_sent = on_sent
        self._clock = clock
        self._earliest = clock() + timedelta(seconds=config.first_send_delay_seconds)  # reset by start()
        self._wake = asyncio.Event()
        # Set while the schedule waits (nothing is due); cleared while a scheduled send runs.
        self.waiting = asyncio.Event()
        self._cycle: asyncio.Task[SendOutcome] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        # Several workers (or hosts) share the queue: the one holding the store's lease sends.
        self._store = store
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        retry = config.retry
        self._lease_seconds = retry.max_elapsed_seconds + config.request_timeout_seconds + LEASE_MARGIN_SECONDS

    # -- schedule ----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return self._settings.section(SECTION)

    def _when(self, key: str) -> datetime | None:
        value = self.state().get(key)
        return datetime.fromisoformat(value) if isinstance(value, str) else None

    def due_at(self) -> datetime | None:
        """When the next scheduled send runs; None while telemetry is off."""
        consented = self._service.consented_at
        if not self._service.is_effective() or consented is None:
            return None
        planned = self._when("next_send_at") or consented + timedelta(seconds=self._config.send_interval_seconds)
        return max(d for d in (self._earliest, planned, self._when("not_before")) if d is not None)

    def status(self) -> dict[str, Any]:
        due = self.due_at()
        return {
            "next_send_at": due.isoformat() if due else None,
            "sending": self._cycle is not None and not self._cycle.done(),
            "last_result": self.state().get("last_result"),
        }

    def reschedule(self) -> None:
        """Telemetry was switched on or off: recompute when to send."""
        self._wake.set()

    def start(self) -> None:
        """Begin the schedule; call once start-up is complete (the first send waits the delay from here)."""
        self._earliest = self._clock() + timedelta(seconds=self._config.first_send_delay_seconds)
        self._loop_task = asyncio.create_task(self._run(), name="telemetry-sender")

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            await self._settings.refresh()
            due = self.due_at()
            delay = None if due is None else max(0.0, (due - self._clock()).total_seconds())
            if delay is None or delay > 0:
                self.waiting.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue
            self.waiting.clear()
            try:
                outcome = await asyncio.shield(self.send_now(manual=False))
                if outcome.error == ANOTHER_SENDER:  # its schedule is ours once it is done
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(LEASE_WAIT_SECONDS):
                            await self._wake.wait()
            except Exception:
                # E.g. the state directory is full. Keep the schedule alive; try again later.
                log.exception("telemetry_send_crashed")
                await asyncio.sleep(self._config.failure_backoff_seconds)

    # -- sending -----------------------------------------------------------------------------

    def send_now(self, manual: bool = True) -> asyncio.Task[SendOutcome]:
        """Start a send (or join the one running); the caller may wait on the task with a bound."""
        if self._cycle is None or self._cycle.done():
            self._cycle = asyncio.create_task(self._send_all(manual, retries=True), name="telemetry-send")
        return self._cycle

    async def _send_all(self, manual: bool, retries: bool) -> SendOutcome:
        async with self._lease() as held:
            due = self.due_at()  # as another worker may just have changed it
            if not held or (not manual and due is not None and due > self._clock()):
                log.info("telemetry_send_skipped", reason=ANOTHER_SENDER)
                return SendOutcome("deferred", error=ANOTHER_SENDER)
            outcome = await self._send_batches(manual, retries)
        outcome.remaining = len(self._service.queue)
        await self._persist(last_result=outcome.to_json())
        log.info("telemetry_send_finished", **{k: v for k, v in outcome.to_json().items() if v not in (None, 0)})
        self._wake.set()
        return outcome

    @contextlib.asynccontextmanager
    async def _lease(self) -> AsyncIterator[bool]:
        """Hold the store's sender lease for the block (True), or learn another process holds it (False).
        The settings and the queue are read again first: another worker may have changed them."""
        if self._store is None:
            yield True
            return
        held = await self._store.take_lease(LEASE, self._holder, self._lease_seconds)
        if held:
            await self._settings.refresh()
            await self._service.queue.refresh()
        try:
            yield held
        finally:
            if held:
                await self._store.release_lease(LEASE, self._holder)

    async def _send_batches(self, manual: bool, retries: bool) -> SendOutcome:
        service, queue = self._service, self._service.queue
        if not service.is_effective() or self._client is None:
            return SendOutcome("disabled", error=service.disabled_reason())
        now = self._clock()
        not_before = self._when("not_before")
        if not_before is not None and now < not_before:
            return SendOutcome("deferred", error="the registry asked to wait", retry_at=not_before.isoformat())
        outcome = SendOutcome("nothing_to_send")
        outcome.dropped = await queue.drop_expired(now, service.consented_at)
        while service.is_effective() and (batch := self._next_batch()):
            try:
                reply = await self._post(batch, retries)
            except RegistryUnavailable as exc:
                return await self._defer(outcome, exc, manual)
            except RegistryRejected as exc:
                log.warning("telemetry_batch_rejected", status=exc.status, events=len(batch), error=str(exc))
                await queue.remove(batch, "rejected_batch")
                outcome.dropped += len(batch)
                continue
            await queue.remove(batch)
            self._account(outcome, batch, reply)
        await self._persist(
            next_send_at=self._later(self._config.send_interval_seconds),
            not_before=None,
            consecutive_failures=0,
            last_success_at=self._clock().isoformat(),
        )
        return outcome

    def _account(self, outcome: SendOutcome, batch: Sequence[QueuedEvent], reply: dict[str, Any]) -> None:
        rejected = _count(reply, "rejected", 0)
        accepted = _count(reply, "accepted", len(batch) - rejected)
        outcome.result = "sent"
        outcome.sent += len(batch)
        outcome.accepted += accepted
        outcome.rejected += rejected
        self._on_sent(accepted, rejected)
        if rejected:
            reasons = [r for r in reply.get("results", []) if isinstance(r, dict) and r.get("status") != "accepted"]
            log.warning("telemetry_events_rejected", rejected=rejected, results=reasons[:5])

    def _next_batch(self) -> list[QueuedEvent]:
        batch: list[QueuedEvent] = []
        size = 2
        for queued in self._service.queue.events():
            if len(batch) >= self._config.batch_max_events or (
                batch and size + queued.size > self._config.batch_max_bytes
            ):
                break
            batch.append(queued)
            size += queued.size
        return batch

    async def _post(self, batch: Sequence[QueuedEvent], retries: bool) -> dict[str, Any]:
        assert self._client is not None
        lines = [q.line for q in batch]
        if not retries:
            return await self._client.post(lines)
        retry = self._config.retry
        retrying = AsyncRetrying(
            stop=stop_after_attempt(retry.max_attempts)
            | stop_after_delay(retry.max_elapsed_seconds)
            | _LongRetryAfter(retry.max_retry_after_seconds),
            wait=RetryAfterOrBackoff(retry),
            retry=retry_if_exception_type(RegistryUnavailable),
            before_sleep=self._before_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._client.post(lines)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _before_retry(self, state: RetryCallState) -> None:
        wait = state.next_action.sleep if state.next_action else 0.0
        error = state.outcome.exception() if state.outcome else None
        log.warning("telemetry_send_retry", attempt=state.attempt_number, wait_seconds=round(wait, 2), error=str(error))
        # Persisted before sleeping: a restart during the wait resumes after it, not before.
        await self._persist(next_send_at=self._later(wait))

    async def _defer(self, outcome: SendOutcome, exc: RegistryUnavailable, manual: bool) -> SendOutcome:
        failures = int(self.state().get("consecutive_failures", 0)) + 1
        base = self._config.failure_backoff_seconds
        backoff = min(float(self._config.send_interval_seconds), base * 2 ** (failures - 1))
        not_before = None
        if exc.retry_after is not None:
            not_before = self._clock() + min(timedelta(seconds=exc.retry_after), MAX_NOT_BEFORE)
        next_send = max(self._later(backoff), not_before or self._clock())
        await self._persist(
            next_send_at=next_send.isoformat(),
            not_before=not_before.isoformat() if not_before else None,
            consecutive_failures=failures,
        )
        log.warning("telemetry_send_deferred", error=str(exc), retry_at=next_send.isoformat(), manual=manual)
        outcome.result = "failed"
        outcome.error = str(exc)
        outcome.retry_at = next_send.isoformat()
        return outcome

    def _backing_off(self) -> bool:
        """After failed sends, until the persisted next attempt: a stop must not try again either."""
        next_send = self._when("next_send_at")
        failing = int(self.state().get("consecutive_failures", 0)) > 0
        return failing and next_send is not None and next_send > self._clock()

    def _later(self, seconds: float) -> datetime:
        return self._clock() + timedelta(seconds=seconds)

    async def _persist(self, **changes: Any) -> None:
        values = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in changes.items()}
        await self._settings.update_section(SECTION, {**self.state(), **values})

    # -- stop ----------------------------------------------------------------------------------

    async def request_deletion(self, client_id: str) -> dict[str, Any]:
        """One request, no retries: the operator asked and sees the outcome. RegistryUnavailable/Rejected."""
        if self._client is None:
            raise RegistryRejected(0, "telemetry.registry_url is not configured")
        return await self._client.request_deletion(client_id)

    async def close(self) -> None:
        """Stop the schedule and give a last send at most `shutdown_flush_seconds`."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        budget = self._config.shutdown_flush_seconds
        try:
            async with asyncio.timeout(budget):
                if self._cycle is not None and not self._cycle.done():
                    await self._cycle
                elif (
                    budget > 0 and len(self._service.queue) and self._service.is_effective() and not self._backing_off()
                ):
                    async with self._lease() as held:
                        if held:
                            await self._send_batches(manual=False, retries=False)
        except TimeoutError:
            log.warning("telemetry_flush_abandoned", queued=len(self._service.queue), budget_seconds=budget)
        finally:
            if self._cycle is not None and not self._cycle.done():
                self._cycle.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._cycle
