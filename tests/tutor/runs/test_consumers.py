"""The WebSocket of a teaching run: staff only, the current state on connect, updates pushed by
the running run's progress."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from teachloop.routing import websocket_urlpatterns
from tests.tutor.runs.helpers import make_models_and_course, scripted_models
from tutor.models import Round, TeachingRun
from tutor.runs import services as teaching

pytestmark = pytest.mark.django_db(transaction=True)
router = URLRouter(websocket_urlpatterns)


@pytest.fixture
def run(monkeypatch):
    scripted_models(monkeypatch)
    course, teacher, student, _ = make_models_and_course()
    return teaching.teaching_run_create(
        course=course,
        student=student,
        teacher=teacher,
        train={"disabled": True},
        rounds=1,
        plan_budget=4,
        explain_budget=2,
    )


async def connect(run_id, user, query: str = ""):
    communicator = WebsocketCommunicator(router, f"/ws/tutor/runs/{run_id}/{query}")
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
        status="running", current_round=0, current_step="score"
    )
    await Round.objects.acreate(
        run=run,
        index=0,
        probe={"add_1d": 0.25},
        done_steps=["diagnose", "plan", "explain"],
        warnings=["possible teacher hacking: test"],
    )
    staff = await django_user_model.objects.acreate(username="alice", is_staff=True)
    communicator, connected = await connect(run.pk, staff)
    assert connected
    html = await communicator.receive_from(timeout=10)
    assert f'id="run-state-{run.pk}"' in html and "run-row" not in html
    assert 'class="step step-current">score<' in html and 'class="step step-done">explain<' in html
    assert "25%" in html and "possible teacher hacking: test" in html
    await communicator.disconnect()

    listing, _ = await connect(run.pk, staff, "?part=row")  # the run list's socket: the row only
    row = await listing.receive_from(timeout=10)
    assert row.startswith(f'<tr id="run-row-{run.pk}"') and "Running" in row and "score" in row
    await listing.disconnect()


async def test_it_pushes_each_step_of_a_running_run_to_every_watcher(run, django_user_model):
    staff = await django_user_model.objects.acreate(username="alice", is_staff=True)
    page, _ = await connect(run.pk, staff)
    listing, _ = await connect(run.pk, staff, "?part=row")
    for communicator in (page, listing):
        assert "Queued" in await communicator.receive_from(timeout=10)

    await sync_to_async(teaching.teaching_run_execute, thread_sensitive=False)(run=run)

    seen = {}
    for name, communicator in (("page", page), ("list", listing)):
        seen[name] = [await communicator.receive_from(timeout=10)]
        while "Succeeded" not in seen[name][-1]:  # the run's end is its last message
            seen[name].append(await communicator.receive_from(timeout=10))
        await communicator.disconnect()
    assert any("step <strong>explain</strong>" in html for html in seen["page"])
    assert 'class="step step-done">reexamine<' in seen["page"][-1]
    assert any("round 1/1 · explain" in html for html in seen["list"])
    assert all(html.startswith(f'<tr id="run-row-{run.pk}"') for html in seen["list"])
