"""The WebSocket of a teaching run: staff only, the current state on connect, updates pushed by
the running run's progress."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from teachloop.routing import websocket_urlpatterns
from tests.tutor.runs_helpers import make_models_and_course, scripted_models
from tutor import teaching
from tutor.models import TeachingRun

pytestmark = pytest.mark.django_db(transaction=True)
router = URLRouter(websocket_urlpatterns)


@pytest.fixture
def run(monkeypatch):
    scripted_models(monkeypatch)
    course, teacher, student, _ = make_models_and_course()
    return teaching.teaching_run_create(course=course, student=student, teacher=teacher, train={"disabled": True},
                                        rounds=1, plan_budget=4, explain_budget=2)


async def connect(run_id, user):
    communicator = WebsocketCommunicator(router, f"/ws/tutor/runs/{run_id}/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    return communicator, connected


async def test_it_rejects_anonymous_users_and_learners(run, django_user_model):
    _, connected = await connect(run.pk, AnonymousUser())
    assert not connected
    learner = await django_user_model.objects.acreate(username="bob")
    _, connected = await connect(run.pk, learner)
    assert not connected


async def test_it_sends_the_current_state_from_the_database_on_connect(run, django_user_model):
    await TeachingRun.objects.filter(pk=run.pk).aupdate(
        status="running", current_round=0, current_step="score", results=[
            {"round": 0, "probe": {"add_1d": 0.25}, "exam": {}, "base": {}, "accuracy": None, "base_accuracy": None,
             "done_steps": ["diagnose", "plan", "explain"], "warnings": ["possible teacher hacking: test"]}])
    staff = await django_user_model.objects.acreate(username="alice", is_staff=True)
    communicator, connected = await connect(run.pk, staff)
    assert connected
    html = await communicator.receive_from(timeout=10)
    assert f'id="run-state-{run.pk}"' in html and f'id="run-row-{run.pk}"' in html
    assert 'class="step step-current">score<' in html and 'class="step step-done">explain<' in html
    assert "25%" in html and "possible teacher hacking: test" in html
    await communicator.disconnect()


async def test_it_pushes_each_step_of_a_running_run_to_every_watcher(run, django_user_model):
    staff = await django_user_model.objects.acreate(username="alice", is_staff=True)
    first, _ = await connect(run.pk, staff)
    second, _ = await connect(run.pk, staff)
    for communicator in (first, second):
        assert "Queued" in await communicator.receive_from(timeout=10)

    await sync_to_async(teaching.teaching_run_execute, thread_sensitive=False)(run=run)

    for communicator in (first, second):
        seen: list[str] = []
        while not seen or "Succeeded" not in seen[-1]:  # the last message: the run's end
            seen.append(await communicator.receive_from(timeout=10))
        assert any("step <strong>explain</strong>" in html for html in seen)
        assert "Succeeded" in seen[-1] and 'class="step step-done">reexamine<' in seen[-1]
        await communicator.disconnect()
