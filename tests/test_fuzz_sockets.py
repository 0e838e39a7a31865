"""Junk sent to every WebSocket: each consumer ignores it or answers with a line, and lives on."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from teachloop.routing import websocket_urlpatterns
from tests.tutor.learn.fixtures import make_course
from training.models import LanguageModel, TrainingDataset, TrainingJob
from tutor.learn import services as learning
from tutor.models import Evaluation, TutorMessage
from tutor.runs import services as teaching

pytestmark = pytest.mark.django_db(transaction=True)
router = URLRouter(websocket_urlpatterns)

JUNK = [
    "",
    "null",
    "1",
    '"text"',
    "[]",
    "[" * 5000 + "]" * 5000,
    "{" * 50,
    json.dumps({"question": None}),
    json.dumps({"question": {"nested": ["x"]}}),
    json.dumps({"retry": "not a number"}),
    json.dumps({"retry": 10**30}),
    json.dumps({"prompt": None}),
    json.dumps({"prompt": 5}),
    json.dumps({"unknown": "action"}),
    json.dumps({"stop": None}),
    "\x00" * 10,
]


@sync_to_async
def objects(django_user_model):
    alice = django_user_model.objects.create_user("alice", password="pw", is_staff=True)
    bob = django_user_model.objects.create_user("bob", password="pw")
    model = LanguageModel.objects.create(
        name="served",
        is_teacher=True,
        is_default_teacher=True,
        backend="openai",
        source="m",
        base_url="http://127.0.0.1:9/v1",
    )
    course = make_course()
    session = learning.tutoring_session_start(enrolment=learning.learner_enrol(user=bob, course=course))
    TutorMessage.objects.update(status="done", text="explained")  # nothing pending to generate
    dataset = TrainingDataset.objects.create(
        name="d", method="sft", records=[], record_count=0, sha256="0" * 64
    )
    job = TrainingJob.objects.create(
        base_model=model, dataset=dataset, method="sft", config={}, created_by=alice
    )
    student = LanguageModel.objects.create(name="student", is_student=True, source="/nowhere")
    run = teaching.teaching_run_create(
        course=course, student=student, teacher=model, user=alice, train={"disabled": True}, rounds=1
    )
    evaluation = Evaluation.objects.create(student=student, split="exam", source="junk", total=1)
    return (
        alice,
        bob,
        [
            (f"/ws/training/models/{model.pk}/try/", alice),
            (f"/ws/training/jobs/{job.pk}/", alice),
            (f"/ws/tutor/runs/{run.pk}/", alice),
            (f"/ws/tutor/evaluations/{evaluation.pk}/", alice),
            (f"/ws/training/models/{model.pk}/playground/", alice),
            (f"/ws/learn/sessions/{session.pk}/", bob),
        ],
    )


async def test_every_socket_lives_through_junk(django_user_model):
    _, _, routes = await objects(django_user_model)
    for path, user in routes:
        communicator = WebsocketCommunicator(router, path)
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        assert connected, path
        for junk in JUNK:
            await communicator.send_input({"type": "websocket.receive", "text": junk})
        await communicator.send_input({"type": "websocket.receive", "bytes": b"\x00\xff"})
        # Whatever it answered (a state fragment, an error line), the consumer is still running.
        while not await communicator.receive_nothing(timeout=0.5):
            await communicator.receive_output(timeout=1)
        assert not communicator.future.done(), (path, communicator.future)
        await communicator.disconnect()
