#!/usr/bin/env python
"""Teaching benchmark: does the TeachLoop loop teach the student more than plain SFT at the same token budget?

One command, one process, one loaded student (the bundled SmolLM2-135M-Instruct; its LoRA adapters are
swapped by name), examined on the course's exam split, which no arm ever trains on. Arms, per seed:

- ``a_base``: the student as shipped;
- ``b_answers``: SFT on train-split questions -> ``Answer: <gold>`` only, items in a seeded random order;
- ``c_worked``: SFT on the gold worked solutions of train-split items, in a seeded random order;
- ``d_loop``: the full loop, ``tutor.core.runs.run_teaching`` (adaptive plan, explanations tailored to
  the student's wrong answers, verification gate, scoring by effect, verified generated items, replay),
  training each round with ``training.core.trainer.train`` continuing the previous round's adapter.

**Equal training-token budget.** The loop decides it: for each seed, the budget is the number of tokens
(chat template applied: the whole sequence the trainer processes, prompt and answer) in the SFT records of
all the loop's rounds. Arms b and c of that seed then take records in their seeded order while they fit
the budget (the record that crosses it is taken when that lands closer to the budget; see
:func:`fill_to_budget`), and train once from the base. Every arm trains the same number of epochs with
the same optimizer settings, so every arm processes the same number of tokens (within half a record);
the loss-bearing (answer) tokens differ, and the report gives both.

The teacher of the loop arm: SmolLM2-135M cannot teach itself arithmetic (most of its explanations fail
the answer gate), so the main arm uses ``bench/scripted_teacher.py``, a deterministic oracle teacher that
writes the packs' gold worked solutions and generates new pack items: a stand-in for a strong teacher
(say a 70B model behind vLLM). The SmolLM2-as-its-own-teacher loop is run too (``--smol-seeds``), at the
default ``RunConfig``, as the honest measure of that configuration and of one round's wall time at the
default settings. A small run on a course imported from BIG-bench (``--bigbench``) shows the loop on an
external multiple-choice set.

Run ``python bench/teaching.py --help``; ``--quick`` is a 4-minute smoke run.
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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from bench.machine import describe as machine  # noqa: E402 (after the path is set)

ARMS = ("a_base", "b_answers", "c_worked", "d_loop")
# Not run by default: an ablation of the loop's training schedule (``--arms ...,e_loop_data``).
OPTIONAL_ARMS = ("e_loop_data",)
ALL_ARMS = ARMS + OPTIONAL_ARMS  # in report order
ARM_LABELS = {
    "a_base": "(a) base student",
    "b_answers": "(b) SFT question → answer",
    "c_worked": "(c) SFT gold worked solutions, random order",
    "d_loop": "(d) TeachLoop loop, scripted teacher",
    "e_loop_data": "(e) the loop's new records, trained once like (c)",
}
DEFAULT_SKILLS = ("add_2d", "add_3d", "sub_2d", "count_short")
DEFAULT_OUT = ROOT / "docs" / "benchmarks" / "teaching-report.md"


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


# ---------------------------------------------------------------- the bench


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

    # -- training and examining ---------------------------------------------------------------

    def train(self, records: list[dict[str, Any]], out: Path, seed: int, parent: str | None = None) -> dict:
        from training.core.config import TrainConfig
        from training.core.trainer import train

        a = self.args
        config = TrainConfig(
            base_model=str(self.model_dir),
            parent_adapter=parent,
            learning_rate=a.lr,
            lora_r=a.lora_r,
            lora_alpha=2 * a.lora_r,
            batch_size=a.batch_size,
            num_epochs=float(a.epochs),
            warmup_ratio=0.03,
            seed=seed,
            max_seq_length=512,
            checkpoint_every=100_000,
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
            "tokens": sum(self.tokens_of(r) for r in records),
            "answer_tokens": sum(self.answer_tokens_of(r) for r in records),
            "engine_tokens": result.metrics.get("tokens"),
            "steps": result.metrics.get("steps"),
            "final_loss": result.metrics.get("final_loss"),
        }

    def exam(self, course, adapter: str | None, max_new_tokens: int) -> dict[str, Any]:
        from training.core.llm.base import GenerationParams
        from tutor.core.courses.grading import grade
        from tutor.core.runs import prompts

        items = list(course.split("exam"))
        started = time.perf_counter()
        params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0, seed=0)
        texts = self.student.generate([prompts.student_prompt(e) for e in items], params, adapter=adapter)
        answers = {e.key: grade(e, g.text).correct for e, g in zip(items, texts, strict=True)}
        per_skill = {
            s.key: statistics.fmean([answers[e.key] for e in items if e.skill == s.key])
            for s in course.skills
            if any(e.skill == s.key for e in items)
        }
        return {
            "accuracy": statistics.fmean(answers.values()),
            "per_skill": per_skill,
            "exam_s": time.perf_counter() - started,
            "texts": {e.key: g.text for e, g in zip(items, texts, strict=True)},
        }

    # -- the loop arm -------------------------------------------------------------------------

    def run_loop(self, course, teacher, config, tag: str, base_exam: dict | None = None) -> dict[str, Any]:
        """One ``run_teaching`` run; returns its results, per-round timings and its training-token count."""
        from tutor.core.runs import STEPS, RunState, run_teaching
        from tutor.core.runs.state import Answer

        state_path = self.work / tag / "state.json"
        if base_exam is not None and not state_path.exists():
            # The base model's exam answers at the same settings were just measured (arm a): the run's cache
            # of them is filled in, so the run does not examine the base model a second time.
            cached = {k: Answer(**v) for k, v in base_exam.items()}
            state = RunState(
                config=config,
                course=course.key,
                teacher=teacher.name,
                student=self.student.name,
                base_exam=cached,
            )
            state.save(state_path)
        trained: list[dict] = []
        marks: dict[tuple[int, str], float] = {}

        def train_fn(records, index, parent):
            self.say(f"{tag} round {index}: training on {len(records)} records")
            result = self.train(records, self.work / tag / f"round{index}", config.seed, parent)
            self.say(
                f"{tag} round {index}: {result['tokens']} tokens, {result['steps']} steps, "
                f"{result['train_s']:.0f} s, loss {result['final_loss']}"
            )
            trained.append({"round": index, **result})
            return result["adapter"]

        def progress(step, index, info):
            marks[(index, f"{step}:{info['status']}")] = time.perf_counter()
            if info["status"] == "done":
                shown = {k: v for k, v in info.items() if k not in ("status", "accuracy", "items_per_skill")}
                if step == "plan":
                    shown["items_per_skill"] = {k: v for k, v in info["items_per_skill"].items() if v}
                if step in ("diagnose",):
                    shown["accuracy"] = info["accuracy"]
                self.say(f"{tag} round {index} {step}: {shown}")

        started = time.perf_counter()
        state = run_teaching(
            course, teacher, self.student, config, state_path, train_fn=train_fn, progress=progress
        )
        wall = time.perf_counter() - started
        rounds = []
        for r in state.rounds:
            t0, t1 = marks.get((r.index, "diagnose:started")), marks.get((r.index, "reexamine:done"))
            steps = {
                s: marks[(r.index, f"{s}:done")] - marks[(r.index, f"{s}:started")]
                for s in STEPS
                if (r.index, f"{s}:done") in marks
            }
            rounds.append(
                {
                    "round": r.index,
                    "wall_s": (t1 - t0) if t0 and t1 else None,
                    "steps_s": steps,
                    "probe": r.probe_accuracy,
                    "plan": {k: v for k, v in r.plan.get("items_per_skill", {}).items() if v},
                    "levels": r.plan.get("difficulty_per_skill", {}),
                    "stretch": r.plan.get("stretch_per_skill", {}),
                    "explained": len(r.explanations),
                    "passed_gate": sum(x.passed_gate for x in r.explanations),
                    "helped": sum(x.helped for x in r.explanations),
                    "generated": len(r.generated),
                    "generated_kept": sum(g.kept for g in r.generated),
                    "sft_records": len(r.sft_records),
                    "replayed": r.replayed,
                    "exam": r.exam.get("accuracy"),
                    "exam_per_skill": r.exam.get("per_skill", {}),
                    "forgetting": r.exam.get("forgetting", {}),
                    "agreement": r.exam.get("agreement"),
                    "general": (r.exam.get("general") or {}).get("accuracy"),
                    "general_base": (r.exam.get("general") or {}).get("base_accuracy"),
                    "warnings": r.warnings,
                }
            )
        last = state.rounds[-1].exam
        # Every record the loop made, without the replayed copies: the data of arm e_loop_data.
        new_records = [r for rnd in state.rounds for r in rnd.sft_records if "replayed_from" not in r["meta"]]
        return {
            "wall_s": wall,
            "rounds": rounds,
            "accuracy": last["accuracy"],
            "new_records": new_records,
            "per_skill": last["per_skill"],
            "base_accuracy": last["base_accuracy"],
            "trained": trained,
            "tokens": sum(t["tokens"] for t in trained),
            "answer_tokens": sum(t["answer_tokens"] for t in trained),
            "records": sum(t["records"] for t in trained),
            "adapter": state.adapter_name,
        }

    # -- the baseline arms --------------------------------------------------------------------

    def run_loop_data(self, course, records: list[dict[str, Any]], seed: int) -> dict[str, Any]:
        """Arm e: the loop's own new records (explanations that helped, generated items; no replayed
        copies), shuffled, trained once from the base like (c). Against (d) it separates what the loop
        chose to train on from how it trained (two rounds, the second continuing the first's adapter)."""
        records = list(records)
        random.Random(f"{seed}:e_loop_data").shuffle(records)
        name = f"e_loop_data-s{seed}"
        result = self.train(records, self.work / name, seed)
        self.student.load_adapter(name, result["adapter"])
        exam = self.exam(course, name, self.args.student_tokens)
        self.say(
            f"e_loop_data seed {seed}: {len(records)} records, {result['tokens']} tokens; exam "
            f"{exam['accuracy']:.3f} {fmt_skills(exam['per_skill'])}"
        )
        return {**result, "accuracy": exam["accuracy"], "per_skill": exam["per_skill"]}

    def baseline_records(self, course, kind: str, seed: int) -> list[dict[str, Any]]:
        from tutor.core.courses.course import training_safe
        from tutor.core.runs import prompts

        items = list(training_safe(course.split("train")))
        random.Random(f"{seed}:{kind}").shuffle(items)
        out = []
        for e in items:
            answer = f"Answer: {e.answer}" if kind == "b_answers" else e.solution
            out.append(
                {
                    "messages": [*prompts.student_prompt(e), {"role": "assistant", "content": answer}],
                    "meta": {"item": e.key, "skill": e.skill},
                }
            )
        return out

    def run_baseline(self, course, kind: str, seed: int, budget: int) -> dict[str, Any]:
        pool = self.baseline_records(course, kind, seed)
        counts = [self.tokens_of(r) for r in pool]
        taken, total = fill_to_budget(pool, counts, budget)
        records = [pool[i] for i in taken]
        cycled = len(taken) > len(pool)
        per_skill: dict[str, int] = {}
        for r in records:
            per_skill[r["meta"]["skill"]] = per_skill.get(r["meta"]["skill"], 0) + 1
        self.say(
            f"{kind} seed {seed}: {len(records)} records, {total} tokens (budget {budget})"
            + (" — the train split was cycled" if cycled else "")
        )
        result = self.train(records, self.work / f"{kind}-s{seed}", seed)
        name = f"{kind}-s{seed}"
        self.student.load_adapter(name, result["adapter"])
        exam = self.exam(course, name, self.args.student_tokens)
        self.say(
            f"{kind} seed {seed}: exam {exam['accuracy']:.3f} {fmt_skills(exam['per_skill'])} "
            f"(train {result['train_s']:.0f} s, exam {exam['exam_s']:.0f} s)"
        )
        return {
            **result,
            "accuracy": exam["accuracy"],
            "per_skill": exam["per_skill"],
            "items_per_skill": per_skill,
            "cycled": cycled,
        }


def fmt_skills(per_skill: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.2f}" for k, v in per_skill.items())


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
    """The packs' skills named in ``--skills``, generated as the packs generate them (same items per seed).

    Only the named skills' families are generated: asking the whole pack for 150 train items per skill
    fails on ``add_1d``, which has fewer distinct items than that.
    """
    from tutor.core.courses import packs
    from tutor.core.courses.course import Course

    sizes = {"train": args.train_per_skill, "probe": args.probe_per_skill, "exam": args.exam_per_skill}
    parts = []
    for key, name, families in (
        ("arithmetic", "Multi-digit arithmetic", packs.ARITHMETIC_FAMILIES),
        ("counting", "Counting in lists", packs.COUNTING_FAMILIES),
    ):
        chosen = tuple(_restricted(f, args.skills, args.flat) for f in families if f.skill.key in args.skills)
        if chosen:
            parts.append(packs._build(key, name, chosen, args.course_seed, sizes))
    unknown = sorted(set(args.skills) - {s.key for p in parts for s in p.skills})
    if unknown:
        raise SystemExit(f"unknown skill(s) {unknown}")
    whole = (
        Course(
            key="bench",
            name="Arithmetic and counting",
            skills=tuple(s for p in parts for s in p.skills),
            exercises=tuple(e for p in parts for e in p.exercises),
        )
        if len(parts) > 1
        else parts[0]
    )
    return whole


def _restricted(family, skills: Sequence[str], flat: bool):
    """A pack family whose skill keeps only the prerequisites among ``skills`` (none when ``flat``)."""
    kept = () if flat else tuple(p for p in family.skill.prerequisites if p in skills)
    return replace(family, skill=replace(family.skill, prerequisites=kept))


def bigbench_course(path: Path, exam: int, probe: int, train: int, seed: int):
    from tutor.core.courses.course import Course
    from tutor.core.courses.formats import import_bigbench

    full = import_bigbench(
        path,
        course_key="bigbench",
        skill_key=path.stem.replace("_", "-"),
        skill_name=path.stem.replace("_", " "),
        seed=seed,
    )
    picked = [*full.split("exam")[:exam], *full.split("probe")[:probe], *full.split("train")[:train]]
    return Course(key=full.key, name=full.name, skills=full.skills, exercises=tuple(picked))


def fmt_levels(r: dict) -> str:
    """Planned level per taught skill, with the items drawn above it: "add_2d 1 (+4 above)"."""
    stretch = r.get("stretch", {})
    return ", ".join(
        f"{k} {v}" + (f" (+{stretch[k]} above)" if stretch.get(k) else "")
        for k, v in r["levels"].items()
        if k in r["plan"]
    )


def run_config(args, seed: int, **overrides):
    from tutor.core.runs import RunConfig

    settings = {
        "rounds": args.rounds,
        "plan": "adaptive",
        "plan_budget": args.plan_budget,
        "explain_budget": args.explain_budget,
        "generate_budget": args.generate_budget,
        "generate_k": args.generate_k,
        "siblings": args.siblings,
        "seed": seed,
        "levels": args.levels,
        "stretch_share": args.stretch_share,
        "confidence_z": args.confidence_z,
        "replay_share": args.replay_share,
        "student_max_new_tokens": args.student_tokens,
        "teacher_max_new_tokens": 160,
    }
    settings.update(overrides)
    return RunConfig(**settings)


# ---------------------------------------------------------------- report


def pct(x: float | None) -> str:
    return "—" if x is None or x != x else f"{100 * x:.1f}"


def report(args, course, results: dict[str, Any], wall: float, load: list[float], versions: str) -> str:
    from tutor.core.runs.planner import UNLOCK_THRESHOLD

    seeds = results["seeds"]
    skills = [s.key for s in course.skills]
    acc = {
        arm: [results["arms"][arm][s]["accuracy"] for s in seeds]
        for arm in ALL_ARMS
        if results["arms"].get(arm)
    }
    base = statistics.fmean(acc["a_base"])
    lines = [
        f"Command: `python bench/teaching.py {' '.join(sys.argv[1:])}`",
        f"Date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"Machine: {machine()}; torch threads: {args.threads}; {wall / 60:.1f} min from start to this table "
        "(the SmolLM2-teacher run, which goes first, included; the whole command's time is at the end)",
        f"Load average (1 min) sampled at every progress line: min {min(load):.2f}, mean "
        f"{statistics.fmean(load):.2f}, max {max(load):.2f} (this benchmark counts ~{args.threads}; "
        "the rest is other work on the shared machine)",
        f"Versions: {versions}",
        f"Student: bundled SmolLM2-135M-Instruct (GGUF Q4_1 de-quantized to float32); LoRA r={args.lora_r} "
        f"alpha={2 * args.lora_r} on all projections, lr {args.lr}, batch {args.batch_size}, "
        f"{args.epochs} epoch(s), linear schedule, warmup 3%, completion-only loss",
        f"Course: skills {', '.join(skills)} (packs seed {args.course_seed}; prerequisites "
        + (
            "removed (--flat)"
            if args.flat
            else "of the packs, restricted to these skills: "
            + "; ".join(f"{s.key} ← {', '.join(s.prerequisites)}" for s in course.skills if s.prerequisites)
        )
        + f"); per skill {args.train_per_skill} train, {args.probe_per_skill} probe, "
        f"{args.exam_per_skill} exam items; exam = {len(course.split('exam'))} items, greedy, "
        f"{args.student_tokens} new tokens at most",
        f"Loop settings: rounds {args.rounds}, plan_budget {args.plan_budget}, "
        f"explain_budget {args.explain_budget}, "
        f"generate_budget {args.generate_budget} × k {args.generate_k}, "
        f"siblings {args.siblings}, replay_share {args.replay_share}, levels {args.levels}"
        + (f" (stretch_share {args.stretch_share})" if args.levels == "stretch" else "")
        + ", "
        f"student_max_new_tokens {args.student_tokens}; planner unlock threshold {UNLOCK_THRESHOLD}, "
        f"confidence_z {args.confidence_z} (0: probe accuracies taken as exact)",
        f"Seeds: {', '.join(map(str, seeds))} (the seed sets the loop's plan and sampling, the baselines' "
        "record order, and training; the course and its exam are the same for every seed and arm)",
        "",
        "### Exam accuracy (%), mean ± sample standard deviation over seeds",
        "",
        "| arm | mean ± sd | min–max | gain over (a) | "
        + " | ".join(skills)
        + " | trained tokens (all / answer) |",
        "|---|---:|---:|---:|" + "---:|" * len(skills) + "---:|",
    ]
    for arm in ALL_ARMS:
        if arm not in acc:
            continue
        runs = [results["arms"][arm][s] for s in seeds]
        m, sd = mean_spread(acc[arm])
        per = [statistics.fmean([r["per_skill"].get(k, 0.0) for r in runs]) for k in skills]
        all_tokens = statistics.fmean([r.get("tokens", 0) for r in runs])
        answer_tokens = statistics.fmean([r.get("answer_tokens", 0) for r in runs])
        tok = "0" if arm == "a_base" else f"{all_tokens:.0f} / {answer_tokens:.0f}"
        lines.append(
            f"| {ARM_LABELS[arm]} | {pct(m)} ± {pct(sd)} | "
            f"{pct(min(acc[arm]))}–{pct(max(acc[arm]))} | "
            f"{100 * (m - base):+.1f} | " + " | ".join(pct(p) for p in per) + f" | {tok} |"
        )
    lines += [
        "",
        "Per seed (exam %): "
        + "; ".join(f"{ARM_LABELS[arm].split(' ')[0]} " + ", ".join(pct(v) for v in acc[arm]) for arm in acc),
        "",
    ]

    if "d_loop" in acc:
        lines += [
            "### The loop, round by round",
            "",
            "| seed | round | plan (items per skill) | levels | explained / through gate / helped | "
            "generated kept / written | SFT records (replayed) | tokens | probe before | exam after | "
            "general probe (base) | round wall (s) | of which train (s) |",
            "|---|---|---|---|---|---|---|---:|---|---:|---:|---:|---:|",
        ]
        for s in seeds:
            loop = results["arms"]["d_loop"][s]
            trained = {t["round"]: t for t in loop["trained"]}
            for r in loop["rounds"]:
                t = trained.get(r["round"], {})
                lines.append(
                    f"| {s} | {r['round']} | {fmt_counts(r['plan'])} | "
                    f"{fmt_levels(r)} | "
                    f"{r['explained']} / {r['passed_gate']} / {r['helped']} | "
                    f"{r['generated_kept']} / {r['generated']} | {r['sft_records']} ({r['replayed']}) | "
                    f"{t.get('tokens', 0)} | {fmt_skills(r['probe'])} | "
                    f"{pct(r['exam'])} | {pct(r.get('general'))} ({pct(r.get('general_base'))}) | "
                    f"{r['wall_s']:.0f} | {t.get('train_s', 0):.0f} |"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


def fmt_counts(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "—"


def targets(results, seeds) -> list[str]:
    acc = {arm: [results["arms"][arm][s]["accuracy"] for s in seeds] for arm in ARMS}
    (a, _), (b, sb), (c, sc), (d, sd) = (mean_spread(acc[x]) for x in ARMS)
    gain_b, gain_d = b - a, d - a
    spread = max(sb, sc, sd)
    rows = [
        ("≥ +40 points of mean exam accuracy over the base", f"{100 * gain_d:+.1f} points", gain_d >= 0.40),
        (
            "at least twice the gain of arm (b)",
            f"(d) {100 * gain_d:+.1f} vs (b) {100 * gain_b:+.1f}",
            gain_d > 1e-9 and gain_d >= 2 * gain_b,
        ),
        (
            "above arm (c) by more than the spread across seeds",
            f"(d) − (c) = {100 * (d - c):+.1f} points; largest sd of (b), (c), (d) {100 * spread:.1f}",
            d - c > spread + 1e-9,
        ),
    ]
    return (
        ["### Against the issue's targets", "", "| target | measured | met? |", "|---|---|---|"]
        + [f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in rows]
        + [""]
    )


def smol_section(smol: list[dict], args) -> list[str]:
    lines = [
        "### SmolLM2-135M as its own teacher (default RunConfig)",
        "",
        f"Default `RunConfig` (plan_budget 16, explain_budget 8, generate_budget 4 × k 2, siblings 2, "
        f"student_max_new_tokens 48, teacher_max_new_tokens 160), {args.smol_rounds} round(s); "
        "the bundled "
        "model teaches itself (one loaded copy: teacher calls use the base weights, student calls the "
        "adapter). Exam at 48 new tokens, so its base accuracy differs from the table above.",
        "",
        "| seed | round | explained / through gate | generated kept / written | SFT records | "
        "exam (base) % | round wall (min) | "
        "diagnose / plan / explain / score / generate / build / train / reexamine (s) |",
        "|---|---|---|---|---|---|---:|---|",
    ]
    for run in smol:
        for r in run["rounds"]:
            steps = " / ".join(
                f"{r['steps_s'].get(k, 0):.0f}"
                for k in (
                    "diagnose",
                    "plan",
                    "explain",
                    "score",
                    "generate",
                    "build_data",
                    "train",
                    "reexamine",
                )
            )
            lines.append(
                f"| {run['seed']} | {r['round']} | {r['explained']} / {r['passed_gate']} | "
                f"{r['generated_kept']} / {r['generated']} | {r['sft_records']} | {pct(r['exam'])} "
                f"({pct(run['base_accuracy'])}) | {r['wall_s'] / 60:.1f} | {steps} |"
            )
    gate_notes = [x for run in smol for x in run.get("gate_examples", [])][:3]
    if gate_notes:
        lines += ["", "What the gate saw (first explanations, clipped):", ""]
        lines += [f"- `{n}`" for n in gate_notes]
    return [*lines, ""]


def bigbench_section(bb: dict) -> list[str]:
    r = bb["rounds"][0]
    likelihood = bb["config"]["choice_scoring"] == "likelihood"
    answered_by = "the likeliest option" if likelihood else "a generated answer"
    return [
        "### A course imported from BIG-bench",
        "",
        f"`{bb['path']}` imported with `tutor.core.courses.formats.import_bigbench` (one multiple-choice "
        f"skill; seeded split), then cut to {bb['sizes']} items (exam / probe / train); scripted teacher "
        f"(stack-check explanations and generated sequences, verified by a second teacher answer); "
        f"1 seed, 1 round, multiple choice answered by {bb['config']['choice_scoring']} "
        f"({answered_by}), "
        f"plan_budget {bb['config']['plan_budget']}, explain_budget {bb['config']['explain_budget']}, "
        f"generate {bb['config']['generate_budget']} × {bb['config']['generate_k']}.",
        "",
        "| base exam % | exam after % | probe before | explained / gate / helped | "
        "generated kept / written | SFT records | tokens | round wall (min) |",
        "|---:|---:|---|---|---|---:|---:|---:|",
        f"| {pct(bb['base_accuracy'])} | {pct(bb['accuracy'])} | {fmt_skills(r['probe'])} | "
        f"{r['explained']} / {r['passed_gate']} / {r['helped']} | "
        f"{r['generated_kept']} / {r['generated']} | {r['sft_records']} | {bb['tokens']} | "
        f"{r['wall_s'] / 60:.1f} |",
        "",
    ]


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3)")
    p.add_argument("--rounds", type=int, default=2, help="loop rounds (default 2)")
    p.add_argument(
        "--skills",
        default=",".join(DEFAULT_SKILLS),
        help="comma-separated skills of the arithmetic and counting packs "
        f"(default {','.join(DEFAULT_SKILLS)})",
    )
    p.add_argument(
        "--flat", action="store_true", help="drop every prerequisite (ablation of the planner's gating)"
    )
    p.add_argument("--course-seed", type=int, default=0)
    p.add_argument("--train-per-skill", type=int, default=150)
    p.add_argument("--probe-per-skill", type=int, default=8)
    p.add_argument("--exam-per-skill", type=int, default=24)
    p.add_argument("--plan-budget", type=int, default=24)
    p.add_argument("--explain-budget", type=int, default=8)
    p.add_argument("--generate-budget", type=int, default=16)
    p.add_argument("--generate-k", type=int, default=8)
    p.add_argument("--siblings", type=int, default=1)
    p.add_argument(
        "--levels",
        choices=("window", "stretch"),
        default="window",
        help="levels a skill's practice is drawn from (RunConfig.levels): 'window' (default), "
        "evenly over the planned level and every level above; 'stretch', the planned level "
        "with --stretch-share of it from the level above",
    )
    p.add_argument(
        "--stretch-share",
        type=float,
        default=0.25,
        help="with --levels stretch: share of a skill's practice drawn from the level above the "
        "planned one (default 0.25, RunConfig's; 0: the planned level only)",
    )
    p.add_argument(
        "--replay-share",
        type=float,
        default=0.3,
        help="share of each round's SFT set replayed from earlier rounds (RunConfig.replay_share; "
        "default 0.3)",
    )
    p.add_argument(
        "--confidence-z",
        type=float,
        default=1.96,
        help="standard errors of probe noise the adaptive plan allows for (RunConfig.confidence_z; "
        "default 1.96; 0: probe accuracies taken as exact, the rule before it existed)",
    )
    p.add_argument(
        "--student-tokens",
        type=int,
        default=80,
        help="max new tokens of every student answer (the gold solutions need up to 77)",
    )
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch CPU threads (default 2, for 2 cores and nothing else running; on shared "
        "cores use 1: 2 threads ran 3x slower under load)",
    )
    p.add_argument(
        "--smol-seeds", type=int, default=1, help="seeds of the SmolLM2-teaches-itself run (0: skip)"
    )
    p.add_argument("--smol-rounds", type=int, default=1)
    p.add_argument(
        "--bigbench",
        type=Path,
        default=Path("/work/shared/data/bigbench/valid_parentheses.json"),
        help="BIG-bench task file for the imported-course run ('' to skip)",
    )
    p.add_argument(
        "--bigbench-sizes", default="32,16,200", help="exam,probe,train items kept (default 32,16,200)"
    )
    p.add_argument(
        "--bigbench-scoring",
        choices=("likelihood", "generate"),
        default="likelihood",
        help="how the student answers the BIG-bench items (RunConfig.choice_scoring): the likeliest "
        "option (default) or a generated answer graded by letter or option text",
    )
    p.add_argument(
        "--bigbench-only",
        action="store_true",
        help="run only the BIG-bench course (no SmolLM2-teacher run, no arms)",
    )
    p.add_argument(
        "--arms",
        default=",".join(ARMS),
        help="arms to run (default the four of the issue; the base and the loop always run, b and c "
        "are optional; e_loop_data, not run by default, trains the loop's new records once from "
        "the base like c)",
    )
    p.add_argument("--quick", action="store_true", help="a few-minute smoke run: tiny sizes, 1 seed, 1 round")
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(
            os.environ.get("TEACHLOOP_TEST_MODEL_CACHE") or Path(tempfile.gettempdir()) / "tl-bench-cache"
        ),
        help="where the bundled model's safetensors copy is kept",
    )
    p.add_argument(
        "--work", type=Path, default=None, help="folder for run states and adapters (default: a temp folder)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"write the markdown report here (default {DEFAULT_OUT.relative_to(ROOT)}, except with "
        "--quick, --bigbench-only or a non-default --arms: then only printed)",
    )
    p.add_argument("--json", type=Path, default=None, help="write the raw results here")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.rounds = 1, 1
        args.train_per_skill, args.probe_per_skill, args.exam_per_skill = 40, 3, 3
        args.plan_budget, args.explain_budget, args.generate_budget, args.generate_k = 6, 4, 2, 2
        args.smol_seeds, args.bigbench_sizes = min(args.smol_seeds, 1), "6,4,30"
    args.skills = [s.strip() for s in args.skills.split(",") if s.strip()]
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if args.out is None and not (args.quick or args.bigbench_only) and args.arms == list(ARMS):
        args.out = DEFAULT_OUT  # a full run's report goes to docs/ (the discussion quotes it)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    import peft
    import torch
    import transformers
    import trl

    from bench.scripted_teacher import ScriptedTeacher

    versions = (
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"peft {peft.__version__}, trl {trl.__version__}"
    )
    work = args.work or Path(tempfile.mkdtemp(prefix="tl-teachbench-"))
    work.mkdir(parents=True, exist_ok=True)
    student, model_dir = load_student(args.cache, args.threads)
    from transformers import AutoTokenizer

    bench = Bench(
        args=args,
        student=student,
        model_dir=Path(model_dir),
        work=work,
        tokenizer=AutoTokenizer.from_pretrained(model_dir),
    )
    course = make_course(args)
    bench.say(
        f"course {[s.key for s in course.skills]}: {len(course.split('train'))} train, "
        f"{len(course.split('probe'))} probe, {len(course.split('exam'))} exam items; "
        f"work folder {work}"
    )
    seeds = list(range(args.seeds))
    results: dict[str, Any] = {"seeds": seeds, "arms": {arm: {} for arm in ALL_ARMS}}

    def save(text: str) -> None:  # after every part, so a later failure keeps what was measured
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)

    # SmolLM2 teaching itself runs first: it fails fast if anything is off, and its round is the timing
    # of one round at the default settings.
    smol_runs = []
    for s in range(0 if args.bigbench_only else args.smol_seeds):
        from tutor.core.runs import RunConfig, RunState

        try:
            run = bench.run_loop(course, student, RunConfig(rounds=args.smol_rounds, seed=s), f"smol-s{s}")
        except Exception as exc:  # reported, not fatal: the main comparison does not depend on it
            bench.say(f"smol-s{s} failed: {exc!r}")
            continue
        state = RunState.load(work / f"smol-s{s}" / "state.json")
        run["seed"] = s
        run["gate_examples"] = [
            f"{x.gate_reason or 'passed'}: {x.text[:140]!r}" for x in state.rounds[0].explanations
        ]
        smol_runs.append(run)
    results["smol"] = smol_runs

    text = ""
    if not args.bigbench_only:
        text = main_comparison(args, bench, course, seeds, results, smol_runs, versions, started)
        save(text)

    if args.bigbench and str(args.bigbench) not in ("", "."):
        try:
            sizes = [int(x) for x in args.bigbench_sizes.split(",")]
            bb_course = bigbench_course(args.bigbench, *sizes, seed=args.course_seed)
            bb_config = run_config(args, 0, rounds=1, choice_scoring=args.bigbench_scoring)
            bb = bench.run_loop(bb_course, ScriptedTeacher(bb_course, seed=0), bb_config, "bigbench")
            bb.update(path=str(args.bigbench), sizes="/".join(map(str, sizes)), config=bb_config.to_dict())
            results["bigbench"] = bb
            text += "\n".join(bigbench_section(bb))
        except Exception as exc:
            bench.say(f"bigbench failed: {exc!r}")
            text += f"\nThe BIG-bench run failed: {exc!r}\n"

    total = time.perf_counter() - started
    main_part = (
        f" (up to the main table {results['main_wall_s'] / 60:.1f} min)" if "main_wall_s" in results else ""
    )
    text += (
        f"\nWhole command: {total / 60:.1f} min{main_part}. "
        f"Load average over the run: mean {statistics.fmean(bench.load_samples):.2f}, "
        f"max {max(bench.load_samples):.2f}.\n"
    )
    print("\n" + text)
    save(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        for arm in results["arms"].values():  # exam texts are bulky; the states in --work keep them
            for r in arm.values():
                r.pop("texts", None)
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


def main_comparison(
    args,
    bench: Bench,
    course,
    seeds: list[int],
    results: dict[str, Any],
    smol_runs: list[dict],
    versions: str,
    started: float,
) -> str:
    """Arms (a)-(d) over the seeds; returns the report so far (tables, targets, the SmolLM2 run)."""
    from bench.scripted_teacher import ScriptedTeacher

    base = bench.exam(course, None, args.student_tokens)
    bench.say(f"a_base: exam {base['accuracy']:.3f} {fmt_skills(base['per_skill'])} ({base['exam_s']:.0f} s)")
    from tutor.core.courses.grading import grade

    base_answers = {}
    for e in course.split("exam"):
        graded = grade(e, base["texts"][e.key])
        base_answers[e.key] = {
            "item": e.key,
            "text": base["texts"][e.key],
            "extracted": graded.extracted,
            "correct": graded.correct,
        }
    for s in seeds:
        results["arms"]["a_base"][s] = {"accuracy": base["accuracy"], "per_skill": base["per_skill"]}

    for s in seeds:
        teacher = ScriptedTeacher(course, seed=s)
        loop = bench.run_loop(course, teacher, run_config(args, s), f"loop-s{s}", base_exam=base_answers)
        loop["teacher_calls"] = dict(teacher.calls)
        results["arms"]["d_loop"][s] = loop
        bench.say(
            f"d_loop seed {s}: exam {loop['accuracy']:.3f} {fmt_skills(loop['per_skill'])}; "
            f"{loop['records']} records, {loop['tokens']} tokens over {args.rounds} round(s)"
        )
        for kind in ("b_answers", "c_worked"):
            if kind in args.arms:
                results["arms"][kind][s] = bench.run_baseline(course, kind, s, loop["tokens"])
        if "e_loop_data" in args.arms:
            results["arms"]["e_loop_data"][s] = bench.run_loop_data(course, loop["new_records"], s)
        loop.pop("new_records")  # bulky; the run's state file keeps them

    results["main_wall_s"] = time.perf_counter() - started
    text = report(args, course, results, results["main_wall_s"], bench.load_samples, versions)
    if all(results["arms"][arm] for arm in ARMS):
        text += "\n".join(targets(results, seeds)) + "\n"
    if smol_runs:
        text += "\n".join(smol_section(smol_runs, args))
    return text


if __name__ == "__main__":
    raise SystemExit(main())
