"""The WebSocket that streams a model's reply on the Models page."""

from __future__ import annotations

import json

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from teachloop.asgi import application
from teachloop.consumers import FORBIDDEN
from teachloop.routing import websocket_urlpatterns
from training import services
from training.core.llm import GenerationError
from training.models import LanguageModel

pytestmark = pytest.mark.django_db(transaction=True)
router = URLRouter(websocket_urlpatterns)


class ScriptedLLM:
    """Stands in for a model so these tests look at the socket, not at generation."""

    def __init__(self, pieces, error=None):
        self.pieces, self.error = pieces, error

    def stream(self, conversation, params=None, *, adapter=None):
        yield from self.pieces
        if self.error:
            raise self.error


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("alice", password="pw", is_staff=True)


@pytest.fixture
def model():
    return LanguageModel.objects.create(name="smol", is_teacher=True, source="x")


async def connect(model_id, user):
    communicator = WebsocketCommunicator(router, f"/ws/training/models/{model_id}/try/")
    communicator.scope["user"] = user
    connected, code = await communicator.connect()
    return communicator, connected, code


async def collect(communicator):
    messages = []
    while True:
        html = await communicator.receive_from(timeout=30)
        messages.append(html)
        if 'id="try-status-' in html and "Generating" not in html:
            return messages


async def test_it_rejects_anonymous_users(model):
    _, connected, code = await connect(model.pk, AnonymousUser())
    assert not connected and code == FORBIDDEN


async def test_it_rejects_learners(model):
    learner = await get_user_model().objects.acreate(username="bob")
    _, connected, code = await connect(model.pk, learner)
    assert not connected and code == FORBIDDEN


async def test_it_rejects_sockets_from_other_sites(model):
    communicator = WebsocketCommunicator(
        application,
        f"/ws/training/models/{model.pk}/try/",
        headers=[(b"origin", b"https://evil.example"), (b"host", b"127.0.0.1")],
    )
    connected, _ = await communicator.connect()
    assert not connected


async def test_it_streams_escaped_pieces(monkeypatch, staff, model):
    monkeypatch.setattr(
        services,
        "language_model_llm",
        lambda model, **_: ScriptedLLM(["Hello", " <script>alert(1)</script>", " world"]),
    )
    communicator, connected, _ = await connect(model.pk, staff)
    assert connected
    await communicator.send_to(text_data=json.dumps({"prompt": "hi"}))
    messages = await collect(communicator)
    pieces = [m for m in messages if 'hx-swap-oob="beforeend"' in m]
    assert len(pieces) == 3
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pieces[1]
    assert "<script>" not in "".join(messages)
    assert "Done." in messages[-1]
    await communicator.disconnect()


async def test_it_shows_a_model_error_without_a_traceback(monkeypatch, staff, model):
    monkeypatch.setattr(
        services,
        "language_model_llm",
        lambda model, **_: ScriptedLLM(["partial"], GenerationError("smol", "server said 503")),
    )
    communicator, _, _ = await connect(model.pk, staff)
    await communicator.send_to(text_data=json.dumps({"prompt": "hi"}))
    messages = await collect(communicator)
    assert "smol: server said 503" in messages[-1] and "error" in messages[-1]
    await communicator.disconnect()


async def test_it_streams_a_real_local_model(staff, tiny_model_dir):
    model = await LanguageModel.objects.acreate(
        name="tiny", is_student=True, source=str(tiny_model_dir), max_new_tokens=6
    )
    communicator, connected, _ = await connect(model.pk, staff)
    assert connected
    await communicator.send_to(text_data=json.dumps({"prompt": "What is 2+2?"}))
    messages = await collect(communicator)
    assert any('hx-swap-oob="beforeend"' in m for m in messages)
    assert "Done." in messages[-1]
    await communicator.disconnect()


async def test_it_ignores_messages_that_are_not_forms(monkeypatch, staff, model):
    monkeypatch.setattr(services, "language_model_llm", lambda model, **_: ScriptedLLM(["ok"]))
    communicator, connected, _ = await connect(model.pk, staff)
    assert connected
    for raw in ("42", "[1]", "null", "{"):
        await communicator.send_to(text_data=raw)
    await communicator.send_to(text_data=json.dumps({"prompt": None}))
    assert "Type a prompt first." in await communicator.receive_from(timeout=10)
    await communicator.send_to(text_data=json.dumps({"prompt": "hi"}))  # the socket still works
    assert "Done." in (await collect(communicator))[-1]
    await communicator.disconnect()
