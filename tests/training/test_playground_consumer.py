"""The WebSocket of the Playground: the base and chosen adapters answer one prompt, column by column."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from teachloop.consumers import FORBIDDEN
from teachloop.routing import websocket_urlpatterns
from tests.test_fuzz_sockets import JUNK
from tests.tiny_model import build_tiny_lora
from training import services
from training.core.llm import GenerationError, ModelLoadError
from training.models import Adapter, LanguageModel

pytestmark = pytest.mark.django_db(transaction=True)
router = URLRouter(websocket_urlpatterns)


class AdapterLLM:
    """Stands in for a local model with LoRA adapters: each student says its own pieces."""

    def __init__(self, pieces: dict[str | None, list[str]], *, delay: float = 0.0, fail_load: bool = False):
        self.pieces, self.delay, self.fail_load = pieces, delay, fail_load
        self.loaded: list[tuple[str, str]] = []
        self.streamed: list[str | None] = []

    def load_adapter(self, name, path):
        if self.fail_load:
            raise ModelLoadError("smol", f"no LoRA adapter in '{path}'")
        self.loaded.append((name, path))

    def stream(self, conversation, params=None, *, adapter=None):
        if adapter is not None and adapter not in {name for name, _ in self.loaded}:
            raise GenerationError("smol", f"unknown adapter {adapter!r}")
        self.streamed.append(adapter)
        for piece in self.pieces.get(adapter, ["…"]):
            if self.delay:
                threading.Event().wait(self.delay)
            yield piece


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("alice", password="pw", is_staff=True)


@pytest.fixture
def model():
    return LanguageModel.objects.create(name="smol", is_student=True, source="x")


@pytest.fixture
def adapters(model, tmp_path):
    return [
        Adapter.objects.create(base_model=model, version=v, path=str(tmp_path / f"v{v}"), method="sft")
        for v in (1, 2)
    ]


@pytest.fixture
def use_llm(monkeypatch):
    def use(llm):
        monkeypatch.setattr(services, "language_model_llm", lambda model, **_: llm)
        return llm

    return use


async def connect(model_id, user):
    communicator = WebsocketCommunicator(router, f"/ws/training/models/{model_id}/playground/")
    communicator.scope["user"] = user
    connected, code = await communicator.connect()
    return communicator, connected, code


async def collect(communicator):
    """Every message up to the socket's own status line (not a column's), once it is not "Generating"."""
    messages = []
    while True:
        html = await communicator.receive_from(timeout=30)
        messages.append(html)
        if '<p id="playground-status" ' in html and "Generating" not in html:
            return messages


async def ask(communicator, **form):
    await communicator.send_to(text_data=json.dumps(form))
    return await collect(communicator)


def column_status(messages, key):
    return [m for m in messages if f'<p id="playground-status-{key}"' in m][-1]


async def test_it_rejects_anonymous_users(model):
    _, connected, code = await connect(model.pk, AnonymousUser())
    assert not connected and code == FORBIDDEN


async def test_it_rejects_learners(model):
    learner = await get_user_model().objects.acreate(username="bob")
    _, connected, code = await connect(model.pk, learner)
    assert not connected and code == FORBIDDEN


async def test_it_streams_the_base_then_the_adapter_escaped(use_llm, staff, model, adapters):
    adapter = adapters[0]
    name = f"adapter-{adapter.pk}"
    llm = use_llm(AdapterLLM({None: ["base ", "<script>alert(1)</script>"], name: ["tuned ", "<b>x</b>"]}))
    communicator, connected, _ = await connect(model.pk, staff)
    assert connected
    messages = await ask(communicator, prompt="hi <i>there</i>", adapter=str(adapter.pk))

    columns = messages[0]
    assert 'id="playground-output-base"' in columns and f'id="playground-output-{name}"' in columns
    assert columns.index("smol (base)") < columns.index("smol v1")
    assert "hi &lt;i&gt;there&lt;/i&gt;" in columns
    pieces = [m for m in messages if 'hx-swap-oob="beforeend"' in m]
    targets = [p.split('"')[1] for p in pieces]
    assert targets == ["playground-output-base"] * 2 + [f"playground-output-{name}"] * 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pieces[1] and "&lt;b&gt;x&lt;/b&gt;" in pieces[3]
    assert "<script>" not in "".join(messages) and "<b>" not in "".join(messages)
    assert "Done." in column_status(messages, "base") and "Done." in column_status(messages, name)
    assert "Done." in messages[-1]
    assert llm.loaded == [(name, adapter.path)] and llm.streamed == [None, name]
    await communicator.disconnect()


async def test_it_loads_each_adapter_once_per_model(use_llm, staff, model, adapters):
    llm = use_llm(AdapterLLM({}))
    communicator, _, _ = await connect(model.pk, staff)
    ids = [str(a.pk) for a in adapters]
    for _ in range(2):  # several ticked boxes come as a list
        messages = await ask(communicator, prompt="hi", adapter=ids)
        assert "Done." in messages[-1]
    assert llm.loaded == [(f"adapter-{a.pk}", a.path) for a in adapters]
    assert llm.streamed == [None, *[f"adapter-{a.pk}" for a in adapters]] * 2
    await communicator.disconnect()


async def test_it_refuses_an_adapter_of_another_model(use_llm, staff, model):
    other = await LanguageModel.objects.acreate(name="other", is_student=True, source="y")
    foreign = await Adapter.objects.acreate(base_model=other, version=1, path="/a", method="sft")
    llm = use_llm(AdapterLLM({}))
    communicator, _, _ = await connect(model.pk, staff)
    messages = await ask(communicator, prompt="hi", adapter=str(foreign.pk))
    assert len(messages) == 1
    assert "Adapter other v1 was trained on other, not smol." in messages[0] and "error" in messages[0]
    assert llm.streamed == [] and llm.loaded == []
    assert "Done." in (await ask(communicator, prompt="hi"))[-1]  # the socket still works
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("adapter", "line"),
    [
        ("999999", "There is no adapter 999999."),
        ("1; drop", "Unknown adapter"),
        (["1", 2], "Unknown adapter"),
        ({"id": "1"}, "Unknown adapter"),
        ([str(i) for i in range(1, 100)], "Choose at most"),
    ],
)
async def test_it_refuses_adapters_it_cannot_read(use_llm, staff, model, adapter, line):
    llm = use_llm(AdapterLLM({}))
    communicator, _, _ = await connect(model.pk, staff)
    messages = await ask(communicator, prompt="hi", adapter=adapter)
    assert line in messages[0] and "error" in messages[0]
    assert llm.streamed == []
    await communicator.disconnect()


async def test_it_answers_a_served_model_with_the_base_only(use_llm, staff):
    served = await LanguageModel.objects.acreate(
        name="served", is_teacher=True, backend="openai", source="m", base_url="http://gpu:8001/v1"
    )
    adapter = await Adapter.objects.acreate(base_model=served, version=1, path="/a", method="sft")
    llm = use_llm(AdapterLLM({None: ["hello"]}))
    communicator, _, _ = await connect(served.pk, staff)
    messages = await ask(communicator, prompt="hi", adapter=str(adapter.pk))
    assert "served is served over HTTP" in messages[0]
    messages = await ask(communicator, prompt="hi")
    assert "Done." in column_status(messages, "base") and llm.streamed == [None]
    await communicator.disconnect()


async def test_it_asks_for_a_prompt(use_llm, staff, model, adapters):
    use_llm(AdapterLLM({}))
    communicator, _, _ = await connect(model.pk, staff)
    for form in ({"prompt": "   ", "adapter": str(adapters[0].pk)}, {"adapter": "1"}, {"prompt": None}):
        assert "Type a prompt first." in (await ask(communicator, **form))[0]
    await communicator.disconnect()


async def test_it_answers_a_message_that_is_not_a_form_with_an_error_line(use_llm, staff, model):
    use_llm(AdapterLLM({}))
    communicator, _, _ = await connect(model.pk, staff)
    for raw in ("42", "[1]", "null", '"prompt"', "{", ""):
        await communicator.send_input({"type": "websocket.receive", "text": raw})
        line = await communicator.receive_from(timeout=10)
        assert "not a form" in line and "error" in line, raw
    assert "Done." in (await ask(communicator, prompt="hi"))[-1]  # the socket still works
    await communicator.disconnect()


async def test_it_lives_through_junk(use_llm, staff, model):
    use_llm(AdapterLLM({}))
    communicator, _, _ = await connect(model.pk, staff)
    for junk in [*JUNK, json.dumps({"prompt": "hi", "adapter": None}), json.dumps({"adapter": [[]]})]:
        await communicator.send_input({"type": "websocket.receive", "text": junk})
    await communicator.send_input({"type": "websocket.receive", "bytes": b"\x00\xff"})
    while not await communicator.receive_nothing(timeout=0.5):
        await communicator.receive_output(timeout=30)
    assert not communicator.future.done(), communicator.future
    await communicator.disconnect()


async def test_it_ends_a_column_with_its_error_and_goes_on(use_llm, staff, model, adapters):
    use_llm(AdapterLLM({None: ["fine"]}, fail_load=True))
    communicator, _, _ = await connect(model.pk, staff)
    ids = [str(a.pk) for a in adapters]
    messages = await ask(communicator, prompt="hi", adapter=ids)
    assert "Done." in column_status(messages, "base")
    for adapter in adapters:
        line = column_status(messages, f"adapter-{adapter.pk}")
        assert "smol: no LoRA adapter in" in line and "error" in line
    assert "Done." in messages[-1]
    await communicator.disconnect()


async def test_a_stop_form_stops_the_column_and_skips_the_rest(use_llm, staff, model, adapters):
    llm = use_llm(AdapterLLM({None: ["tick "] * 400}, delay=0.02))
    communicator, _, _ = await connect(model.pk, staff)
    await communicator.send_to(text_data=json.dumps({"prompt": "hi", "adapter": str(adapters[0].pk)}))
    while 'hx-swap-oob="beforeend"' not in await communicator.receive_from(timeout=30):
        pass
    await communicator.send_to(text_data=json.dumps({"prompt": "again"}))
    busy = await communicator.receive_from(timeout=10)
    while "Still generating" not in busy:  # pieces still arriving
        busy = await communicator.receive_from(timeout=10)
    await communicator.send_to(text_data=json.dumps({"stop": "1"}))
    messages = await collect(communicator)
    assert "Stopped." in column_status(messages, "base")
    assert "Stopped." in column_status(messages, f"adapter-{adapters[0].pk}")
    assert "Stopped." in messages[-1]
    assert llm.streamed == [None]  # the adapter's column never ran
    llm.pieces, llm.delay = {}, 0.0
    assert "Done." in (await ask(communicator, prompt="hi"))[-1]  # a new prompt runs again
    await communicator.disconnect()


async def test_it_streams_a_real_local_model_and_its_adapter(staff, tiny_model_dir, tmp_path):
    model = await LanguageModel.objects.acreate(
        name="tiny", is_student=True, source=str(tiny_model_dir), max_new_tokens=8
    )
    folder = await asyncio.to_thread(build_tiny_lora, tiny_model_dir, tmp_path / "lora")
    adapter = await Adapter.objects.acreate(base_model=model, version=1, path=str(folder), method="sft")
    communicator, connected, _ = await connect(model.pk, staff)
    assert connected
    texts = {}
    for _ in range(2):  # the second time, the adapter is already loaded
        messages = await ask(communicator, prompt="What is 2+2?", adapter=str(adapter.pk))
        for key in ("base", f"adapter-{adapter.pk}"):
            assert "Done." in column_status(messages, key), messages
            texts[key] = "".join(m for m in messages if f'id="playground-output-{key}" hx-swap-oob' in m)
        assert texts["base"] and texts[f"adapter-{adapter.pk}"]
    assert texts["base"] != texts[f"adapter-{adapter.pk}"]  # the adapter changes the answer
    await communicator.disconnect()
