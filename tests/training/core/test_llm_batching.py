"""Concurrent streams of one local model, continuously batched (training.core.llm.batching).

On the tiny random Llama: greedy text is deterministic, so every stream must read exactly what
``generate`` gives for its conversation alone, however the streams overlap.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.tiny_model import tiny_spec
from training.core.llm import batching
from training.core.llm.base import GenerationError, GenerationParams
from training.core.llm.local import LocalLLM

PARAMS = GenerationParams(max_new_tokens=24)

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+3?"}],
    [
        {"role": "system", "content": "You are a patient teacher."},
        {"role": "user", "content": "Explain photosynthesis to a child, then give an example."},
    ],
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": "The capital of France is"}],
    [{"role": "user", "content": "Water boils at"}],
]


@pytest.fixture(scope="module")
def llm(tiny_model_dir):
    model = LocalLLM(tiny_spec(tiny_model_dir))
    yield model
    model.close()


def read_all(streams: dict[int, object], results: dict[int, str]) -> None:
    """Read several streams a piece at a time each, round robin, as concurrent sockets would."""
    pending = {key: iter(stream) for key, stream in streams.items()}
    parts: dict[int, list[str]] = {key: [] for key in streams}
    while pending:
        for key in list(pending):
            try:
                parts[key].append(next(pending[key]))
            except StopIteration:
                del pending[key]
                results[key] = "".join(parts[key])


def idle(llm: LocalLLM) -> bool:
    """Whether the batch empties within a few seconds (rows leave at the end of their last step)."""
    deadline = time.monotonic() + 10
    while llm._batcher.busy() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not llm._batcher.busy()


def test_the_bundled_kind_of_model_is_batched(llm):
    assert batching.can_batch(llm.model)
    assert llm._batcher is not None


def test_concurrent_streams_each_read_what_generate_gives_alone(llm):
    expected = [llm.generate([c], PARAMS)[0].text for c in CONVERSATIONS]
    assert len(set(expected)) > 1

    results: dict[int, str] = {}
    read_all({i: llm.stream(c, PARAMS) for i, c in enumerate(CONVERSATIONS)}, results)

    assert [results[i] for i in range(len(CONVERSATIONS))] == expected
    assert idle(llm), "finished streams stayed in the batch"


def test_a_stream_that_joins_a_running_batch_reads_the_same_text(llm):
    long = GenerationParams(max_new_tokens=60)
    expected_long = llm.generate([CONVERSATIONS[1]], long)[0].text
    expected_late = [llm.generate([c], PARAMS)[0].text for c in CONVERSATIONS[2:]]

    first = llm.stream(CONVERSATIONS[1], long)
    text = next(first)  # the first stream is running ...
    late = [llm.stream(c, PARAMS) for c in CONVERSATIONS[2:]]  # ... when these join it
    results: dict[int, str] = {}
    read_all({0: first, **{i + 1: s for i, s in enumerate(late)}}, results)

    assert text + results[0] == expected_long
    assert [results[i + 1] for i in range(len(late))] == expected_late


def test_closing_one_stream_early_leaves_the_others_untouched(llm):
    expected = [llm.generate([c], PARAMS)[0].text for c in CONVERSATIONS[:3]]
    streams = [llm.stream(c, GenerationParams(max_new_tokens=24)) for c in CONVERSATIONS[:3]]
    next(streams[1])
    streams[1].close()  # a learner left mid-reply

    results: dict[int, str] = {}
    read_all({0: streams[0], 2: streams[2]}, results)

    assert results == {0: expected[0], 2: expected[2]}
    assert idle(llm), "the closed stream stayed in the batch"


def test_a_stream_cuts_at_a_stop_string(llm):
    full = llm.generate([CONVERSATIONS[1]], PARAMS)[0].text
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    params = PARAMS.replace(stop=(stop,))

    assert "".join(llm.stream(CONVERSATIONS[1], params)) == llm.generate([CONVERSATIONS[1]], params)[0].text


def test_sampled_streams_repeat_with_a_seed_and_differ_without(llm):
    params = GenerationParams(max_new_tokens=24, temperature=1.0, top_p=0.9, seed=7)
    results: dict[int, str] = {}
    read_all(
        {
            0: llm.stream(CONVERSATIONS[0], params),
            1: llm.stream(CONVERSATIONS[0], params),
            2: llm.stream(CONVERSATIONS[0], params.replace(seed=8)),
        },
        results,
    )

    assert results[0] == results[1]
    assert results[0] != results[2]


def test_streams_with_different_adapters_share_a_batch(tiny_model_dir, tiny_lora_dir):
    llm = LocalLLM(tiny_spec(tiny_model_dir))
    llm.load_adapter("kind", str(tiny_lora_dir))
    base = llm.generate([CONVERSATIONS[1]], PARAMS)[0].text
    adapted = llm.generate([CONVERSATIONS[1]], PARAMS, adapter="kind")[0].text
    assert base != adapted

    results: dict[int, str] = {}
    read_all(
        {0: llm.stream(CONVERSATIONS[1], PARAMS), 1: llm.stream(CONVERSATIONS[1], PARAMS, adapter="kind")},
        results,
    )

    assert results == {0: base, 1: adapted}
    llm.close()


@pytest.mark.parametrize(
    "background_params",
    [GenerationParams(max_new_tokens=300), GenerationParams(max_new_tokens=300, temperature=1.0, seed=3)],
    ids=["greedy", "sampled"],
)
def test_a_stream_runs_inside_a_long_generate_call_instead_of_after_it(
    tiny_model_dir, tiny_lora_dir, background_params
):
    # A teaching run's micro-batch (here: 8 rows of 300 tokens, adapters off) holds the model; a
    # learner's stream must finish while it is still running, and neither may change the other.
    llm = LocalLLM(tiny_spec(tiny_model_dir))
    llm.load_adapter("kind", str(tiny_lora_dir))
    background = [CONVERSATIONS[i % len(CONVERSATIONS)] for i in range(8)]
    expected_background = llm.generate(background, background_params)
    expected_stream = llm.generate([CONVERSATIONS[0]], PARAMS, adapter="kind")[0].text

    started = threading.Event()
    streams_first = llm._streams_first

    def signal() -> None:
        started.set()
        streams_first()

    llm._streams_first = signal
    done: list = []
    worker = threading.Thread(target=lambda: done.append(llm.generate(background, background_params)))
    worker.start()
    assert started.wait(30)

    streamed = "".join(llm.stream(CONVERSATIONS[0], PARAMS, adapter="kind"))
    still_running = worker.is_alive()
    worker.join(120)

    assert streamed == expected_stream
    assert still_running, "the stream waited for the whole generate call"
    assert done == [expected_background]
    llm.close()


def test_closing_the_model_ends_its_streams_with_an_error(tiny_model_dir):
    llm = LocalLLM(tiny_spec(tiny_model_dir))
    with llm._lock:  # the stream is queued, not yet generating, when the model goes away
        stream = llm.stream(CONVERSATIONS[0], GenerationParams(max_new_tokens=400))
        llm.close()

    with pytest.raises(GenerationError, match="closed"):
        list(stream)
    with pytest.raises(GenerationError, match="closed"):
        llm.stream(CONVERSATIONS[0], PARAMS)


def test_closing_the_model_ends_a_running_stream_within_a_step(tiny_model_dir):
    # The streams' thread re-takes the lock between steps only once nobody is queued for it
    # (batching.ModelLock): close() waits for one step, not for the rest of a 400-token reply.
    llm = LocalLLM(tiny_spec(tiny_model_dir))
    reply = llm.generate([CONVERSATIONS[0]], GenerationParams(max_new_tokens=400))[0]
    assert reply.completion_tokens > 300  # the tiny model does not stop early: the stream runs long
    stream = iter(llm.stream(CONVERSATIONS[0], GenerationParams(max_new_tokens=400)))
    read = [next(stream)]

    with pytest.raises(GenerationError, match="closed"):
        llm.close()
        read.extend(stream)
    assert len("".join(read)) < len(reply.text) / 2


def test_the_streams_thread_lets_a_queued_caller_in_between_two_steps():
    # Python's locks are not fair: a thread that releases and re-takes one at once usually wins it
    # again, so close() or load_adapter() could wait until every running reply had finished.
    lock = batching.ModelLock()
    order: list[str] = []
    holding = threading.Event()

    def caller() -> None:
        holding.wait(5)
        with lock:
            order.append("caller")

    def streams() -> None:
        with lock.after_others():  # one step; a caller queues meanwhile
            holding.set()
            deadline = time.monotonic() + 5
            while lock._queued == 0 and time.monotonic() < deadline:
                time.sleep(0.001)
        with lock.after_others():  # the next step, at once
            order.append("streams")

    threads = [threading.Thread(target=caller), threading.Thread(target=streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert order == ["caller", "streams"]


LESSON = (
    "You are a patient arithmetic tutor. Explain one worked example step by step, in plain words, "
    "then ask the learner to try a similar exercise on their own. Never give the answer away."
)


def test_streams_that_share_a_long_prompt_start_read_what_generate_gives_alone(llm):
    # Twenty learners of one course: the same long instructions, then each learner's own question.
    # The shared part is computed once for the group (batching.MIN_SHARED_PREFIX).
    conversations = [
        [{"role": "system", "content": LESSON}, {"role": "user", "content": question}]
        for question in ("What is 2+3?", "hi", "Explain 7 times 6.", "The capital of France is", "Why?")
    ]
    assert (
        batching.shared_prefix([llm._encode_prompt(c) for c in conversations]) >= batching.MIN_SHARED_PREFIX
    )
    expected = [llm.generate([c], PARAMS)[0].text for c in conversations]

    with llm._lock:  # all five wait, then join in one prefill
        streams = {i: llm.stream(c, PARAMS) for i, c in enumerate(conversations)}
        deadline = time.monotonic() + 10
        while len(llm._batcher._waiting) < len(conversations) and time.monotonic() < deadline:
            time.sleep(0.01)
    results: dict[int, str] = {}
    read_all(streams, results)

    assert [results[i] for i in range(len(conversations))] == expected


def test_greedy_generate_shares_a_long_prompt_start_and_gives_the_same_answers(llm, monkeypatch):
    calls: list[int] = []
    shared_prefix = batching.shared_prefix

    def spy(prompts):
        calls.append(shared_prefix(prompts))
        return calls[-1]

    monkeypatch.setattr(batching, "shared_prefix", spy)
    conversations = [
        [{"role": "system", "content": LESSON}, {"role": "user", "content": f"What is {a} + {a + 1}?"}]
        for a in range(6)
    ]
    together = llm.generate(conversations, PARAMS)
    assert max(calls) >= batching.MIN_SHARED_PREFIX  # the shared path ran
    alone = [llm.generate([c], PARAMS)[0] for c in conversations]

    assert together == alone


def _reused(monkeypatch) -> list[int]:
    """The prompt tokens each prefill took from the kept prefix (batching._KeptPrefix.reusable)."""
    taken: list[int] = []
    reusable = batching._KeptPrefix.reusable

    def spy(self, rows, version):
        taken.append(reusable(self, rows, version))
        return taken[-1]

    monkeypatch.setattr(batching._KeptPrefix, "reusable", spy)
    return taken


def _lesson(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": LESSON}, {"role": "user", "content": question}]


def test_a_stream_after_another_reuses_their_shared_start_and_reads_what_generate_gives(llm, monkeypatch):
    # Learners one after another: the second's prompt starts with the first's instructions, which the
    # streams' batch kept; it computes only its own question and reads the same text as alone.
    questions = ("What is 2+3?", "Explain 7 times 6.", "hi")
    expected = [llm.generate([_lesson(q)], PARAMS)[0].text for q in questions]
    taken = _reused(monkeypatch)

    got = ["".join(llm.stream(_lesson(q), PARAMS)) for q in questions]

    assert got == expected
    assert max(taken) >= batching.MIN_SHARED_PREFIX  # the kept start was reused


def test_a_kept_start_is_not_reused_under_another_adapter_or_after_an_adapter_load(
    tiny_model_dir, tiny_lora_dir, monkeypatch
):
    llm = LocalLLM(tiny_spec(tiny_model_dir))
    llm.load_adapter("kind", str(tiny_lora_dir))
    conversation = _lesson("What is 2+3?")
    base, adapted = (llm.generate([conversation], PARAMS, adapter=a)[0].text for a in (None, "kind"))
    taken = _reused(monkeypatch)

    assert "".join(llm.stream(conversation, PARAMS)) == base
    assert "".join(llm.stream(conversation, PARAMS, adapter="kind")) == adapted  # another adapter
    assert taken == [0]
    assert "".join(llm.stream(conversation, PARAMS, adapter="kind")) == adapted  # same adapter: reused
    assert taken[-1] >= batching.MIN_SHARED_PREFIX
    llm.load_adapter("kind", str(tiny_lora_dir))  # the same name loaded again (it could be new weights)
    assert "".join(llm.stream(conversation, PARAMS, adapter="kind")) == adapted
    assert taken[-1] == 0
    llm.close()


def test_a_long_generate_prefills_its_prompts_a_budget_at_a_time_and_answers_the_same(llm, monkeypatch):
    # A learner's stream waits for one step of a teaching run's generate call: a step may prefill
    # at most PREFILL_TOKENS prompt tokens (a longer prompt alone), with the streams' turn between.
    conversations = [CONVERSATIONS[i % len(CONVERSATIONS)] for i in range(12)]
    whole = llm.generate(conversations, PARAMS)  # the default budget holds all twelve prompts at once
    groups: list[list[int]] = []
    prefill = batching._Batch.prefill

    def spy(self, model, new):
        groups.append([len(row.prompt) for row in new])
        return prefill(self, model, new)

    monkeypatch.setattr(batching._Batch, "prefill", spy)
    monkeypatch.setattr(batching, "PREFILL_TOKENS", 60)
    turns: list[int] = []
    streams_first = llm._streams_first
    monkeypatch.setattr(llm, "_streams_first", lambda: (turns.append(len(groups)), streams_first()))

    assert llm.generate(conversations, PARAMS) == whole
    assert sum(len(g) for g in groups) == 12 and len(groups) > 2
    assert all(sum(g) <= 60 or len(g) == 1 for g in groups)
    assert all(n in turns for n in range(1, len(groups) + 1))  # the streams' turn after every prefill
