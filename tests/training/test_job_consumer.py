"""The WebSocket of a training job: replay on connect, live updates, access rules."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from teachloop.routing import websocket_urlpatterns
from training import jobs
from training.models import LanguageModel, TrainingDataset, TrainingJob, TrainingMetric

pytestmark = pytest.mark.django_db(transaction=True)
router = URLRouter(websocket_urlpatterns)


@pytest.fixture
def job(django_user_model):
    owner = django_user_model.objects.create_user("carol", password="pw")
    model = LanguageModel.objects.create(name="tiny", is_student=True, source="x")
    dataset = TrainingDataset.objects.create(
        name="d", method="sft", records=[], record_count=0, sha256="0" * 64
    )
    job = TrainingJob.objects.create(
        base_model=model,
        dataset=dataset,
        method="sft",
        created_by=owner,
        status="running",
        step=3,
        total_steps=10,
        loss=0.5,
    )
    for step, loss in [(1, 2.0), (2, 1.0), (3, 0.5)]:
        TrainingMetric.objects.create(job=job, step=step, loss=loss)
    return job


async def connect(job_id, user):
    communicator = WebsocketCommunicator(router, f"/ws/training/jobs/{job_id}/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    return communicator, connected


def points(html: str) -> list[dict]:
    raw = re.search(r'data-points="([^"]*)"', html).group(1)
    return json.loads(raw.replace("&quot;", '"'))


async def test_it_replays_state_and_every_past_metric_on_connect(job, django_user_model):
    staff = await django_user_model.objects.acreate(username="alice", is_staff=True)
    communicator, connected = await connect(job.pk, staff)
    assert connected
    html = await communicator.receive_from(timeout=10)
    assert f'id="job-state-{job.pk}"' in html and "step 3" in html
    assert [p["step"] for p in points(html)] == [1, 2, 3]
    await communicator.disconnect()


async def test_it_lets_the_job_owner_watch(job):
    owner = await sync_to_async(lambda: job.created_by)()
    _, connected = await connect(job.pk, owner)
    assert connected


async def test_it_rejects_anonymous_users_and_other_learners(job, django_user_model):
    _, connected = await connect(job.pk, AnonymousUser())
    assert not connected
    stranger = await django_user_model.objects.acreate(username="dave")
    _, connected = await connect(job.pk, stranger)
    assert not connected


async def test_it_sends_each_update_to_every_open_browser(job, django_user_model):
    staff = await django_user_model.objects.acreate(username="alice", is_staff=True)
    first, _ = await connect(job.pk, staff)
    second, _ = await connect(job.pk, staff)
    await first.receive_from(timeout=10)
    await second.receive_from(timeout=10)

    await sync_to_async(TrainingJob.objects.filter(pk=job.pk).update)(step=4, loss=0.25)
    fresh = await TrainingJob.objects.aget(pk=job.pk)
    await sync_to_async(jobs.broadcast_state)(fresh)
    for communicator in (first, second):
        html = await communicator.receive_from(timeout=10)
        assert "step 4" in html
        await communicator.disconnect()


async def test_a_chart_point_reaches_every_browser_rendered_once_by_the_sender(
    job, django_user_model, monkeypatch
):
    staff = await django_user_model.objects.acreate(username="alice", is_staff=True)
    browsers = [(await connect(job.pk, staff))[0] for _ in range(3)]
    for communicator in browsers:
        await communicator.receive_from(timeout=10)
    renders = []
    render = jobs.render_to_string
    monkeypatch.setattr(jobs, "render_to_string", lambda *a, **k: renders.append(a[0]) or render(*a, **k))
    fresh = await TrainingJob.objects.aget(pk=job.pk)
    event = SimpleNamespace(step=5, loss=0.5, eval_loss=None)
    await sync_to_async(jobs.broadcast_step)(fresh, event)
    for communicator in browsers:
        assert [p["step"] for p in points(await communicator.receive_from(timeout=10))] == [5]
    assert renders.count("training/partials/job_points.html") == 1  # not once per browser
    # An update from a worker of the version before (points not rendered yet) still shows its points.
    await get_channel_layer().group_send(
        jobs.job_group(job.pk),
        {"type": "job.update", "html": "<p>state</p>", "points": [{"step": 6, "loss": 0.4}]},
    )
    for communicator in browsers:
        assert [p["step"] for p in points(await communicator.receive_from(timeout=10))] == [6]
        await communicator.disconnect()
