#!/usr/bin/env python
"""Teaching benchmark: does the loop teach the skill rather than the template, and do no harm?

One command, one process, one loaded student (the bundled SmolLM2-135M-Instruct; LoRA adapters are
swapped by name), on the **whole arithmetic pack** (``arithmetic_pack``: 8 taught skills, add_1d to
div_remainder, and 3 keep skills, div_exact, compare, half, that the course never teaches). Every
arm is examined on the pack's exam split, which no arm trains on; half of each skill's exam items
are asked in *held-out phrasings*, wordings that never appear in any training data (the packs keep
them out of the train split, ``training_safe`` refuses them, the loop's guard too).

What is measured, per arm and seed (greedy answers of at most ``--student-tokens`` new tokens, graded
by the run's own ``tutor.core.runs.steps.graded``: the gold final answer and no false step or claim
on the way):

- exam accuracy of the taught skills on **held-out phrasings** (``Exercise.held_out``) and on
  **training phrasings**: the gap between the two is how much of a gain is the template;
- the **keep-set change**: per keep skill, exam accuracy after minus the base student's, the worst
  of them, and whether the drop is beyond noise (the Wilson upper bound of the accuracy after,
  pooled over seeds, below the base's: ``tutor.core.runs.planner.upper_bound``, z 1.96);
- trained tokens (chat template applied, the whole sequence the trainer processes: prompt and
  answer; the answer tokens apart) and wall time (training, and in all).

Arms (a)-(d) and (c') share one budget per seed, an **equal training-token budget** that the loop
decides: the tokens of every try the loop trained, accepted or rejected (a rejected try trains again
with more keep replay and half the learning rate; each round continues the last adapter on its new
records and a replay share, ``RunConfig.schedule``). The baselines take records in their seeded
order while they fit the budget, cycling when their pool runs out (:func:`fill_to_budget`: within
half a record of the budget), and train once from the base with the same settings (LoRA r, lr,
batch, one epoch over what they took).

- ``a_base``: the student as shipped.
- ``b_answers``: question -> ``Answer: <gold>`` on train items of the taught skills, interleaved
  skill by skill in a seeded order (:func:`interleave_by_skill`), filled to the budget.
- ``c_worked``: the same items with their gold worked solutions, same order rule, filled to the budget.
- ``c_untargeted`` (c'): untargeted augmentation. The same teacher writes new items from *randomly
  chosen* train items (:func:`untargeted_sources`: as many sources as the loop used for that seed,
  the loop's ``generate_k`` each), verified by the loop's own generate step (the expert checks every
  answer and step, held-out phrasings, duplicates and exam copies are dropped), plus the share of
  keep-set self-distillation records the loop trained on (:func:`keep_share_of`, drawn from the
  loop's keep pool), filled to the budget. Against (d) it isolates *targeting*: the same kind and
  amount of material, made from the student's mistakes or from random items.
- ``d_loop``: the full loop, ``tutor.core.runs.run_teaching``, with the loop's default rules
  (expert, keep set, acceptance on the held-out probe with retries, the default schedule) and the
  budgets given on the command line. Its teacher is ``bench/scripted_teacher.py``, an **oracle**: it
  writes the packs' gold worked solutions and generates pack items, so it never fails a check. It
  stands in for a strong teacher a 2-core CPU cannot run; the results measure what the loop does with
  good material, not how good any teacher model is. The loop's base exam answers are arm (a)'s, and
  seeds after the first start with the first seed's keep pool (the base student's right answers on
  keep-set train items): both are base-model measurements that no seed changes.
- ``e_defaults``: the loop exactly as a new user gets it: ``RunConfig()`` defaults, the bundled
  model as both teacher and student (one loaded copy; the teacher has no adapter), the course as
  ``manage.py import_course --pack arithmetic`` makes it (``arithmetic_pack()``, default sizes), 2
  rounds, the teach command's training (``ROUND_TRAINING``: one pass over each try's records). It has
  its own exam (the default course's) and its own base, at the default ``student_max_new_tokens``; 1
  seed by default (``--defaults-seeds``). Its token count is the trainer's own.

The issue's targets are stated next to the figures with whether each is met: (d) beats (c) and (c')
on the held-out-phrasing exam by more than the seed spread (the larger sample sd of the two arms),
with no keep-skill drop beyond noise; (e) gains 30 points on its held-out-phrasing exam over its base,
loses no more than 5 points on any keep skill, and runs in under 15 minutes on 2 cores.

The BIG-bench section and the old options (``--skills``, ``--flat``, ``--levels``,
``--stretch-share``, ``--smol-seeds``, the ``e_loop_data`` arm) are gone: the BIG-bench course shows
nothing about phrasings, and (e) replaces the SmolLM2-teaches-itself run.

Default sizes: 60 train, 12 probe, 40 exam items per skill (20 of the exam in held-out phrasings: 160
held-out items over the taught skills per arm and seed); the loop practises 48 items a round, explains 8
and generates 2 new items from each wrong one (up to 48), 2 rounds. Every mistake practised is a
generation source, so targeting is whole; ``generate_k`` only multiplies, and 2 keeps the budget near
60k tokens per seed and the whole default command near 2.5 hours on 2 idle cores
(:func:`estimate_minutes`, printed first; the exams, ~3.7 min for each of 5 per seed, cost as much as
the training).

Run ``python bench/teaching.py --help``. ``--quick`` is a few-minute smoke run (tiny sizes, 1 seed, 1
round, answers cut at 64 tokens, 2 training steps for (e)) that proves every arm runs and the report
renders; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as replaced
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from bench.machine import describe as machine  # noqa: E402 (after the path is set)
from bench.machine import speed, speed_line  # noqa: E402

ARMS = ("a_base", "b_answers", "c_worked", "c_untargeted", "d_loop", "e_defaults")
BUDGETED = ("b_answers", "c_worked", "c_untargeted")  # trained once, filled to the loop's budget
ARM_LABELS = {
    "a_base": "(a) base student",
    "b_answers": "(b) SFT question → answer",
    "c_worked": "(c) SFT gold worked solutions",
    "c_untargeted": "(c') untargeted augmentation",
    "d_loop": "(d) loop, scripted oracle teacher",
    "e_defaults": "(e) loop as shipped (SmolLM2 teaches itself)",
}
DEFAULT_OUT = ROOT / "docs" / "benchmarks" / "teaching-report.md"
Z = 1.96  # the Wilson interval of the keep-set check
E_GAIN_TARGET, E_KEEP_TARGET, E_WALL_TARGET_S = 0.30, -0.05, 15 * 60


# ---------------------------------------------------------------- pure helpers (unit-tested)


def fill_to_budget(
    records: Sequence[dict[str, Any]], tokens: Sequence[int], budget: int
) -> tuple[list[int], int]:
    """Indices of ``records`` taken in order (cycling when the pool runs out) while they fit ``budget``.

    The record that would cross the budget is taken when that lands closer to it than stopping does, so
    the total is within half a record of ``budget``. Returns (indices, total tokens). A pool of
    zero-token records, or an empty pool, takes nothing.
    """
    if len(records) != len(tokens):
        raise ValueError("one token count per record")
    taken: list[int] = []
    total = 0
    if budget <= 0 or not records or not any(t > 0 for t in tokens):
        return taken, total
    i = 0
    while True:
        t = tokens[i % len(records)]
        if total + t > budget:
            if (total + t - budget) < (budget - total):
                taken.append(i % len(records))
                total += t
            return taken, total
        taken.append(i % len(records))
        total += t
        i += 1


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation); the deviation is 0 for fewer than two values."""
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def interleave_by_skill(items: Sequence[Any], seed: str | int) -> list[Any]:
    """``items`` (anything with a ``skill``) in a seeded order that is uniform over skills: each skill's
    items shuffled, the skills in a shuffled order, then one item of each skill in turn, so every prefix
    holds the skills as evenly as their numbers allow."""
    by_skill: dict[str, list[Any]] = defaultdict(list)
    for item in items:
        by_skill[item.skill].append(item)
    rng = random.Random(f"{seed}:order")
    skills = sorted(by_skill)
    rng.shuffle(skills)
    for skill in skills:
        random.Random(f"{seed}:{skill}").shuffle(by_skill[skill])
    out: list[Any] = []
    for i in range(max((len(v) for v in by_skill.values()), default=0)):
        out.extend(by_skill[s][i] for s in skills if i < len(by_skill[s]))
    return out


def untargeted_sources(items: Sequence[Any], n: int, seed: str | int) -> list[Any]:
    """``n`` randomly chosen ``items`` (train items of the taught skills), uniform over skills and never
    one twice (at most all of them): the sources of arm (c'), chosen without looking at the student."""
    return interleave_by_skill(items, f"{seed}:c_untargeted")[: max(n, 0)]


def keep_share_of(tries: Sequence[Mapping[str, Any]]) -> float:
    """Share of keep-set (self-distillation) records among every record the loop trained, all tries."""
    total = sum(t["records"] for t in tries)
    return sum(t["keep_records"] for t in tries) / total if total else 0.0


def keep_replay_arms(option: str) -> set[str]:
    """The arms ``--keep-replay`` names (c_worked, c_untargeted; "none" for neither)."""
    named = {a.strip() for a in option.split(",") if a.strip()} - {"none"}
    unknown = named - {"c_worked", "c_untargeted"}
    if unknown:
        raise SystemExit(
            f"--keep-replay: not an arm that can replay the keep set: {', '.join(sorted(unknown))}"
        )
    return named


def _share(values: Sequence[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def exam_metrics(
    items: Sequence[Any], correct: Mapping[str, bool], taught: set[str], keep: set[str]
) -> dict[str, Any]:
    """Accuracies of one exam (``correct`` per item key; items have key, skill, held_out): the taught
    skills on held-out phrasings and on training phrasings, per taught skill both ways, and per keep
    skill over all its items (with how many: the keep-set check needs n)."""

    def acc(chosen: Sequence[Any]) -> float | None:
        return _share([correct[e.key] for e in chosen])

    taught_items = [e for e in items if e.skill in taught]
    skills = list(dict.fromkeys(e.skill for e in items))
    return {
        "held_out": acc([e for e in taught_items if e.held_out]),
        "trained_phrasing": acc([e for e in taught_items if not e.held_out]),
        "per_skill_held_out": {
            s: acc([e for e in taught_items if e.skill == s and e.held_out]) for s in skills if s in taught
        },
        "per_skill_trained_phrasing": {
            s: acc([e for e in taught_items if e.skill == s and not e.held_out])
            for s in skills
            if s in taught
        },
        "keep": {s: acc([e for e in items if e.skill == s]) for s in skills if s in keep},
        "keep_n": {s: sum(e.skill == s for e in items) for s in skills if s in keep},
    }


def keep_change(now: Mapping[str, float | None], base: Mapping[str, float | None]) -> tuple[dict, float]:
    """Per keep skill, accuracy now minus the base's; and the worst (lowest) of them (0 for none)."""
    change = {s: now[s] - base[s] for s in base if now.get(s) is not None and base[s] is not None}
    return change, min(change.values(), default=0.0)


def keep_beyond_noise(base: float, now: Sequence[float], n: int, z: float = Z) -> tuple[bool, float]:
    """Whether a keep skill dropped beyond noise: the Wilson upper bound of its accuracy after (``now``,
    one accuracy per seed, each over the same ``n`` items, pooled) is below the base accuracy. Returns
    (dropped, upper bound)."""
    from tutor.core.runs.planner import upper_bound

    if not now or n <= 0:
        return False, float("nan")
    upper = upper_bound(statistics.fmean(now), n * len(now), z)
    return upper < base - 1e-12, upper


def beats(d: Sequence[float], other: Sequence[float]) -> tuple[float, float, bool]:
    """(gap of the means d - other, the seed spread: the larger sample sd of the two, met: the gap is
    positive and larger than the spread)."""
    (md, sd), (mo, so) = mean_spread(d), mean_spread(other)
    gap, spread = md - mo, max(sd, so)
    return gap, spread, gap > 0 and gap > spread + 1e-12


def main_targets(
    held_out: Mapping[str, Sequence[float]], keep_dropped: Sequence[str]
) -> list[tuple[str, str, bool]]:
    """The issue's targets for (d): (target, measured, met) rows. ``held_out`` holds the held-out-phrasing
    accuracy per seed of each arm run; ``keep_dropped`` the keep skills (d) lost beyond noise."""
    rows = []
    for other in ("c_worked", "c_untargeted"):
        if other not in held_out or "d_loop" not in held_out:
            continue
        gap, spread, met = beats(held_out["d_loop"], held_out[other])
        rows.append(
            (
                f"(d) beats {ARM_LABELS[other].split(' ')[0]} on the held-out-phrasing exam by more than "
                "the seed spread",
                f"{100 * gap:+.1f} points; spread (larger sd) {100 * spread:.1f}",
                met,
            )
        )
    if "d_loop" not in held_out:
        return rows
    rows.append(
        (
            "(d) loses no keep skill beyond noise (Wilson upper bound, pooled over seeds, below the base)",
            ", ".join(keep_dropped) + " dropped" if keep_dropped else "none dropped",
            not keep_dropped,
        )
    )
    return rows


def defaults_targets(gain: float, worst_keep: float, wall_s: float) -> list[tuple[str, str, bool]]:
    """The issue's targets for (e): held-out gain over its base, the worst keep skill, the wall time."""
    return [
        (
            "(e) +30 points on the held-out-phrasing exam over its base",
            f"{100 * gain:+.1f} points",
            gain >= E_GAIN_TARGET - 1e-12,
        ),
        (
            "(e) no keep skill down more than 5 points",
            f"worst {100 * worst_keep:+.1f} points",
            worst_keep >= E_KEEP_TARGET - 1e-12,
        ),
        ("(e) wall time under 15 min on 2 cores", f"{wall_s / 60:.1f} min", wall_s < E_WALL_TARGET_S),
    ]


def round_rows(state: Any) -> list[dict[str, Any]]:
    """One row per round of a run's state (a ``RunState``): the plan, explanations (by the model, by the
    expert, the model's pass rate), generated items kept (model / expert), records (new / carried from
    earlier rounds / keep set), the tries with their verdicts, the exam after."""
    rows = []
    for r in state.rounds:
        metas = [x["meta"] for x in r.sft_records]
        carried = sum("replayed_from" in m for m in metas)
        keep = sum(m.get("source") == "keep" and "replayed_from" not in m for m in metas)
        candidates = sum(x.candidates for x in r.explanations)
        rows.append(
            {
                "round": r.index,
                "plan": {k: v for k, v in r.plan.get("items_per_skill", {}).items() if v},
                "explained_model": sum(x.source == "model" and x.passed_gate for x in r.explanations),
                "explained_expert": sum(x.source == "expert" for x in r.explanations),
                "explain_pass_rate": (
                    sum(x.candidates_passed for x in r.explanations) / candidates if candidates else None
                ),
                "helped": sum(x.helped for x in r.explanations),
                "generated_model": sum(g.kept and g.source == "model" for g in r.generated),
                "generated_expert": sum(g.kept and g.source == "expert" for g in r.generated),
                "generated_written": sum(g.source == "model" for g in r.generated),
                "sources": len({g.source_item for g in r.generated}),
                "records_new": len(metas) - carried - keep,
                "records_carried": carried,
                "records_keep": keep,
                "tries": [
                    {
                        k: t.get(k)
                        for k in (
                            "attempt",
                            "accepted",
                            "reason",
                            "records",
                            "held_out_before",
                            "held_out_after",
                            "lr_scale",
                        )
                    }
                    for t in r.tries
                ],
                "rolled_back": bool(r.train.get("rolled_back")),
                "exam_held_out": r.exam.get("held_out_accuracy"),
                "exam_trained_phrasing": r.exam.get("trained_phrasing_accuracy"),
            }
        )
    return rows


@dataclass(frozen=True)
class Rates:
    """What the time estimate assumes (measured on 2 idle cores of this machine kind, 2 torch threads)."""

    items_per_s: float = 2.0  # greedy student answers of up to 128 new tokens, batches of 16
    tokens_per_s: float = 230.0  # SmolLM2-135M LoRA training
    record_tokens: float = 130.0  # one worked-solution record of the pack with the chat template
    wrong_share: float = 0.75  # practised items the student gets wrong (the generation sources)
    tries_per_round: float = 1.5  # the loop's training tries per round (some are rejected)
    defaults_min: float = 15.0  # one seed of (e): the issue's own target for it
    load_min: float = 1.0  # loading the student, tokenizing


def estimate_minutes(args: Any, rates: Rates = Rates()) -> dict[str, float]:
    """A rough time budget of the whole command in minutes, per part and in all (``total``)."""
    skills, keep_skills = 11, 3  # the arithmetic pack: 8 taught, 3 kept
    per_s = rates.items_per_s * 128 / max(args.student_tokens, 1)
    exam = skills * args.exam_per_skill
    probe = skills * args.probe_per_skill
    wrong = rates.wrong_share * args.plan_budget
    new = min(args.explain_budget, wrong) + min(args.generate_budget, wrong) * args.generate_k
    per_round = new / (1 - 0.2)  # the default keep share, 0.2 of the records
    budget = (
        sum(rates.tries_per_round * (r + 1) * per_round for r in range(args.rounds)) * rates.record_tokens
    )
    tries = rates.tries_per_round * args.rounds
    loop_items = (
        args.rounds * (probe + args.plan_budget + 3 * args.explain_budget + exam)
        + tries * probe
        + (keep_skills + 1) * args.train_per_skill / 2  # the keep pool, short answers
    )
    baselines = [arm for arm in BUDGETED if arm in args.arms]
    train_min = budget / rates.tokens_per_s / 60
    parts = {
        "load": rates.load_min,
        "a_base": exam / per_s / 60 if "a_base" in args.arms else 0.0,
        "d_loop": args.seeds * (loop_items / per_s / 60 + train_min) if "d_loop" in args.arms else 0.0,
        "baselines": args.seeds * len(baselines) * (exam / per_s / 60 + train_min),
        "e_defaults": (
            args.defaults_seeds * (1.5 if args.quick else rates.defaults_min)
            if "e_defaults" in args.arms
            else 0.0
        ),
    }
    parts["budget_tokens"] = budget
    parts["total"] = sum(v for k, v in parts.items() if k != "budget_tokens")
    return parts


# ---------------------------------------------------------------- the bench


def sft_record(exercise: Any, answer: str, meta: dict[str, Any]) -> dict[str, Any]:
    """A training record as the loop writes one: the student prompt, then the answer."""
    from tutor.core.runs import prompts

    return {
        "messages": [*prompts.student_prompt(exercise), {"role": "assistant", "content": answer}],
        "meta": meta,
    }


@dataclass
class Bench:
    args: argparse.Namespace
    student: Any  # LocalLLM
    model_dir: Path
    work: Path
    tokenizer: Any = None
    log: list[str] = field(default_factory=list)
    load_samples: list[float] = field(default_factory=list)

    def say(self, message: str) -> None:
        load = os.getloadavg()[0]
        self.load_samples.append(load)
        line = f"[{time.strftime('%H:%M:%S')} load {load:.2f}] {message}"
        print(line, flush=True)
        self.log.append(line)

    def tokens_of(self, record: dict[str, Any]) -> int:
        text = self.tokenizer.apply_chat_template(record["messages"], tokenize=False)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def answer_tokens_of(self, record: dict[str, Any]) -> int:
        return len(self.tokenizer(record["messages"][-1]["content"], add_special_tokens=False)["input_ids"])

    def main_training(self, seed: int) -> dict[str, Any]:
        """Training settings of arms (b)-(d): the command line's, one epoch over what an arm trains on."""
        a = self.args
        return {
            "learning_rate": a.lr,
            "lora_r": a.lora_r,
            "lora_alpha": 2 * a.lora_r,
            "batch_size": a.batch_size,
            "num_epochs": float(a.epochs),
            "warmup_ratio": 0.03,
            "seed": seed,
            "max_seq_length": 512,
            "checkpoint_every": 100_000,
        }

    # -- training and examining ---------------------------------------------------------------

    def train(
        self,
        records: list[dict[str, Any]],
        out: Path,
        settings: dict[str, Any],
        *,
        parent: str | None = None,
        lr_scale: float = 1.0,
    ) -> dict[str, Any]:
        from training.core.config import TrainConfig
        from training.core.trainer import train

        config = TrainConfig(
            base_model=str(self.model_dir),
            parent_adapter=parent,
            **{**settings, "learning_rate": settings["learning_rate"] * lr_scale},
        )
        clean = [{"messages": r["messages"]} for r in records]  # meta stays with the bench, not the trainer
        started = time.perf_counter()
        result = train(config, clean, out, resume=False)
        if result.status != "succeeded":
            raise SystemExit(f"training failed: {result.reason}")
        return {
            "adapter": str(result.adapter_dir),
            "train_s": time.perf_counter() - started,
            "records": len(records),
            "keep_records": sum(r["meta"].get("source") == "keep" for r in records),
            "tokens": sum(self.tokens_of(r) for r in records),
            "answer_tokens": sum(self.answer_tokens_of(r) for r in records),
            "engine_tokens": result.metrics.get("tokens"),
            "steps": result.metrics.get("steps"),
            "final_loss": result.metrics.get("final_loss"),
        }

    def exam(self, items: Sequence[Any], adapter: str | None, max_new_tokens: int) -> dict[str, Any]:
        from training.core.llm.base import GenerationParams
        from tutor.core.runs import prompts
        from tutor.core.runs.steps import graded as grade_answer

        started = time.perf_counter()
        params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0, seed=0)
        texts = self.student.generate([prompts.student_prompt(e) for e in items], params, adapter=adapter)
        graded = [grade_answer(e, g.text) for e, g in zip(items, texts, strict=True)]
        return {
            "correct": {e.key: g.correct for e, g in zip(items, graded, strict=True)},
            "answers": {
                e.key: {"item": e.key, "text": t.text, "extracted": g.extracted, "correct": g.correct}
                for e, t, g in zip(items, texts, graded, strict=True)
            },
            "exam_s": time.perf_counter() - started,
        }

    # -- the loop arms ------------------------------------------------------------------------

    def run_loop(
        self,
        course,
        teacher,
        config,
        tag: str,
        training: dict[str, Any],
        *,
        base_exam: dict[str, Any] | None = None,
        keep_from: Any | None = None,
    ):
        """One ``run_teaching`` run; returns (results, state). Every try's training is recorded (the
        budget), in ``tries.json`` beside the state too, so a resumed run keeps its count. ``keep_from``,
        an earlier seed's state, gives its keep pool (the base student's answers) and the expert's keep
        items those answers are to, so the base is not asked them again."""
        from tutor.core.runs import RunState, run_teaching
        from tutor.core.runs.state import Answer

        state_path = self.work / tag / "state.json"
        tries_path = self.work / tag / "tries.json"
        if not state_path.exists() and (base_exam or keep_from):
            # Base-model measurements made already at the same settings: the run does not repeat them.
            RunState(
                config=config,
                course=course.key,
                teacher=teacher.name,
                student=self.student.name,
                base_exam={k: Answer(**v) for k, v in (base_exam or {}).items()},
                keep_pool=dict(keep_from.keep_pool) if keep_from else {},
                keep_items=list(keep_from.keep_items) if keep_from else [],
            ).save(state_path)
        tries: list[dict[str, Any]] = json.loads(tries_path.read_text()) if tries_path.exists() else []
        marks: dict[tuple[int, str], float] = {}

        def train_fn(records, round_index, parent_adapter, *, attempt=0, lr_scale=1.0):
            out = self.work / tag / f"round{round_index}-try{attempt}"
            result = self.train(records, out, training, parent=parent_adapter, lr_scale=lr_scale)
            tries[:] = [t for t in tries if (t["round"], t["attempt"]) != (round_index, attempt)]
            tries.append({"round": round_index, "attempt": attempt, "lr_scale": lr_scale, **result})
            tries_path.write_text(json.dumps(tries, indent=1))
            self.say(
                f"{tag} round {round_index} try {attempt + 1}: {result['records']} records "
                f"({result['keep_records']} keep), {result['tokens']} tokens, {result['steps']} steps, "
                f"{result['train_s']:.0f} s, loss {result['final_loss']}"
            )
            return result["adapter"]

        def progress(step, index, info):
            marks[(index, f"{step}:{info['status']}")] = time.perf_counter()
            if info["status"] != "done":
                return
            took = marks[(index, f"{step}:done")] - marks.get((index, f"{step}:started"), time.perf_counter())
            if step in ("plan", "build_data"):
                if step == "plan":
                    self.say(f"{tag} round {index} plan ({took:.0f} s): {info['items_per_skill']}")
                return
            shown = {k: v for k, v in info.items() if k != "status"}
            self.say(f"{tag} round {index} {step} ({took:.0f} s): {shown}")

        started = time.perf_counter()
        state = run_teaching(
            course, teacher, self.student, config, state_path, train_fn=train_fn, progress=progress
        )
        wall = time.perf_counter() - started
        # String keys: the results go through JSON (--json, a resumed report) and come back as strings.
        round_wall = {
            str(r.index): marks[(r.index, "reexamine:done")] - marks[(r.index, "diagnose:started")]
            for r in state.rounds
            if (r.index, "diagnose:started") in marks and (r.index, "reexamine:done") in marks
        }
        step_s = {
            f"{index}:{step}": marks[(index, f"{step}:done")] - at
            for (index, mark), at in marks.items()
            if mark.endswith(":started")
            for step in [mark.removesuffix(":started")]
            if (index, f"{step}:done") in marks
        }
        return {
            "wall_s": wall,
            "round_wall_s": round_wall,
            "step_s": step_s,
            "tries": tries,
            "train_s": sum(t["train_s"] for t in tries),
            "tokens": sum(t["tokens"] for t in tries),
            "answer_tokens": sum(t["answer_tokens"] for t in tries),
            "engine_tokens": sum(t.get("engine_tokens") or 0 for t in tries),
            "records": sum(t["records"] for t in tries),
            "adapter": state.adapter_name,
            "rounds": round_rows(state),
            "sources": sum(r["sources"] for r in round_rows(state)),
            "generated": sum(r["generated_model"] + r["generated_expert"] for r in round_rows(state)),
        }, state

    # -- the baseline arms --------------------------------------------------------------------

    def baseline_pool(
        self, course, arm: str, seed: int, keep: tuple[float, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Arms (b) and (c): every train item of the taught skills, in :func:`interleave_by_skill` order
        (the same order for both: only the answer differs). With ``keep`` (the loop's keep share and
        its state), that share of keep-set records too, each at a seeded place in the order."""
        from tutor.core.courses.course import training_safe

        taught = {s.key for s in course.taught_skills}
        items = training_safe(e for e in course.split("train") if e.skill in taught)
        records = [
            sft_record(
                e,
                f"Answer: {e.answer}" if arm == "b_answers" else e.solution,
                {"source": arm, "item": e.key, "skill": e.skill},
            )
            for e in interleave_by_skill(items, f"{seed}:baseline")  # (b) and (c): the same items, same order
        ]
        if keep is None:
            return records
        share, state = keep
        rng = random.Random(f"{seed}:{arm}:keep-places")
        for record in self.loop_keep_records(course, seed, arm, len(records), share, state):
            records.insert(rng.randint(0, len(records)), record)
        return records

    def untargeted_pool(
        self, course, seed: int, loop: dict[str, Any], state, *, with_keep: bool = True
    ) -> tuple[list[dict], dict]:
        """Arm (c'): new items from random train items, made and verified by the loop's own generate step
        (with the same teacher and settings), plus (``with_keep``) the loop's share of keep-set records,
        shuffled."""
        from bench.scripted_teacher import ScriptedTeacher
        from tutor.core.courses.course import training_safe
        from tutor.core.runs import RunState
        from tutor.core.runs.state import Answer
        from tutor.core.runs.steps import Context, generate, generated_exercise

        taught = {s.key for s in course.taught_skills}
        items = training_safe(e for e in course.split("train") if e.skill in taught)
        sources = untargeted_sources(items, loop["sources"], seed)
        config = replaced(state.config, rounds=1, generate_budget=len(sources))
        teacher = ScriptedTeacher(course, seed=seed)
        scratch = RunState(config=config, course=course.key, teacher=teacher.name, student=self.student.name)
        ctx = Context(course=course, teacher=teacher, student=self.student, config=config, state=scratch)
        rnd = scratch.round(0)
        # As if the student had answered every source wrongly: the generate step takes wrong practised
        # items as its sources, so these random ones become the sources, in this order.
        rnd.planned_items = [e.key for e in sources]
        rnd.answers = {e.key: Answer(item=e.key, text="", extracted=None, correct=False) for e in sources}
        generate(ctx, rnd)
        made = [
            sft_record(
                generated_exercise(g),
                g.solution,
                {"source": "generated", "item": g.key, "source_item": g.source_item, "skill": g.skill},
            )
            for g in rnd.generated
            if g.kept
        ]
        share = keep_share_of(loop["tries"])
        keep = (
            self.loop_keep_records(course, seed, "c_untargeted", len(made), share, state) if with_keep else []
        )
        records = made + keep
        random.Random(f"{seed}:c_untargeted:shuffle").shuffle(records)
        ctx.guard.check_records(records)
        return records, {
            "sources": len(sources),
            "generated": len(made),
            "keep": len(keep),
            "keep_share": share if with_keep else 0.0,
        }

    def loop_keep_records(self, course, seed: int, arm: str, n_task: int, share: float, state) -> list[dict]:
        """Keep-set self-distillation records drawn from the loop's keep pool (the base student's own
        right answers), as many as ``share`` of the records make beside ``n_task`` task records."""
        from tutor.core.runs.steps import generated_exercise, own_words, replay_count

        pool = state.keep_pool
        keys = random.Random(f"{seed}:{arm}:keep").sample(
            sorted(pool), replay_count(n_task, len(pool), share)
        )
        # The loop's keep pool holds course items and the expert's extra keep items alike.
        by_key = {e.key: e for e in course.exercises}
        by_key.update({g.key: generated_exercise(g) for g in state.keep_items})
        return [
            sft_record(
                by_key[k],
                own_words(pool[k].text) or pool[k].text,
                {"source": "keep", "item": k, "skill": by_key[k].skill},
            )
            for k in keys
        ]

    def budgeted_arm(self, course, arm: str, seed: int, pool: list[dict], budget: int) -> dict[str, Any]:
        """Train once from the base on ``pool`` filled to ``budget`` tokens; examine."""
        started = time.perf_counter()
        counts = [self.tokens_of(r) for r in pool]
        taken, total = fill_to_budget(pool, counts, budget)
        records = [pool[i] for i in taken]
        per_skill: dict[str, int] = defaultdict(int)
        for r in records:
            per_skill[r["meta"]["skill"]] += 1
        passes = len(taken) / len(pool) if pool else 0.0
        self.say(
            f"{arm} seed {seed}: {len(records)} records ({passes:.2f} passes over {len(pool)}), "
            f"{total} tokens (budget {budget})"
        )
        name = f"{arm}-s{seed}"
        if records:
            result = self.train(records, self.work / name, self.main_training(seed))
            self.student.load_adapter(name, result["adapter"])
        else:  # the loop trained nothing: neither does the baseline
            result = {"train_s": 0.0, "records": 0, "tokens": 0, "answer_tokens": 0, "adapter": None}
            name = None
        exam = self.exam(course.split("exam"), name, self.args.student_tokens)
        return {
            **result,
            "correct": exam["correct"],
            "exam_s": exam["exam_s"],
            "passes": passes,
            "items_per_skill": dict(per_skill),
            "wall_s": time.perf_counter() - started,
        }


# ---------------------------------------------------------------- setup


def load_student(cache: Path, threads: int):
    import torch

    from training.core.bundled import bundled_gguf_path
    from training.core.llm.base import ModelSpec
    from training.core.llm.local import LocalLLM, ensure_gguf_cache

    if not torch.cuda.is_available():
        torch.set_num_threads(threads)
    folder = ensure_gguf_cache(bundled_gguf_path(), cache)
    spec = ModelSpec(name="smollm2-135m-instruct", backend="transformers", source=str(folder))
    return LocalLLM(spec), folder


def make_course(args):
    """The whole arithmetic pack at the bench's sizes (the course and its exam are the same for every
    seed and arm)."""
    from tutor.core.courses.packs import arithmetic_pack

    sizes = {"train": args.train_per_skill, "probe": args.probe_per_skill, "exam": args.exam_per_skill}
    return arithmetic_pack(args.course_seed, per_skill_per_split=sizes)


def defaults_course(args):
    """(e)'s course: ``arithmetic_pack()``, as ``import_course --pack arithmetic`` makes it (tiny with
    --quick)."""
    from tutor.core.courses.packs import arithmetic_pack

    if args.quick:
        return arithmetic_pack(0, per_skill_per_split={"train": 6, "probe": 2, "exam": 2})
    return arithmetic_pack()


def defaults_config(args, seed: int):
    """(e)'s settings: ``RunConfig()`` with the seed (with --quick, 1 round and tiny budgets)."""
    from tutor.core.runs import RunConfig

    if args.quick:
        return RunConfig(
            seed=seed,
            rounds=1,
            plan_budget=8,
            explain_budget=2,
            generate_budget=1,
            general_probe=4,
            **args.defaults_set,
        )
    return RunConfig(seed=seed, **args.defaults_set)


def defaults_training(args) -> dict[str, Any]:
    """(e)'s training: the teach command's ``ROUND_TRAINING`` (2 steps with --quick); the rest of
    ``TrainConfig`` at its defaults, as a teaching run's training job has them."""
    from tutor.core.runs.state import ROUND_TRAINING

    return {**ROUND_TRAINING, **({"max_steps": 2} if args.quick else {}), **args.defaults_train}


def run_config(args, seed: int):
    """(d)'s settings: the loop's defaults, the budgets of the command line. The teacher is asked for
    every generated item (``teacher_generate_k`` = ``generate_k``): it is the strong-teacher stand-in."""
    from tutor.core.runs import RunConfig

    return RunConfig(
        rounds=args.rounds,
        plan_budget=args.plan_budget,
        explain_budget=args.explain_budget,
        generate_budget=args.generate_budget,
        generate_k=args.generate_k,
        teacher_generate_k=args.generate_k,
        seed=seed,
        student_max_new_tokens=args.student_tokens,
        **args.loop_set,
    )


# ---------------------------------------------------------------- report


def pct(x: float | None) -> str:
    return "—" if x is None or x != x else f"{100 * x:.1f}"


def points(x: float | None) -> str:
    return "—" if x is None or x != x else f"{100 * x:+.1f}"


def spread_cell(values: Sequence[float | None]) -> str:
    """ "m ± sd (min–max)" in percent over seeds."""
    got = [v for v in values if v is not None]
    if not got:
        return "—"
    m, sd = mean_spread(got)
    return f"{pct(m)} ± {pct(sd)} ({pct(min(got))}–{pct(max(got))})"


def fmt_counts(d: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "—"


def fmt_tries(tries: Sequence[Mapping[str, Any]], rolled_back: bool) -> str:
    if not tries:
        return "no training"
    parts = [
        f"{t['attempt'] + 1} {'✓' if t['accepted'] else '✗'} {t['records']} rec, lr×{t['lr_scale']:g}: "
        f"{t['reason']}"
        for t in tries
    ]
    return "; ".join(parts) + ("; **rolled back**" if rolled_back else "")


def fmt_probe(tries: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{pct(t['held_out_before'])} → {pct(t['held_out_after'])}" for t in tries) or "—"


def header(args, course, versions: str, estimate: dict[str, float]) -> list[str]:
    from tutor.core.runs.state import ROUND_TRAINING

    c = run_config(args, 0)
    loop_rules = f"rules, changed for this run: {args.loop_set};" if args.loop_set else "default rules"
    keep = ", ".join(s.key for s in course.keep_skills)
    taught = ", ".join(s.key for s in course.taught_skills)
    return [
        f"Command: `python bench/teaching.py {' '.join(sys.argv[1:])}`",
        f"Date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"Machine: {machine()}; torch threads: {args.threads}",
        *([speed_line(args.speed)] if getattr(args, "speed", None) else []),
        f"Versions: {versions}",
        f"Student: bundled SmolLM2-135M-Instruct (GGUF Q4_1 de-quantized to float32). Arms (b)-(d): LoRA "
        f"r={args.lora_r} alpha={2 * args.lora_r} on all projections, lr {args.lr} (× 0.5 per retry in (d)), "
        f"batch {args.batch_size}, {args.epochs} epoch(s) over what each try trains on, linear schedule, "
        f"warmup 3%, completion-only loss. Arm (e): the teach command's {ROUND_TRAINING}"
        + (f", changed for this run: training {args.defaults_train}" if args.defaults_train else "")
        + (f", RunConfig {args.defaults_set}" if args.defaults_set else "")
        + ".",
        f"Course: the whole arithmetic pack (seed {args.course_seed}): taught {taught}; keep {keep}; per "
        f"skill {args.train_per_skill} train, {args.probe_per_skill} probe, {args.exam_per_skill} exam "
        f"items (half of probe and exam in held-out phrasings); exam = {len(course.split('exam'))} items, "
        f"greedy, {args.student_tokens} new tokens at most.",
        f"Loop (d): the loop's {loop_rules} (expert {c.expert}, keep_share {c.keep_share}, acceptance "
        f"{c.acceptance}, round_tries {c.round_tries}, schedule {c.schedule}, explain_samples "
        f"{c.explain_samples}, siblings {c.siblings}, general_probe {c.general_probe}); rounds {c.rounds}, "
        f"plan_budget {c.plan_budget}, explain_budget {c.explain_budget}, generate_budget "
        f"{c.generate_budget} × k {c.generate_k} (all asked of the teacher), student_max_new_tokens "
        f"{c.student_max_new_tokens}. "
        "Teacher: `bench/scripted_teacher.py`, an **oracle** (the packs' gold worked solutions and "
        "generated pack items; it never fails a check): a stand-in for a strong teacher, not a measure "
        "of one.",
        f"Seeds: {args.seeds} for (a)-(d) (the seed sets the loop's plan and sampling, the baselines' "
        f"order and training); {args.defaults_seeds} for (e). The course and its exam are the same for "
        "every seed and arm (e has its own: the default course).",
        f"Estimated before the run (2 idle cores): {estimate['total']:.0f} min.",
    ]


def report(args, course, results: dict[str, Any], versions: str, estimate: dict[str, float]) -> str:
    seeds = results["seeds"]
    runs = results["arms"]
    arms = [a for a in ARMS if a != "e_defaults" and runs.get(a)]
    defaults = results.get("defaults", [])
    # (e) alone has no arm (a): its own base stands in where only the skill names are read.
    base = runs["a_base"][seeds[0]]["metrics"] if arms else defaults[0]["base_metrics"]
    lines = [*header(args, course, versions, estimate), ""]

    # -- the main table
    lines += [
        "### Exam by arm: mean ± sample sd over seeds (min–max)",
        "",
        "Taught skills only; keep Δ: the worst keep skill's exam accuracy minus the base's, in points.",
        "",
        "| arm | held-out phrasings % | training phrasings % | keep Δ, worst (points) | "
        "trained tokens, all / answer | train (min) | total (min) |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for arm in arms:
        per_seed = [runs[arm][s] for s in seeds]
        worst = [keep_change(r["metrics"]["keep"], base["keep"])[1] for r in per_seed]
        m, sd = mean_spread(worst)
        tokens = statistics.fmean([r.get("tokens", 0) for r in per_seed])
        answer = statistics.fmean([r.get("answer_tokens", 0) for r in per_seed])
        lines.append(
            f"| {ARM_LABELS[arm]} | {spread_cell([r['metrics']['held_out'] for r in per_seed])} | "
            f"{spread_cell([r['metrics']['trained_phrasing'] for r in per_seed])} | "
            f"{points(m)} ± {pct(sd)} | {tokens:.0f} / {answer:.0f} | "
            f"{statistics.fmean([r.get('train_s', 0) for r in per_seed]) / 60:.1f} | "
            f"{statistics.fmean([r.get('wall_s', 0) for r in per_seed]) / 60:.1f} |"
        )
    if defaults:
        worst = [keep_change(r["metrics"]["keep"], r["base_metrics"]["keep"])[1] for r in defaults]
        m, sd = mean_spread(worst)
        lines += [
            f"| (e) its base (own exam, {defaults[0]['student_tokens']} tokens) | "
            f"{spread_cell([r['base_metrics']['held_out'] for r in defaults])} | "
            f"{spread_cell([r['base_metrics']['trained_phrasing'] for r in defaults])} | — | 0 | — | — |",
            f"| {ARM_LABELS['e_defaults']} | {spread_cell([r['metrics']['held_out'] for r in defaults])} | "
            f"{spread_cell([r['metrics']['trained_phrasing'] for r in defaults])} | "
            f"{points(m)} ± {pct(sd)} | "
            f"{statistics.fmean([r['tokens'] for r in defaults]):.0f} / "
            f"≈{statistics.fmean([r['answer_tokens'] for r in defaults]):.0f} | "
            f"{statistics.fmean([r['train_s'] for r in defaults]) / 60:.1f} | "
            f"{statistics.fmean([r['wall_s'] for r in defaults]) / 60:.1f} |",
        ]
    lines += [
        "",
        "Held-out phrasings per seed (%): "
        + "; ".join(
            f"{ARM_LABELS[a].split(' ')[0]} "
            + ", ".join(pct(runs[a][s]["metrics"]["held_out"]) for s in seeds)
            for a in arms
        ),
        "",
        "Tokens: the budget is what (d) trained, every try counted; (b), (c), (c') are filled to it. (e)'s "
        "are the trainer's own count (its steps × batch, whatever the records); its answer tokens are that "
        "count times the answer share of its records (≈).",
        "",
    ]
    if runs.get("c_untargeted"):
        lines += [
            "(c') per seed: "
            + "; ".join(
                f"seed {s}: {runs['c_untargeted'][s]['made']['generated']} new items from "
                f"{runs['c_untargeted'][s]['made']['sources']} random sources (the loop: "
                f"{runs['d_loop'][s]['generated']} from {runs['d_loop'][s]['sources']} mistakes), "
                f"{runs['c_untargeted'][s]['made']['keep']} keep records "
                f"(the loop's keep share {runs['c_untargeted'][s]['made']['keep_share']:.2f}), "
                f"{runs['c_untargeted'][s]['passes']:.2f} passes"
                for s in seeds
            ),
            "",
        ]

    replaying = [
        ARM_LABELS[a].split(" ")[0]
        for a in ("c_worked", "c_untargeted")
        if any(runs.get(a, {}).get(s, {}).get("keep_replay", a == "c_untargeted") for s in seeds)
    ]
    if runs.get("c_worked") or runs.get("c_untargeted"):
        lines += [
            "Keep-set replay (the loop's share of the base student's own right answers) in the baselines: "
            f"{', '.join(replaying) or 'none'} (`--keep-replay`; (d) always replays).",
            "",
        ]

    # -- the keep set
    keep_skills = list(base["keep"])
    dropped_d: list[str] = []
    lines += [
        "### The keep set: exam accuracy % after (change from the base); beyond noise: the Wilson upper "
        f"bound (z {Z}) of the accuracy after, pooled over seeds, below the base",
        "",
        "| arm | " + " | ".join(f"{k} (base {pct(base['keep'][k])})" for k in keep_skills) + " |",
        "|---|" + "---|" * len(keep_skills),
    ]
    for arm in arms[1:]:
        cells = []
        for k in keep_skills:
            now = [runs[arm][s]["metrics"]["keep"][k] for s in seeds]
            dropped, upper = keep_beyond_noise(base["keep"][k], now, base["keep_n"][k])
            if dropped and arm == "d_loop":
                dropped_d.append(k)
            cells.append(
                f"{pct(statistics.fmean(now))} ({points(statistics.fmean(now) - base['keep'][k])}; "
                f"upper {pct(upper)}{', **dropped**' if dropped else ''})"
            )
        lines.append(f"| {ARM_LABELS[arm]} | " + " | ".join(cells) + " |")
    for r in defaults:
        cells = [
            f"{pct(r['metrics']['keep'][k])} "
            f"({points(r['metrics']['keep'][k] - r['base_metrics']['keep'][k])}; "
            f"base {pct(r['base_metrics']['keep'][k])})"
            for k in keep_skills
        ]
        lines.append(f"| (e) seed {r['seed']}, own exam | " + " | ".join(cells) + " |")
    lines.append("")

    # -- per skill
    taught = list(base["per_skill_held_out"])
    e_cols = ["e base", "e after"] if defaults else []
    lines += [
        "### Per skill: held-out / training phrasings % (means over seeds); keep skills: all their items",
        "",
        "| skill | " + " | ".join([*(ARM_LABELS[a].split(" ")[0] for a in arms), *e_cols]) + " |",
        "|---|" + "---|" * (len(arms) + len(e_cols)),
    ]

    def both(metrics_list: Sequence[dict], skill: str) -> str:
        if skill in keep_skills:
            return pct(statistics.fmean([m["keep"][skill] for m in metrics_list]))
        held = [m["per_skill_held_out"].get(skill) for m in metrics_list]
        trained = [m["per_skill_trained_phrasing"].get(skill) for m in metrics_list]
        mean = lambda xs: statistics.fmean(xs) if all(x is not None for x in xs) else None  # noqa: E731
        return f"{pct(mean(held))} / {pct(mean(trained))}"

    for skill in taught + keep_skills:
        cells = [both([runs[a][s]["metrics"] for s in seeds], skill) for a in arms]
        if defaults:
            cells += [
                both([r["base_metrics"] for r in defaults], skill),
                both([r["metrics"] for r in defaults], skill),
            ]
        lines.append(f"| {skill} | " + " | ".join(cells) + " |")
    lines.append("")

    # -- round by round
    lines += [
        "### The loops, round by round",
        "",
        "Explanations: through the checks by the model / written by the expert (the model's pass rate); "
        "generated kept: by the model / by the expert; records: new / carried from earlier rounds / keep "
        "set; held-out probe: before → after, per try; exam after: held-out / training phrasings %.",
        "",
        "| arm | seed | round | plan (items per skill) | explanations | generated kept | records | "
        "tries | held-out probe | exam after | round (min) |",
        "|---|---|---|---|---|---|---|---|---|---|---:|",
    ]
    loop_runs = [("(d)", s, runs["d_loop"][s]) for s in seeds if arms] + [
        ("(e)", r["seed"], r) for r in defaults
    ]
    for label, s, run in loop_runs:
        for r in run["rounds"]:
            rate = r["explain_pass_rate"]
            lines.append(
                f"| {label} | {s} | {r['round']} | {fmt_counts(r['plan'])} | "
                f"{r['explained_model']} / {r['explained_expert']} ({pct(rate)}%) | "
                f"{r['generated_model']} / {r['generated_expert']} | "
                f"{r['records_new']} / {r['records_carried']} / {r['records_keep']} | "
                f"{fmt_tries(r['tries'], r['rolled_back'])} | {fmt_probe(r['tries'])} | "
                f"{pct(r['exam_held_out'])} / {pct(r['exam_trained_phrasing'])} | "
                f"{run['round_wall_s'].get(str(r['round']), 0) / 60:.1f} |"
            )
    lines.append("")

    # -- targets
    rows = main_targets(
        {
            a: [runs[a][s]["metrics"]["held_out"] for s in seeds]
            for a in ("c_worked", "c_untargeted", "d_loop")
            if runs.get(a)
        },
        dropped_d,
    )
    for r in defaults:
        gain = r["metrics"]["held_out"] - r["base_metrics"]["held_out"]
        worst = keep_change(r["metrics"]["keep"], r["base_metrics"]["keep"])[1]
        rows += [
            (f"{t} (seed {r['seed']})", m, ok) for t, m, ok in defaults_targets(gain, worst, r["wall_s"])
        ]
    lines += ["### Against the issue's targets", "", "| target | measured | met? |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in rows]
    if len(seeds) < 2:
        lines += ["", "One seed: there is no seed spread, so 'more than the spread' reads 'ahead at all'."]
    if args.quick:
        lines += ["", "**--quick smoke run: tiny sizes; these figures mean nothing.**"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3, help="seeds of arms (a)-(d) (default 3)")
    p.add_argument(
        "--defaults-seeds", type=int, default=1, help="seeds of arm (e), which is slow (default 1)"
    )
    p.add_argument(
        "--defaults-first-seed",
        type=int,
        default=0,
        help="the first of arm (e)'s seeds (default 0; 1 with --defaults-seeds 1 runs seed 1 alone)",
    )
    p.add_argument("--rounds", type=int, default=2, help="rounds of the loop arm (d) (default 2)")
    p.add_argument("--course-seed", type=int, default=0, help="seed of the arithmetic pack (default 0)")
    p.add_argument("--train-per-skill", type=int, default=60, help="train items per skill (default 60)")
    p.add_argument(
        "--probe-per-skill", type=int, default=12, help="probe items per skill, half held out (default 12)"
    )
    p.add_argument(
        "--exam-per-skill", type=int, default=40, help="exam items per skill, half held out (default 40)"
    )
    p.add_argument("--plan-budget", type=int, default=48, help="(d): items practised per round (default 48)")
    p.add_argument("--explain-budget", type=int, default=8, help="(d): explanations per round (default 8)")
    p.add_argument(
        "--generate-budget",
        type=int,
        default=48,
        help="(d): wrong items generated from per round (default 48)",
    )
    p.add_argument("--generate-k", type=int, default=2, help="(d): new items per such item (default 2)")
    p.add_argument(
        "--student-tokens",
        type=int,
        default=128,
        help="max new tokens of every student answer in (a)-(d) (the longest worked solution, 3-digit "
        "addition, needs ~110; default 128)",
    )
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch CPU threads (default 2, for 2 idle cores; on shared cores use 1: 2 threads ran 3x "
        "slower under load)",
    )
    p.add_argument(
        "--arms",
        default=",".join(ARMS),
        help="arms to run (default all); any of a_base to d_loop brings a_base and d_loop with it (the "
        "budget comes from d_loop); e_defaults alone runs only (e)",
    )
    p.add_argument(
        "--keep-replay",
        default="c_untargeted",
        help="which of c_worked and c_untargeted also train on the loop's share of keep-set replay "
        "(comma-separated, or none; default c_untargeted, as (d) does): an ablation of what the keep "
        "records do to the held-out exam",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a few-minute smoke run: tiny sizes, 1 seed, 1 round, answers cut at 64 tokens, 2 training "
        "steps for (e)",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(
            os.environ.get("TEACHLOOP_TEST_MODEL_CACHE") or Path(tempfile.gettempdir()) / "tl-bench-cache"
        ),
        help="where the bundled model's safetensors copy is kept",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder for run states and adapters (default: a temp folder); a loop state found there is "
        "resumed",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"write the markdown report here (default {DEFAULT_OUT.relative_to(ROOT)}, except with "
        "--quick or a non-default --arms: then only printed)",
    )
    p.add_argument("--json", type=Path, default=None, help="write the raw results here")
    p.add_argument(
        "--defaults-set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="(e) only: run it with this RunConfig field changed (repeatable), to measure a candidate "
        "default before making it one; the report's settings line shows it",
    )
    p.add_argument(
        "--loop-set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="(d) only: run the loop with this RunConfig field changed (repeatable); (c') follows the "
        "keep share the loop then trains on",
    )
    p.add_argument(
        "--defaults-train",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="(e) only: change this ROUND_TRAINING / TrainConfig field of its training (repeatable)",
    )
    args = p.parse_args(argv)
    try:
        args.defaults_set = _overrides(args.defaults_set)
        args.defaults_train = _overrides(args.defaults_train)
        args.loop_set = _overrides(args.loop_set)
    except ValueError as exc:
        p.error(str(exc))
    if args.quick:
        args.seeds, args.rounds, args.defaults_seeds = 1, 1, min(args.defaults_seeds, 1)
        args.train_per_skill, args.probe_per_skill, args.exam_per_skill = 4, 2, 2
        args.plan_budget, args.explain_budget, args.generate_budget, args.generate_k = 6, 2, 2, 2
        args.student_tokens = min(args.student_tokens, 64)  # cut answers: a smoke run measures nothing
    try:
        run_config(args, 0)  # a --loop-set field the loop does not have, or a bad value, fails here
    except (TypeError, ValueError) as exc:
        p.error(f"--loop-set: {exc}")
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        p.error(f"unknown arm(s) {unknown}; the arms are {', '.join(ARMS)}")
    default_arms = arms == list(ARMS)
    loop_arms = {"a_base", "d_loop"} if set(arms) - {"e_defaults"} else set()
    args.arms = [a for a in ARMS if a in {*loop_arms, *arms}]  # in report order
    if args.out is None and not args.quick and default_arms:
        args.out = DEFAULT_OUT  # a full run's report goes to docs/ (the discussion quotes it)
    return args


def _overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["schedule=continue", "keep_share=0.3"]`` -> their values (JSON where it reads as JSON)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected FIELD=VALUE, not {pair!r}")
        try:
            out[name.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[name.strip()] = raw
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    estimate = estimate_minutes(args)
    print(
        f"Estimated time on 2 idle cores: ~{estimate['total']:.0f} min (loading {estimate['load']:.0f}, "
        f"base exam {estimate['a_base']:.0f}, loop {estimate['d_loop']:.0f}, baselines "
        f"{estimate['baselines']:.0f}, (e) {estimate['e_defaults']:.0f}; a loop budget of "
        f"~{estimate['budget_tokens'] / 1000:.0f}k tokens per seed). Shared cores take longer.",
        flush=True,
    )
    import peft
    import torch
    import transformers
    import trl
    from transformers import AutoTokenizer

    versions = (
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"peft {peft.__version__}, trl {trl.__version__}"
    )
    work = args.work or Path(tempfile.mkdtemp(prefix="tl-teachbench-"))
    work.mkdir(parents=True, exist_ok=True)
    student, model_dir = load_student(args.cache, args.threads)
    args.speed = speed()  # on the run's torch threads, before it loads the machine
    bench = Bench(
        args=args,
        student=student,
        model_dir=Path(model_dir),
        work=work,
        tokenizer=AutoTokenizer.from_pretrained(model_dir),
    )
    course = make_course(args)
    bench.say(
        f"course: {len(course.skills)} skills, {len(course.split('train'))} train, "
        f"{len(course.split('probe'))} probe, {len(course.split('exam'))} exam items; work folder {work}"
    )
    results = run_all(args, bench, course)
    text = report(args, course, results, versions, estimate)
    total = time.perf_counter() - started
    load = bench.load_samples
    text += (
        f"\nWhole command: {total / 60:.1f} min (estimated {estimate['total']:.0f} min on 2 idle cores). "
        f"Load average (1 min) at every progress line: min {min(load):.2f}, "
        f"mean {statistics.fmean(load):.2f}, "
        f"max {max(load):.2f} (this benchmark counts ~{args.threads}; the rest is other work).\n"
    )
    print("\n" + text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**results, "wall_s": total}, indent=1, default=str))
    return 0


def run_all(args, bench: Bench, course) -> dict[str, Any]:
    """Every arm, seed after seed; returns the raw results the report reads."""
    from bench.scripted_teacher import ScriptedTeacher

    taught = {s.key for s in course.taught_skills}
    keep = {s.key for s in course.keep_skills}
    exam_items = course.split("exam")
    seeds = list(range(args.seeds))
    results: dict[str, Any] = {"seeds": seeds, "arms": {arm: {} for arm in ARMS}, "defaults": []}
    # A rerun with the same --json and --work reuses the baselines it measured for the same loop.
    previous = json.loads(args.json.read_text()) if args.json and args.json.exists() else {}

    replayed = keep_replay_arms(args.keep_replay)

    def measured(arm: str, seed: int, budget: int) -> dict[str, Any] | None:
        arms = previous.get("arms", {})
        same_loop = arms.get("d_loop", {}).get(str(seed), {}).get("tokens") == budget
        run = arms.get(arm, {}).get(str(seed))
        # Runs from before the option replayed keep records in (c') only, as its default does.
        same_keep = run and run.get("keep_replay", arm == "c_untargeted") == (arm in replayed)
        return run if same_loop and same_keep and "metrics" in run else None

    def checkpoint() -> None:  # the raw results so far, so a later failure keeps what was measured
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=1, default=str))

    if "d_loop" not in args.arms:  # (e) alone
        _run_defaults(args, bench, results, checkpoint)
        return results
    base = bench.exam(exam_items, None, args.student_tokens)
    base_metrics = exam_metrics(exam_items, base["correct"], taught, keep)
    bench.say(
        f"a_base: held-out {pct(base_metrics['held_out'])}%, training phrasings "
        f"{pct(base_metrics['trained_phrasing'])}%, "
        f"keep {fmt_counts({k: pct(v) for k, v in base_metrics['keep'].items()})} "
        f"({base['exam_s']:.0f} s)"
    )
    for s in seeds:
        results["arms"]["a_base"][s] = {"metrics": base_metrics, "wall_s": base["exam_s"], "train_s": 0.0}

    first_state = None
    for s in seeds:
        teacher = ScriptedTeacher(course, seed=s)
        loop, state = bench.run_loop(
            course,
            teacher,
            run_config(args, s),
            f"loop-s{s}",
            bench.main_training(s),
            base_exam=base["answers"],
            keep_from=first_state,
        )
        first_state = first_state or state
        correct = {k: a["correct"] for k, a in state.rounds[-1].exam["answers"].items()}
        loop["metrics"] = exam_metrics(exam_items, correct, taught, keep)
        loop["teacher_calls"] = dict(teacher.calls)
        results["arms"]["d_loop"][s] = loop
        checkpoint()
        budget = loop["tokens"]
        bench.say(
            f"d_loop seed {s}: held-out {pct(loop['metrics']['held_out'])}%, training phrasings "
            f"{pct(loop['metrics']['trained_phrasing'])}%; {len(loop['tries'])} tries, budget {budget} tokens"
        )
        for arm in BUDGETED:
            if arm not in args.arms:
                continue
            run = measured(arm, s, budget)
            if run is not None:
                results["arms"][arm][s] = run
                checkpoint()  # a later failure must not lose what was reused either
                bench.say(f"{arm} seed {s}: measured before (same loop, same budget), reused")
                continue
            started = time.perf_counter()
            made = None
            if arm == "c_untargeted":
                pool, made = bench.untargeted_pool(course, s, loop, state, with_keep=arm in replayed)
            else:
                share = keep_share_of(loop["tries"])
                pool = bench.baseline_pool(course, arm, s, (share, state) if arm in replayed else None)
            run = bench.budgeted_arm(course, arm, s, pool, budget)
            run["wall_s"] = time.perf_counter() - started
            run["made"] = made
            run["keep_replay"] = arm in replayed
            run["keep_records"] = sum(r["meta"]["source"] == "keep" for r in pool)
            run["metrics"] = exam_metrics(exam_items, run.pop("correct"), taught, keep)
            results["arms"][arm][s] = run
            checkpoint()
            bench.say(
                f"{arm} seed {s}: held-out {pct(run['metrics']['held_out'])}%, training phrasings "
                f"{pct(run['metrics']['trained_phrasing'])}% (train {run['train_s']:.0f} s, "
                f"in all {run['wall_s']:.0f} s)"
            )

    _run_defaults(args, bench, results, checkpoint)
    return results


def _run_defaults(args, bench: Bench, results: dict[str, Any], checkpoint) -> None:
    """Arm (e), the loop as shipped, on its own course, seed after seed (when asked for)."""
    defaults = results["defaults"]
    if "e_defaults" in args.arms:
        e_course = defaults_course(args)
        e_taught = {x.key for x in e_course.taught_skills}
        e_keep = {x.key for x in e_course.keep_skills}
        training = defaults_training(args)
        for s in range(args.defaults_first_seed, args.defaults_first_seed + args.defaults_seeds):
            config = defaults_config(args, s)
            run, state = bench.run_loop(e_course, bench.student, config, f"defaults-s{s}", training)
            last = state.rounds[-1].exam
            correct = {k: a["correct"] for k, a in last["answers"].items()}
            items = e_course.split("exam")
            run["metrics"] = exam_metrics(items, correct, e_taught, e_keep)
            run["base_metrics"] = exam_metrics(
                items, {k: a.correct for k, a in state.base_exam.items()}, e_taught, e_keep
            )
            # The trainer's own count: steps × batch records, whatever the records; answer tokens ≈.
            share = run["answer_tokens"] / run["tokens"] if run["tokens"] else 0.0
            run["tokens"] = run["engine_tokens"]
            run["answer_tokens"] = round(run["engine_tokens"] * share)
            run["seed"], run["student_tokens"] = s, config.student_max_new_tokens
            defaults.append(run)
            checkpoint()
            bench.say(
                f"e_defaults seed {s}: held-out {pct(run['metrics']['held_out'])}% (base "
                f"{pct(run['base_metrics']['held_out'])}%), {run['wall_s'] / 60:.1f} min"
            )


if __name__ == "__main__":
    raise SystemExit(main())
