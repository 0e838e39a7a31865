"""The tutoring session's WebSocket: who may connect, state on connect, streaming, decisions, failures."""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from teachloop.consumers import FORBIDDEN
from teachloop.routing import websocket_urlpatterns
from tests.tutor.learn.fixtures import ScriptedLLM, make_course
from training.core.llm import GenerationError
from training.models import LanguageModel
from tutor.learn import services as learning
from tutor.models import TutorMessage

pytestmark = pytest.mark.django_db(transaction=True)
router = URLRouter(websocket_urlpatterns)


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password="pw")


@pytest.fixture
def session(bob, settings):
    settings.TEACHLOOP_TUTOR_ALTERNATIVES_SHARE = 0.0
    course = make_course()
    LanguageModel.objects.create(name="teach", is_teacher=True, is_default_teacher=True, source="x")
    enrolment = learning.learner_enrol(user=bob, course=course)
    return learning.tutoring_session_start(enrolment=enrolment, rng=random.Random(0))


@pytest.fixture
def teacher(monkeypatch):
    llm = ScriptedLLM(pieces=["Add", " the <script>alert(1)</script>", " ones."])
    monkeypatch.setattr(learning, "language_model_llm", lambda model: llm)
    return llm


async def connect(session_id, user):
    communicator = WebsocketCommunicator(router, f"/ws/learn/sessions/{session_id}/")
    communicator.scope["user"] = user
    connected, code = await communicator.connect()
    return communicator, connected, code


async def until_status(communicator, message_id, statuses=("done", "failed", "stopped")):
    """Every fragment received until the message's article shows one of ``statuses``."""
    seen = []
    while True:
        html = await communicator.receive_from(timeout=20)
        seen.append(html)
        m = re.search(rf'id="tmsg-{message_id}" class="[^"]*" data-status="(\w+)"', html)
        if m and m.group(1) in statuses:
            return seen


async def test_it_rejects_anonymous_users_and_other_learners(session, django_user_model):
    _, connected, code = await connect(session.pk, AnonymousUser())
    assert not connected and code == FORBIDDEN
    carol = await django_user_model.objects.acreate(username="carol")
    _, connected, code = await connect(session.pk, carol)
    assert not connected and code == FORBIDDEN
    instructor = await django_user_model.objects.acreate(username="ian", is_staff=True)
    await sync_to_async(session.enrolment.course.instructors.add)(instructor)
    _, connected, _ = await connect(session.pk, instructor)
    assert not connected  # instructors read the transcript page; the live socket is the learner's


async def test_it_sends_the_transcript_then_streams_the_pending_explanation_escaped(session, bob, teacher):
    communicator, connected, _ = await connect(session.pk, bob)
    assert connected
    state = await communicator.receive_from(timeout=10)
    assert state.startswith('<div id="tutor-messages">')
    explanation = await TutorMessage.objects.aget(session=session)
    seen = await until_status(communicator, explanation.pk)
    pieces = [h for h in seen if f'id="tmsg-{explanation.pk}-text" hx-swap-oob="beforeend"' in h]
    assert len(pieces) == 3
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pieces[1]
    assert "<script>" not in "".join(seen)
    await explanation.arefresh_from_db()
    assert (explanation.status, explanation.text) == ("done", "Add the <script>alert(1)</script> ones.")
    await communicator.disconnect()

    # A reload gets the finished transcript from the database; nothing is generated again.
    again, _, _ = await connect(session.pk, bob)
    state = await again.receive_from(timeout=10)
    assert "Add the &lt;script&gt;" in state and 'data-status="done"' in state
    assert len([c for c in teacher.calls if c[0] == "stream"]) == 1
    await again.disconnect()


async def test_it_records_the_decision_before_writing_the_reply_to_a_mistake(session, bob, teacher):
    await TutorMessage.objects.filter(session=session).aupdate(status="done", text="explained")
    attempt = await sync_to_async(learning.learner_attempt_submit)(session=session, answer="6")
    communicator, _, _ = await connect(session.pk, bob)
    remediation = await TutorMessage.objects.aget(session=session, kind="remediation")
    await until_status(communicator, remediation.pk)
    await remediation.arefresh_from_db()
    assert (remediation.error_type, remediation.strategy, remediation.intention) == (
        "slip",
        "hint",
        "check the sum",
    )
    assert remediation.decision_parsed
    kinds = [kind for kind, _ in teacher.calls]
    assert kinds == ["generate", "stream"]  # the decision, then the reply
    decision_prompt = teacher.calls[0][1][-1]["content"]
    reply_prompt = teacher.calls[1][1][-1]["content"]
    assert "Learner's answer: 6" in decision_prompt and "Error type:" in decision_prompt
    assert "your strategy is to give one hint" in reply_prompt
    assert "Do NOT state the correct answer" in reply_prompt  # scaffolding is the default
    assert remediation.prompt[-1]["content"] == reply_prompt  # the record's prompt is the one used
    assert attempt.answer == "6"
    await communicator.disconnect()


async def test_it_shows_a_friendly_error_and_retries_on_request(session, bob, teacher):
    teacher.error = GenerationError("teach", "connection refused")
    communicator, _, _ = await connect(session.pk, bob)
    explanation = await TutorMessage.objects.aget(session=session)
    seen = await until_status(communicator, explanation.pk)
    assert "The tutor could not answer just now" in seen[-1] and 'name="retry"' in seen[-1]
    assert "connection refused" not in seen[-1]  # details are for instructors and logs
    await explanation.arefresh_from_db()
    assert explanation.status == "failed" and "connection refused" in explanation.error

    teacher.error = None
    await communicator.send_to(text_data=json.dumps({"retry": str(explanation.pk)}))
    await until_status(communicator, explanation.pk, statuses=("done",))
    await explanation.arefresh_from_db()
    assert explanation.status == "done"
    await communicator.disconnect()


async def test_it_saves_a_free_question_before_calling_the_teacher(session, bob, teacher):
    await TutorMessage.objects.filter(session=session).aupdate(status="done", text="explained")
    teacher.error = GenerationError("teach", "timed out")
    communicator, _, _ = await connect(session.pk, bob)
    await communicator.receive_from(timeout=10)
    await communicator.send_to(text_data=json.dumps({"question": "Why do we carry the 1?"}))
    question = None
    while question is None:
        await communicator.receive_from(timeout=10)
        question = await TutorMessage.objects.filter(session=session, kind="answer").afirst()
    await until_status(communicator, question.pk)
    await question.arefresh_from_db()
    assert (question.question, question.status) == ("Why do we carry the 1?", "failed")
    assert "Why do we carry the 1?" in teacher.calls[-1][1][-1]["content"]
    await communicator.disconnect()


async def test_it_stops_a_reply_on_request(session, bob, teacher):
    gate = threading.Event()
    teacher.pieces, teacher.gate = ["one", " two", " three", " four"], gate
    communicator, _, _ = await connect(session.pk, bob)
    explanation = await TutorMessage.objects.aget(session=session)
    while 'beforeend"><span>one</span>' not in await communicator.receive_from(timeout=10):
        pass  # until the first piece is on the page
    await communicator.send_to(text_data=json.dumps({"stop": "1"}))
    await asyncio.sleep(0.3)  # the stop reaches the generator
    gate.set()
    seen = await until_status(communicator, explanation.pk)
    await explanation.arefresh_from_db()
    assert (explanation.status, explanation.text) == ("stopped", "one")
    assert "Stopped." in seen[-1]
    await communicator.disconnect()


async def test_it_queues_a_reply_again_when_the_page_goes_away_mid_stream(session, bob, teacher):
    gate = threading.Event()
    teacher.gate = gate
    communicator, _, _ = await connect(session.pk, bob)
    explanation = await TutorMessage.objects.aget(session=session)
    while "<span>" not in await communicator.receive_from(timeout=10):
        pass  # until the first piece is on the page
    await communicator.disconnect()
    gate.set()
    for _ in range(100):
        await explanation.arefresh_from_db()
        if explanation.status == "pending":
            break
        await asyncio.sleep(0.05)
    assert explanation.status == "pending"  # the next page to connect writes it afresh


async def test_it_asks_no_question_for_a_null_one(session, bob, teacher):
    await TutorMessage.objects.filter(session=session).aupdate(status="done", text="explained")
    communicator, _, _ = await connect(session.pk, bob)
    await communicator.receive_from(timeout=10)
    await communicator.send_to(text_data=json.dumps({"question": None}))
    assert "Type a question first." in await communicator.receive_from(timeout=10)
    assert not await TutorMessage.objects.filter(session=session, kind="answer").aexists()
    await communicator.disconnect()
