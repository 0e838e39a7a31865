"""The WebSocket of a learner's tutoring session: the tutor's replies, shown once they passed their checks.

One consumer per open page, in the group ``tutor.session.<id>``. On connect it sends the whole
transcript from the database (a reloaded or reconnected page sees everything), then generates
whatever is pending. Each pending message is claimed atomically, so with two tabs open one
generates and both watch (progress goes through the group). Only the session's learner may connect.

**Nothing unchecked is sent.** The model's reply is buffered while it is written; the page sees only
its progress (a character count). The whole reply is then checked (``services.tutor_message_vet``)
and the page gets the finished message: the reply, or the course's labelled text in its place. A
stopped or failed reply shows none of its partial text.

**A channel-layer outage is not the tutor's failure.** When the layer (Redis) fails mid-reply, the
reply is queued again, not failed: the page's socket closes with the layer, the page reconnects, and
the next connect writes it afresh (the learner sees no error line). Once the layer answers again, the
session's group is told there is pending work, for a page whose socket outlived the outage.

Messages from htmx's ws extension are JSON form values: ``question`` (a free question; saved
before the teacher is called), ``stop``, ``retry`` (a message id). Replies are HTML fragments
(escaped by the templates) swapped in by ``id``.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from channels.db import database_sync_to_async
from django.core.exceptions import ValidationError
from django.template.loader import render_to_string

from teachloop.consumers import FORBIDDEN, FormConsumer, FormMessage
from training import generation
from training.core.llm import LLMError
from tutor.core.learn.prompts import MAX_REPLY_CHARS
from tutor.learn import live, services
from tutor.models import TutoringSession, TutorMessage

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.25  # at most this often a "writing… N characters" update
OUTAGE_RETRY_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)  # waits before telling the group again after an outage
OUTAGE_RESTARTS = 2  # a reply cut by this many outages in a row waits for the next page to connect


class TutoringSessionConsumer(FormConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        self.session_id = self.scope["url_route"]["kwargs"]["session_id"]
        if not (user and user.is_authenticated) or not await _owns(self.session_id, user):
            await self.close(code=FORBIDDEN)
            return
        self.group = live.tutoring_session_group(self.session_id)
        self.stop_event = threading.Event()
        self.pump: asyncio.Task | None = None
        self.generating: int | None = None
        self.gone = False
        self.kicked = False
        # Join the group before reading the state, so nothing said in between is missed.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send(text_data=await _state_html(self.session_id))
        self._kick()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)
        self.gone = True
        if getattr(self, "stop_event", None) is not None:
            self.stop_event.set()

    async def receive_form(self, form: FormMessage) -> None:
        if "stop" in form:
            await self.channel_layer.group_send(self.group, {"type": "tutor.stop"})
        elif "retry" in form:
            await self._queued(await _retry(self.session_id, form.text("retry")))
        elif "question" in form:
            await self._queued(await _ask(self.session_id, form.text("question") or ""))

    async def _queued(self, error: str) -> None:
        """After a retry or a question: the line saying why it was refused, if it was; then generate."""
        if error:
            await self.send(
                text_data=render_to_string("tutor/learn/partials/message.html#notice", {"notice": error})
            )
        self._kick()

    # -- group events ------------------------------------------------------------------------

    async def tutor_html(self, event: dict) -> None:
        await self.send(text_data=event["html"])

    async def tutor_pending(self, event: dict) -> None:
        self._kick()

    async def tutor_stop(self, event: dict) -> None:
        if self.generating is not None:
            self.stop_event.set()

    # -- generation --------------------------------------------------------------------------

    def _kick(self) -> None:
        self.kicked = True  # a running pump looks again before it stops
        if not self.gone and (self.pump is None or self.pump.done()):
            self.pump = asyncio.create_task(self._run_pending())

    async def _run_pending(self) -> None:
        outages = 0
        try:
            while not self.gone:
                self.kicked = False
                plan = await _claim_next(self.session_id)
                if plan is None:
                    if self.kicked:
                        continue
                    return
                self.generating = plan.message_id
                try:
                    await self._generate(plan)
                    outages = 0
                except Exception as exc:
                    if not generation.layer_down(exc):
                        raise
                    outages += 1
                    if await self._after_outage(plan.message_id, exc, wait=outages <= OUTAGE_RESTARTS):
                        continue  # the layer is back: write it again (claimed afresh, by whichever page)
                    return
                finally:
                    self.generating = None
        except Exception:  # a bug must not leave the page silent: log it; the message shows failed
            logger.exception("tutoring session %s: generation crashed", self.session_id)

    async def _after_outage(self, message_id: int, exc: BaseException, *, wait: bool) -> bool:
        """The channel layer failed mid-reply: queue the reply again and, with ``wait``, once the layer
        answers, tell the session's pages (a reconnected page also finds it pending when it connects).
        Whether the layer answered again within the waits of :data:`OUTAGE_RETRY_S`."""
        logger.warning(
            "tutoring session %s: the channel layer failed mid-reply (%s); queued again", self.session_id, exc
        )
        await database_sync_to_async(services.tutor_message_requeue)(message_id=message_id)
        for delay in OUTAGE_RETRY_S if wait else ():
            await asyncio.sleep(delay)
            try:
                await self.channel_layer.group_send(self.group, {"type": "tutor.pending"})
                return True
            except Exception as again:
                if not generation.layer_down(again):
                    raise
        return False

    async def _generate(self, plan: services.TutorPlan) -> None:
        self.stop_event = stop_event = threading.Event()
        await self._broadcast(plan.message_id)  # "The tutor is writing…"
        try:
            if plan.conversation is None:  # a mistake: decide first, and record the decision
                text = await generation.whole(plan.request(decision=True), max_chars=MAX_REPLY_CHARS)
                await database_sync_to_async(services.tutor_message_decide)(plan=plan, text=text)
            text, status, error = await self._stream(plan, stop_event)
        except Exception as exc:
            if generation.layer_down(exc):
                raise  # not the tutor's failure: queued again (_after_outage)
            if isinstance(exc, LLMError):
                logger.warning("tutoring session %s: teacher failed: %s", self.session_id, exc)
                text, status, error = "", TutorMessage.Status.FAILED, str(exc)
            else:
                logger.exception("tutoring session %s: teacher crashed", self.session_id)
                text, status, error = "", TutorMessage.Status.FAILED, f"{type(exc).__name__}: {exc}"
        if self.gone and status != TutorMessage.Status.DONE:
            # The page went away mid-reply: queue it again for the next page (or another open tab).
            await database_sync_to_async(services.tutor_message_requeue)(message_id=plan.message_id)
            await self.channel_layer.group_send(self.group, {"type": "tutor.pending"})
            return
        if status == TutorMessage.Status.DONE:
            try:
                await database_sync_to_async(services.tutor_message_vet)(
                    message_id=plan.message_id, text=text
                )
            except Exception as exc:  # a bug in a check must not show the unchecked text: fail the message
                logger.exception("tutoring session %s: checking a reply crashed", self.session_id)
                status = TutorMessage.Status.FAILED
                error = f"checking the reply failed: {type(exc).__name__}: {exc}"
        if status != TutorMessage.Status.DONE:  # a stopped or failed reply shows none of its partial text
            await database_sync_to_async(services.tutor_message_finish)(
                message_id=plan.message_id, text="", status=status, error=error
            )
        await self._broadcast(plan.message_id, partner=True)

    async def _stream(self, plan: services.TutorPlan, stop_event: threading.Event) -> tuple[str, str, str]:
        """The whole reply, buffered: the page sees how much is written, never what, until it is checked.
        So a reply whose worker was lost mid-way can start over unseen (``generation.stream``)."""

        loop = asyncio.get_running_loop()
        parts: list[str] = []
        shown_at = None
        pieces = generation.stream(
            plan.request(), stop=stop_event, max_chars=MAX_REPLY_CHARS, on_restart=parts.clear
        )
        try:
            async for piece in pieces:
                parts.append(piece)
                if shown_at is None or loop.time() - shown_at >= PROGRESS_EVERY_S:
                    shown_at = loop.time()
                    chars = sum(len(p) for p in parts)
                    html = live.tutor_message_progress_html(message_id=plan.message_id, chars=chars)
                    await self.channel_layer.group_send(self.group, {"type": "tutor.html", "html": html})
        except Exception as exc:
            if generation.layer_down(exc):
                raise  # not the tutor's failure: queued again (_after_outage)
            if isinstance(exc, LLMError):
                return "".join(parts), TutorMessage.Status.FAILED, str(exc)
            logger.exception("tutor stream failed")  # never a traceback in the browser
            return "".join(parts), TutorMessage.Status.FAILED, f"{type(exc).__name__}: {exc}"
        text = "".join(parts)
        if stop_event.is_set():
            return text, TutorMessage.Status.STOPPED, ""
        return text, TutorMessage.Status.DONE, ""

    async def _broadcast(self, message_id: int, *, partner: bool = False) -> None:
        """The message's article; with ``partner``, its pair's too (whether the learner may choose
        between them depends on both having passed their checks)."""
        for html in await database_sync_to_async(_articles)(message_id, partner):
            await self.channel_layer.group_send(self.group, {"type": "tutor.html", "html": html})


def _articles(message_id: int, partner: bool) -> list[str]:
    ids = [message_id]
    if partner:
        message = TutorMessage.objects.select_related("alternative_to").get(pk=message_id)
        other = message.partner
        if other is not None:
            ids.append(other.pk)
    return [live.tutor_message_html(message_id=pk) for pk in ids]


@database_sync_to_async
def _owns(session_id: int, user) -> bool:
    return TutoringSession.objects.filter(pk=session_id, enrolment__user=user).exists()


@database_sync_to_async
def _state_html(session_id: int) -> str:
    session = TutoringSession.objects.get(pk=session_id)
    messages = [
        live.tutor_message_context(message=m)
        for m in session.messages.select_related("alternative_to").prefetch_related("feedback")
    ]
    return render_to_string("tutor/learn/partials/message.html#list", {"tutor_messages": messages})


@database_sync_to_async
def _claim_next(session_id: int) -> services.TutorPlan | None:
    for message_id in services.tutor_messages_pending(session_id=session_id):
        plan = services.tutor_message_claim(message_id=message_id)
        if plan is not None:
            return plan
    return None


@database_sync_to_async
def _retry(session_id: int, message_id: object) -> str:
    message = (
        TutorMessage.objects.select_related("session__enrolment")
        .filter(session_id=session_id, pk=_int(message_id))
        .first()
    )
    if message is not None:
        try:
            services.tutor_message_retry(message=message)
        except ValidationError as exc:
            return " ".join(exc.messages)
    return ""


@database_sync_to_async
def _ask(session_id: int, question: str) -> str:
    try:
        services.tutor_question_ask(
            session=TutoringSession.objects.select_related("enrolment", "exercise__skill").get(pk=session_id),
            question=question,
        )
    except ValidationError as exc:
        return " ".join(exc.messages)
    return ""


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0
