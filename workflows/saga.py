"""Saga support for workflows: compensations registered before their step, run in reverse, retried,
shielded from cancellation, and parked for support when they cannot succeed (never dropped)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.notification import NotificationActivities, SendInput
    from core.temporal import NEEDS_ATTENTION, SAGA_STEP

if TYPE_CHECKING:
    from core.settings import Settings


class SagaTimings(BaseModel):
    """Durations, retry budgets and where support is alerted; settings in production, seconds in tests."""

    activity_timeout_s: float = 30
    step_max_attempts: int = 5  # before the pivot: a step that keeps failing fails the saga
    compensation_max_attempts: int = 10  # then the saga parks as needing attention
    compensation_max_interval_s: float = 60
    support_alert_email: str | None = None  # Saga.alert mails support here (None: no mail)
    web_ui_url: str | None = None  # the Temporal Web UI, linked from that mail

    @classmethod
    def from_settings(cls, settings: Settings) -> SagaTimings:
        return cls(
            activity_timeout_s=settings.saga_activity_timeout_s,
            step_max_attempts=settings.saga_step_attempts,
            compensation_max_attempts=settings.saga_compensation_attempts,
            compensation_max_interval_s=settings.saga_compensation_max_interval_s,
            support_alert_email=settings.support_alert_email or None,
            web_ui_url=settings.web_ui_url,
        )


class Resolution(BaseModel):
    """Support's decision for a parked step (signal/update ``resolve``)."""

    action: Literal["retry", "skip"]
    note: str = ""
    actor: str = "support"


def step_retry(timings: SagaTimings) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(milliseconds=200),
        maximum_interval=timedelta(seconds=10),
        maximum_attempts=timings.step_max_attempts,
    )


def forever_retry() -> RetryPolicy:
    """After the pivot: keep trying until it succeeds (business refusals are non-retryable anyway)."""
    return RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(minutes=1))


def compensation_retry(timings: SagaTimings) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(milliseconds=200),
        maximum_interval=timedelta(seconds=timings.compensation_max_interval_s),
        maximum_attempts=timings.compensation_max_attempts,
    )


def failure_message(exc: BaseException) -> str:
    """The readable reason of an activity failure (the business error's message when there is one)."""
    cause = exc.cause if isinstance(exc, ActivityError) and exc.cause is not None else exc
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause)


def failure_type(exc: BaseException) -> str | None:
    cause = exc.cause if isinstance(exc, ActivityError) else exc
    return cause.type if isinstance(cause, ApplicationError) else None


@dataclass
class _Compensation:
    name: str
    run: Callable[[], Awaitable[object]]


@dataclass
class Saga:
    """Owns the compensation stack and the parked state of one saga workflow."""

    timings: SagaTimings
    step_attribute: bool = (
        False  # parking also sets SagaStep to the parked step (sagas that set it sparingly)
    )
    compensations: list[_Compensation] = field(default_factory=list)
    parked: str | None = None  # what is waiting for support, shown in queries and the UI
    resolution: Resolution | None = None
    log: list[str] = field(default_factory=list)
    alerts: int = 0  # support alert mails asked for so far (keys them)
    # Steps running at the same time may each need support: they wait for the desk one at a time.
    _desk: asyncio.Lock = field(default_factory=asyncio.Lock)

    def add(self, name: str, run: Callable[[], Awaitable[object]]) -> None:
        """Register BEFORE running the step it undoes: a timed-out step may have succeeded."""
        self.compensations.append(_Compensation(name, run))

    def discard(self, name: str) -> None:
        self.compensations = [c for c in self.compensations if c.name != name]

    async def compensate(self) -> None:
        """Run every compensation in reverse order, shielded from workflow cancellation."""
        while self.compensations:
            comp = self.compensations.pop()
            await asyncio.shield(asyncio.ensure_future(self._run_until_done(comp)))

    async def _run_until_done(self, comp: _Compensation) -> None:
        while True:
            try:
                await comp.run()
                self.log.append(f"compensated: {comp.name}")
                return
            except ActivityError as exc:
                decision = await self.park(
                    f"compensation **{comp.name}** keeps failing: {failure_message(exc)}", step=comp.name
                )
                if decision.action == "skip":
                    self.log.append(f"skipped by {decision.actor}: {comp.name} ({decision.note})")
                    return

    async def park(self, what: str, *, step: str | None = None) -> Resolution:
        """Mark the saga as needing attention and wait for support's decision."""
        async with self._desk:
            return await self._park(what, step)

    async def _park(self, what: str, step: str | None) -> Resolution:
        self.parked = what
        self.resolution = None
        attributes: list[SearchAttributeUpdate[Any]] = [NEEDS_ATTENTION.value_set(True)]
        if self.step_attribute and step is not None:
            attributes.append(SAGA_STEP.value_set(step))
        workflow.upsert_search_attributes(attributes)
        details = workflow.get_current_details()
        workflow.set_current_details(
            f"## Needs attention\n{what}\n\nResolve with the `resolve` update (action `retry` or `skip`), "
            "from the Web UI or `POST /v1/support/sagas/{workflow_id}/resolve`.\n\n" + details
        )
        workflow.logger.warning("saga parked: %s", what)
        resolve = f"/v1/support/sagas/{workflow.info().workflow_id}/resolve"
        await self.alert(
            what,
            step,
            todo="Nothing moves until someone decides: the workflow's `resolve` update (action retry or "
            f"skip, with a note), from the Web UI or with POST {resolve}. This mail comes each time it parks.",
        )
        await workflow.wait_condition(lambda: self.resolution is not None)
        decision = self.resolution
        assert decision is not None
        self.parked = None
        workflow.upsert_search_attributes([NEEDS_ATTENTION.value_set(False)])
        workflow.set_current_details(details)
        return decision

    async def alert(self, what: str, step: str | None = None, *, todo: str) -> None:
        """Mail support (SagaTimings.support_alert_email; none in inputs from before the alert mail):
        what is wrong, the step, a Web UI link and ``todo``, what support can do about it. A few
        attempts; a mail that cannot be sent never holds the saga up for long."""
        recipient = self.timings.support_alert_email
        if not recipient:
            return
        self.alerts += 1
        info = workflow.info()
        ui = self.timings.web_ui_url
        await send_email(
            self,
            "support_alert",
            user_id=None,
            recipient=recipient,
            context={
                "workflow_id": info.workflow_id,
                "workflow_type": info.workflow_type,
                "reason": what.replace("**", ""),
                "step": step or "",
                "ui_url": f"{ui}/namespaces/{info.namespace}/workflows/{info.workflow_id}" if ui else "",
                "todo": todo,
            },
            retry=RetryPolicy(maximum_attempts=3),
            key=f"support_alert:{self.alerts}",
        )

    def resolve(self, decision: Resolution) -> None:
        if self.parked is None:
            raise ApplicationError(
                "nothing is waiting for a decision", type="NothingToResolve", non_retryable=True
            )
        self.resolution = decision


def set_step(step: str) -> None:
    workflow.upsert_search_attributes([SAGA_STEP.value_set(step)])


async def wait_until(fn: Callable[[], bool], within: timedelta, summary: str | None = None) -> bool:
    """Wait for ``fn`` to become true; False when ``within`` passed first (a durable timer)."""
    if fn():
        return True
    if within <= timedelta(0):
        return False
    try:
        await workflow.wait_condition(fn, timeout=within, timeout_summary=summary)
    except TimeoutError:
        return fn()
    return True


# -- activity plumbing shared by the sagas ------------------------------------------------------------
async def run_step(
    saga: Saga,
    name: str,
    method: Callable[..., Awaitable[Any]],
    arg: BaseModel,
    *,
    queue: str,
    retry: RetryPolicy | None = None,
) -> Any:
    """One activity on ``queue``; infrastructure failures retry (forever unless ``retry`` says otherwise),
    a business refusal raises ActivityError."""
    result = await workflow.execute_activity_method(
        method,
        arg,
        task_queue=queue,
        start_to_close_timeout=timedelta(seconds=saga.timings.activity_timeout_s),
        retry_policy=retry or forever_retry(),
        summary=name,
    )
    saga.log.append(f"done: {name}")
    return result


async def run_until_done(
    saga: Saga, name: str, method: Callable[..., Awaitable[Any]], arg: BaseModel, *, queue: str
) -> Any:
    """A step that has to happen (after a pivot): a business refusal parks the saga for support, whose
    decision is to retry it or to skip it (None is returned then)."""
    while True:
        try:
            return await run_step(saga, name, method, arg, queue=queue)
        except ActivityError as exc:
            decision = await saga.park(f"step **{name}** was refused: {failure_message(exc)}", step=name)
            if decision.action == "skip":
                saga.log.append(f"skipped by {decision.actor}: {name} ({decision.note})")
                return None


class StepwiseSaga:
    """The step plumbing of a saga workflow that shows every step it takes as its ``SagaStep`` search
    attribute (the shipping and return sagas: long-lived, few steps, where support searches by step).
    The workflow sets ``self.saga`` and ``self.step`` in its ``__init__``."""

    saga: Saga
    step: str

    def _set_step(self, step: str) -> None:
        self.step = step
        set_step(step)

    def _log(self, line: str) -> None:
        self.saga.log.append(line)

    async def _call(
        self,
        name: str,
        method: Callable[..., Awaitable[Any]],
        arg: BaseModel,
        *,
        queue: str,
        retry: RetryPolicy | None = None,
    ) -> Any:
        """A step that may fail (``run_step``)."""
        self._set_step(name)
        return await run_step(self.saga, name, method, arg, queue=queue, retry=retry)

    async def _must(
        self, name: str, method: Callable[..., Awaitable[Any]], arg: BaseModel, queue: str
    ) -> Any:
        """A step that has to happen (``run_until_done``)."""
        self._set_step(name)
        return await run_until_done(self.saga, name, method, arg, queue=queue)


async def send_email(
    saga: Saga,
    template: str,
    *,
    user_id: Any,
    recipient: str,
    context: dict[str, Any],
    retry: RetryPolicy | None = None,
    key: str | None = None,
) -> None:
    """The ``template`` email through the notification service, keyed by workflow and ``key`` (the
    template by default). A refused mail never blocks a saga; the notification log keeps the attempt."""
    wid = workflow.info().workflow_id
    try:
        await workflow.execute_activity_method(
            NotificationActivities.send,
            SendInput.model_validate(
                {
                    "idempotency_key": f"{wid}:notify:{key or template}",
                    "user_id": user_id,
                    "recipient": recipient,
                    "event_type": template,
                    "template_key": template,
                    "context": context,
                }
            ),
            task_queue="notification",
            start_to_close_timeout=timedelta(seconds=saga.timings.activity_timeout_s),
            retry_policy=retry or forever_retry(),
            summary=f"email: {template}",
        )
    except ActivityError as exc:
        workflow.logger.warning("notification %s not sent: %s", template, failure_message(exc))
