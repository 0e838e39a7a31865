"""The OpenAI-compatible backend against a fake server on 127.0.0.1 (no internet needed)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fake_openai_server import Canned, FakeOpenAIServer
from training.core.llm.base import (
    GenerationError,
    GenerationParams,
    ModelLoadError,
    ModelSpec,
    UnsupportedOperation,
)
from training.core.llm.openai_compat import OpenAICompatLLM
from training.core.llm.registry import forget, get_llm

KEY_ENV = "TEACHLOOP_TEST_OPENAI_KEY"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(models={"fake-model", "my-lora"}) as fake:
        yield fake


def make_spec(base_url: str, **overrides: Any) -> ModelSpec:
    fields: dict[str, Any] = {
        "name": "served",
        "backend": "openai",
        "source": "fake-model",
        "base_url": base_url,
        "timeout_s": 5.0,
        "max_retries": 2,
    }
    fields.update(overrides)
    return ModelSpec(**fields)


@pytest.fixture
def llm(server: FakeOpenAIServer) -> Iterator[OpenAICompatLLM]:
    model = OpenAICompatLLM(make_spec(server.base_url))
    yield model
    model.close()


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- generate --------------------------------------------------------------------------------


def test_it_returns_batched_replies_in_input_order(server, llm):
    server.sleep_next(0.2)  # whichever request arrives first answers last
    prompts = [f"question {i}" for i in range(12)]  # more than the 8 requests in flight

    replies = llm.generate([user(p) for p in prompts])

    assert [r.text for r in replies] == [f"You said: {p}" for p in prompts]
    assert all((r.finish_reason, r.prompt_tokens, r.completion_tokens) == ("stop", 2, 4) for r in replies)
    assert len(server.chat_requests()) == 12


def test_it_sends_sampling_params_and_the_model_name(server, llm):
    params = GenerationParams(max_new_tokens=3, temperature=0.7, top_p=0.9, stop=("\n", "###"), seed=42)

    conversation = [{"role": "system", "content": "Be brief."}, *user("one two three four")]
    [reply] = llm.generate([conversation], params)

    body = server.chat_requests()[0].body
    assert body["model"] == "fake-model"
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["stop"], body["seed"]) == (
        3,
        0.7,
        0.9,
        ["\n", "###"],
        42,
    )
    assert (reply.text, reply.finish_reason) == ("You said: one", "length")


def test_it_speaks_to_openais_newest_models_with_their_own_fields():
    with FakeOpenAIServer(newest={"gpt-newest"}) as newest:
        plain = OpenAICompatLLM(make_spec(newest.base_url, source="gpt-newest"))
        with pytest.raises(GenerationError, match="max_completion_tokens"):
            plain.generate([user("hi")])  # max_tokens, as most servers want it: refused here
        llm = OpenAICompatLLM(
            make_spec(
                newest.base_url,
                source="gpt-newest",
                token_limit_field="max_completion_tokens",
                send_sampling=False,
            )
        )
        [reply] = llm.generate([user("one two three")], GenerationParams(max_new_tokens=3))
        streamed = "".join(llm.stream(user("four five six"), GenerationParams(max_new_tokens=3)))
        body = newest.chat_requests()[-1].body
    assert (reply.text, streamed) == ("You said: one", "You said: four")
    assert body["max_completion_tokens"] == 3
    assert not {"max_tokens", "temperature", "top_p"} & set(body)


def test_it_uses_the_model_defaults_when_no_params_are_given(server):
    llm = OpenAICompatLLM(make_spec(server.base_url, defaults=GenerationParams(max_new_tokens=2)))

    [reply] = llm.generate([user("hello there")])

    body = server.chat_requests()[0].body
    assert (body["max_tokens"], body["temperature"]) == (2, 0.0)
    assert "seed" not in body and "stop" not in body
    assert (reply.text, reply.finish_reason) == ("You said:", "length")


def test_it_sends_four_stop_strings_and_applies_the_rest_itself(server, llm):
    params = GenerationParams(stop=("s1", "s2", "s3", "s4", "said"))

    [reply] = llm.generate([user("hi")], params)

    assert server.chat_requests()[0].body["stop"] == ["s1", "s2", "s3", "s4"]
    assert (reply.text, reply.finish_reason) == ("You ", "stop")


def test_it_asks_for_the_adapter_as_the_model_name(server, llm):
    [reply] = llm.generate([user("hi")], adapter="my-lora")

    assert server.chat_requests()[0].body["model"] == "my-lora"
    assert reply.text == "You said: hi"


def test_it_sends_the_api_key_from_the_named_env_var_at_call_time(server, monkeypatch):
    server.api_key = "first-key"
    monkeypatch.setenv(KEY_ENV, "first-key")
    llm = OpenAICompatLLM(make_spec(server.base_url, api_key_env=KEY_ENV))
    llm.generate([user("hi")])

    server.api_key = "rotated-key"
    monkeypatch.setenv(KEY_ENV, "rotated-key")
    llm.generate([user("hi")])

    assert [r.headers["authorization"] for r in server.chat_requests()] == [
        "Bearer first-key",
        "Bearer rotated-key",
    ]


def test_it_sends_a_placeholder_key_when_none_is_configured(server, llm):
    llm.generate([user("hi")])

    assert server.chat_requests()[0].headers["authorization"] == "Bearer not-needed"


def test_it_rejects_malformed_conversations_before_sending_anything(server, llm):
    with pytest.raises(GenerationError, match="unknown role 'robot'"):
        llm.generate([user("fine"), [{"role": "robot", "content": "beep"}]])
    with pytest.raises(GenerationError, match="at least one message"):
        llm.stream([])

    assert server.requests == []
    assert llm.generate([]) == []


# -- stream ----------------------------------------------------------------------------------


def test_it_streams_pieces_that_join_to_the_full_reply(server, llm):
    pieces = list(llm.stream(user("tell me a story"), GenerationParams(temperature=0.5)))

    assert len(pieces) >= 4
    assert "".join(pieces) == "You said: tell me a story"
    body = server.chat_requests()[0].body
    assert body["stream"] is True and body["temperature"] == 0.5


def test_it_never_returns_a_nul_character_that_a_database_would_refuse(server, llm):
    # The fake server echoes, so a NUL in the prompt comes back in the reply (a weak model can
    # emit one too); PostgreSQL text columns refuse it, so no backend may hand it on.
    [reply] = llm.generate([user("a\x00b")])
    streamed = "".join(llm.stream(user("c\x00d")))

    assert (reply.text, streamed) == ("You said: ab", "You said: cd")


def test_it_closes_an_abandoned_stream_and_the_next_call_works(server, llm):
    server.chunk_delay_s = 0.02  # a long reply still being written when the consumer stops
    stream = llm.stream(user(" ".join(["word"] * 200)))
    assert next(stream) == "You"
    started = time.monotonic()
    stream.close()

    [reply] = llm.generate([user("again")])
    assert "".join(llm.stream(user("and again"))) == "You said: and again"

    assert reply.text == "You said: again"
    assert time.monotonic() - started < 3  # didn't wait for the 200-word stream to finish
    deadline = time.monotonic() + 2
    while server.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.disconnects == 1  # the server noticed and stopped sending


def test_it_stops_a_stream_at_a_stop_string_split_across_pieces(server, llm):
    # The fifth stop string is not sent to the server, so the client must find it itself,
    # although "said: hi" arrives as the pieces " said:" and " hi".
    params = GenerationParams(stop=("s1", "s2", "s3", "s4", "d: h"))

    assert "".join(llm.stream(user("hi there"), params)) == "You sai"


def test_it_reports_stream_errors_as_model_errors(server, llm):
    stream = llm.stream(user("hi"), adapter="unknown-lora")

    with pytest.raises(ModelLoadError, match="model 'unknown-lora' not found"):
        next(stream)


# -- failures --------------------------------------------------------------------------------


def test_it_retries_a_rate_limit_transparently(server, llm):
    server.fail_next(429)

    [reply] = llm.generate([user("hi")])

    assert reply.text == "You said: hi"
    assert len(server.chat_requests()) == 2


def test_it_gives_up_on_persistent_server_errors_after_its_retries(server, llm):
    server.fail_next(500, times=10, message="CUDA out of memory")

    with pytest.raises(GenerationError) as caught:
        llm.generate([user("hi")])

    message = str(caught.value)
    assert message.startswith("served: ") and "500" in message and "CUDA out of memory" in message
    assert "after 2 retries" in message
    assert len(server.chat_requests()) == 3  # max_retries + 1 attempts
    assert caught.value.__cause__ is not None  # chained to the openai exception


def test_it_reports_a_rejected_key_naming_the_unset_env_var(server, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    server.api_key = "the-real-key"
    llm = OpenAICompatLLM(make_spec(server.base_url, api_key_env=KEY_ENV))

    with pytest.raises(ModelLoadError, match=f"rejected the API key.*{KEY_ENV}.*not set"):
        llm.generate([user("hi")])
    assert len(server.chat_requests()) == 1  # a bad key is not retried


def test_it_reports_an_unknown_model_with_its_name(server):
    llm = OpenAICompatLLM(make_spec(server.base_url, source="no-such-model"))

    with pytest.raises(ModelLoadError, match=f"model 'no-such-model' not found at {server.base_url}"):
        llm.generate([user("hi")])


def test_it_reports_an_unreachable_server_quickly():
    url = f"http://127.0.0.1:{free_port()}/v1"
    llm = OpenAICompatLLM(make_spec(url, max_retries=0))
    started = time.monotonic()

    with pytest.raises(ModelLoadError, match=rf"cannot reach {url} \(connection refused\).*server running"):
        llm.generate([user("hi")])
    assert time.monotonic() - started < 2


def test_it_times_out_on_a_server_that_does_not_answer(server):
    server.sleep_next(5)
    llm = OpenAICompatLLM(make_spec(server.base_url, timeout_s=0.5, max_retries=0))
    started = time.monotonic()

    with pytest.raises(GenerationError, match=r"no reply .* within 0\.5 s"):
        llm.generate([user("hi")])
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "body",
    [
        b"<html>Bad gateway</html>",
        {"choices": []},
        {"object": "chat.completion"},
        {"choices": [{"message": None}]},
        {"choices": [{"message": {"content": 5}, "finish_reason": "stop"}]},
    ],
)
def test_it_reports_a_malformed_reply(server, llm, body):
    server.enqueue(Canned(status=200, body=body))

    with pytest.raises(GenerationError, match="malformed reply"):
        llm.generate([user("hi")])


def test_it_cannot_score_loglikelihoods_or_load_adapters(llm):
    with pytest.raises(UnsupportedOperation, match="log-likelihood"):
        llm.loglikelihood([("2 + 2 =", " 4")])
    with pytest.raises(UnsupportedOperation, match="LoRA"):
        llm.load_adapter("mine", "/tmp/adapter")


# -- lifecycle -------------------------------------------------------------------------------


def test_it_works_again_after_close(server, llm):
    llm.close()
    llm.close()  # twice is fine

    assert llm.generate([user("hi")])[0].text == "You said: hi"


def test_it_is_loaded_once_per_spec_through_the_registry(server):
    spec = make_spec(server.base_url)

    first = get_llm(spec)
    assert isinstance(first, OpenAICompatLLM)
    assert get_llm(spec) is first
    assert first.generate([user("hi")])[0].text == "You said: hi"

    forget(spec)
    assert get_llm(spec) is not first
