"""The tutoring session's WebSocket: who may connect, state on connect, progress then the checked reply,
decisions, failures."""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from teachloop.consumers import FORBIDDEN
from teachloop.routing import websocket_urlpatterns
from tests.tutor.learn.fixtures import ScriptedLLM, make_course
from training import services as training_services
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


# A reply that passes the explanation's checks: the worked example (add-2, 4 + 4) solved, escaped on the page.
GOOD_EXPLANATION = ["Add", " the <script>alert(1)</script> ones:", " 4 + 4 = 8.", "\nAnswer: 8"]


@pytest.fixture
def teacher(monkeypatch):
    llm = ScriptedLLM(pieces=GOOD_EXPLANATION)
    monkeypatch.setattr(training_services, "language_model_llm", lambda model, **_: llm)
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


def progress(html: str, message_id: int) -> int | None:
    """The character count of a progress fragment of the message, else None."""
    m = re.search(rf'id="tmsg-{message_id}-progress"[^>]*data-chars="(\d+)"', html)
    return int(m.group(1)) if m else None


async def test_it_sends_the_transcript_then_the_checked_explanation_escaped(session, bob, teacher):
    communicator, connected, _ = await connect(session.pk, bob)
    assert connected
    state = await communicator.receive_from(timeout=10)
    assert state.startswith('<div id="tutor-messages">')
    explanation = await TutorMessage.objects.aget(session=session)
    seen = await until_status(communicator, explanation.pk)
    # While it is written the page learns how much, never what; the text comes once, checked.
    counts = [progress(h, explanation.pk) for h in seen if progress(h, explanation.pk) is not None]
    assert counts and counts[-1] <= len("".join(GOOD_EXPLANATION))
    with_text = [h for h in seen if "4 + 4 = 8" in h]
    assert len(with_text) == 1
    assert 'data-status="done"' in with_text[0] and 'data-source="model"' in with_text[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in with_text[0]
    assert "<script>" not in "".join(seen)
    await explanation.arefresh_from_db()
    assert (explanation.status, explanation.source, explanation.text) == (
        "done",
        "model",
        "Add the <script>alert(1)</script> ones: 4 + 4 = 8.\nAnswer: 8",
    )
    await communicator.disconnect()

    # A reload gets the finished transcript from the database; nothing is generated again.
    again, _, _ = await connect(session.pk, bob)
    state = await again.receive_from(timeout=10)
    assert "Add the &lt;script&gt;" in state and 'data-status="done"' in state
    assert "4 + 4 = 8" in state
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


async def test_a_models_own_connection_or_file_error_fails_the_reply_it_is_not_an_outage(
    session, bob, teacher
):
    teacher.error = ConnectionRefusedError("the teacher server at 127.0.0.1:9")  # not the channel layer's
    communicator, _, _ = await connect(session.pk, bob)
    explanation = await TutorMessage.objects.aget(session=session)
    seen = await until_status(communicator, explanation.pk)
    assert "The tutor could not answer just now" in seen[-1]
    await explanation.arefresh_from_db()
    assert explanation.status == "failed" and "ConnectionRefusedError" in explanation.error
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
    while progress(await communicator.receive_from(timeout=10), explanation.pk) != len("one"):
        pass  # until the first piece is written
    await communicator.send_to(text_data=json.dumps({"stop": "1"}))
    await asyncio.sleep(0.3)  # the stop reaches the generator
    gate.set()
    seen = await until_status(communicator, explanation.pk)
    await explanation.arefresh_from_db()
    # A stopped reply was never checked: none of it is kept or shown.
    assert (explanation.status, explanation.text) == ("stopped", "")
    assert "Stopped." in seen[-1] and f'id="tmsg-{explanation.pk}-text" class="output"></div>' in seen[-1]
    await communicator.disconnect()


async def test_it_queues_a_reply_again_when_the_page_goes_away_mid_stream(session, bob, teacher):
    gate = threading.Event()
    teacher.gate = gate
    communicator, _, _ = await connect(session.pk, bob)
    explanation = await TutorMessage.objects.aget(session=session)
    while progress(await communicator.receive_from(timeout=10), explanation.pk) is None:
        pass  # until the first piece is written
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


async def test_a_learner_over_the_per_minute_limit_gets_a_line_saying_so_and_the_socket_lives_on(
    session, bob, teacher, settings
):
    settings.TEACHLOOP_LEARNER_GENERATIONS_PER_MINUTE = 1  # the explanation of the session's start used it
    await TutorMessage.objects.filter(session=session).aupdate(status="done", text="explained")
    communicator, _, _ = await connect(session.pk, bob)
    await communicator.receive_from(timeout=10)
    for _ in range(2):  # refused twice, answered each time: nothing queued, nothing dead
        await communicator.send_to(text_data=json.dumps({"question": "Why do we carry the 1?"}))
        assert "replies in the last minute (the limit is 1)" in await communicator.receive_from(timeout=10)
    assert not await TutorMessage.objects.filter(session=session, kind="answer").aexists()
    await communicator.disconnect()


def texts_sent(seen: list[str]) -> str:
    """Everything the socket sent, as one string (escaped the way the page receives it)."""
    return "\n".join(seen)


async def test_it_sends_nothing_unchecked_over_the_socket(session, bob, teacher):
    # The measured failure: the tutor echoes its instructions and teaches a wrong answer.
    teacher.pieces = [
        "The learner is a beginner:",
        " use plain words, small steps",
        " and no jargon.",
        " The answer is: 120.",
        " The answer is: 120.",
    ]
    communicator, _, _ = await connect(session.pk, bob)
    explanation = await TutorMessage.objects.aget(session=session)
    seen = await until_status(communicator, explanation.pk)
    sent = texts_sent(seen)
    for fragment in seen:  # not one fragment carries any of the model's words
        for words in ("plain words", "jargon", "120", "learner is a beginner"):
            assert words not in fragment
    assert any(progress(h, explanation.pk) for h in seen)  # the learner saw it being written
    assert "Worked example from the course" in seen[-1] and "4 + 4 = 8" in seen[-1]
    assert 'data-source="expert"' in seen[-1] and "not the tutor model" in seen[-1]
    assert "repeats its instructions" not in sent  # the reason is for instructors
    await explanation.arefresh_from_db()
    assert explanation.source == "expert"
    assert "repeats its instructions" in explanation.failed_check
    assert explanation.failed_text.startswith("The learner is a beginner")
    await communicator.disconnect()


async def test_it_never_reads_the_remediation_decision_back(session, bob, teacher):
    await TutorMessage.objects.filter(session=session).aupdate(status="done", text="explained")
    await sync_to_async(learning.learner_attempt_submit)(session=session, answer="6")
    teacher.decision = "Error type: other\nStrategy: guiding_question\nIntention: see which step went wrong"
    teacher.pieces = [
        "The error is something else; your strategy is to ask one guiding question",
        " that leads the learner to find the mistake; your intention: see which step went wrong",
    ]
    communicator, _, _ = await connect(session.pk, bob)
    remediation = await TutorMessage.objects.aget(session=session, kind="remediation")
    seen = await until_status(communicator, remediation.pk)
    for fragment in seen:
        assert "your strategy" not in fragment and "guiding question" not in fragment
        assert "see which step went wrong" not in fragment
    await remediation.arefresh_from_db()
    assert (remediation.strategy, remediation.source) == ("guiding_question", "expert")
    # The first step of 2 + 3 gives the sum away: the hint is a similar item, solved by the course.
    assert remediation.text.startswith("Example: What is 4 + 4?") and "5" not in remediation.text
    assert "Worked example from the course" in seen[-1]
    await communicator.disconnect()


@pytest.fixture
async def generation_worker(settings):
    """Replies come from a worker over the channel layer (TEACHLOOP_GENERATION=workers), its server a
    task of this loop."""
    from training.generation import GenerationServer

    settings.TEACHLOOP_GENERATION = "workers"
    finished = asyncio.Event()
    serving = asyncio.ensure_future(GenerationServer(get_channel_layer()).serve(finished))
    yield
    finished.set()
    await asyncio.wait_for(serving, 5)


async def test_with_generation_in_workers_a_worker_writes_the_decision_and_the_reply(
    session, bob, teacher, generation_worker
):
    await TutorMessage.objects.filter(session=session).aupdate(status="done", text="explained")
    await sync_to_async(learning.learner_attempt_submit)(session=session, answer="6")
    communicator, _, _ = await connect(session.pk, bob)
    remediation = await TutorMessage.objects.aget(session=session, kind="remediation")
    seen = await until_status(communicator, remediation.pk)
    await remediation.arefresh_from_db()
    assert remediation.status == "done" and remediation.strategy == "hint"
    assert [kind for kind, _ in teacher.calls] == ["generate", "stream"]
    assert "<script>" not in "".join(seen)
    await communicator.disconnect()


async def test_with_generation_in_workers_and_none_running_the_learner_is_told(
    session, bob, teacher, settings, monkeypatch
):
    from training import generation

    settings.TEACHLOOP_GENERATION = "workers"
    monkeypatch.setattr(generation, "START_TIMEOUT_S", 0.5)
    communicator, _, _ = await connect(session.pk, bob)
    explanation = await TutorMessage.objects.aget(session=session)
    await until_status(communicator, explanation.pk)
    await explanation.arefresh_from_db()
    assert explanation.status == "failed" and "manage.py worker" in explanation.error
    assert teacher.calls == []  # nothing was generated in the web process
    await communicator.disconnect()
    await get_channel_layer().flush()  # the request nobody took


async def half_a_reply_then_a_real_worker(layer):
    """A first worker takes the reply's request and writes "LOST HALF" of it (then is killed, or the
    layer fails); a real worker then serves whatever is asked next. Returns what stops the second."""
    from training import generation
    from training.generation import GenerationServer

    message = await layer.receive(generation.GENERATION_CHANNEL)
    await layer.send(message["reply_to"], {"type": "generation.started", "control": "nobody"})
    await layer.send(message["reply_to"], {"type": "generation.piece", "text": "LOST HALF"})
    finished = asyncio.Event()
    return finished, asyncio.ensure_future(GenerationServer(layer).serve(finished))


async def test_a_reply_whose_worker_is_killed_mid_way_is_written_again_unseen(
    session, bob, teacher, settings, monkeypatch
):
    """The learner sees the checked reply of a second worker, not an error to retry by hand, and
    nothing of the lost half."""
    from training import generation

    settings.TEACHLOOP_GENERATION = "workers"
    monkeypatch.setattr(generation, "IDLE_TIMEOUT_S", 0.5)
    replacing = asyncio.ensure_future(half_a_reply_then_a_real_worker(get_channel_layer()))
    communicator, _, _ = await connect(session.pk, bob)
    explanation = await TutorMessage.objects.aget(session=session)
    seen = await until_status(communicator, explanation.pk)
    await explanation.arefresh_from_db()
    assert explanation.status == "done" and explanation.text == "".join(GOOD_EXPLANATION)
    assert "LOST HALF" not in "".join(seen) and len(teacher.calls) == 1
    await communicator.disconnect()
    finished, serving = await replacing
    finished.set()
    await asyncio.wait_for(serving, 5)


async def test_a_reply_cut_by_a_channel_layer_outage_is_queued_again_and_written_when_it_is_back(
    session, bob, teacher, settings, monkeypatch
):
    """Redis restarting mid-reply is not the tutor's failure: the learner gets no error line, nothing
    of the half written before the outage, and the whole checked reply once the layer answers."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from training import generation

    settings.TEACHLOOP_GENERATION = "workers"
    layer = get_channel_layer()

    class FailsOnce:
        """The web side's view of the layer: the reply channel's connection drops after one piece."""

        failed = False

        def __getattr__(self, name):
            return getattr(layer, name)

        async def receive(self, channel):
            message = await layer.receive(channel)
            if message.get("type") == "generation.piece" and not self.failed:
                self.failed = True
                raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
            return message

    web_side = FailsOnce()
    monkeypatch.setattr(generation, "get_channel_layer", lambda: web_side)

    serving_soon = asyncio.ensure_future(half_a_reply_then_a_real_worker(layer))
    communicator, _, _ = await connect(session.pk, bob)
    explanation = await TutorMessage.objects.aget(session=session)
    seen = await until_status(communicator, explanation.pk)
    await explanation.arefresh_from_db()
    assert explanation.status == "done" and explanation.text == "".join(GOOD_EXPLANATION)
    assert explanation.error == ""
    shown = "".join(seen)
    assert "LOST HALF" not in shown and "6379" not in shown and 'data-status="failed"' not in shown
    await communicator.disconnect()
    finished, serving = await serving_soon
    finished.set()
    await asyncio.wait_for(serving, 5)
