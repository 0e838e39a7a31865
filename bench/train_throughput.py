#!/usr/bin/env python
"""Training throughput: TeachLoop's ``train()`` against a plain transformers ``Trainer`` + peft LoRA.

One command trains the same model on the same short, mixed-length chat records twice, each arm in its own
subprocess so peak memory and warm caches don't mix:

- ``engine``:   ``training.core.trainer.train()`` as it ships (TRL SFT, completion-only loss, padding-free
  batches);
- ``baseline``: ``transformers.Trainer`` on a peft LoRA model with the same rank, alpha, dropout, target
  modules, learning rate, schedule, batch size and steps; batches padded to the longest record in the batch,
  labels = input ids with padding masked (loss on every real token).

Reported per arm:
- real tokens/s: non-padding tokens of the records the model was fed, counted by a forward pre-hook on
  the causal-LM module (attention_mask sum, or every token of a padding-free row plus, where the row
  holds a prefix its records share once, that prefix for every other record), over the training loop
  from the end of step 1 to the end of the last step (step 1 is warm-up; data loading between steps
  counts, model loading and saving don't);
- wall: the whole arm from the call of ``train()`` / model loading to the saved adapter (imports excluded);
- peak RSS: the arm process's VmHWM (read from /proc, not ru_maxrss, which a vfork-spawned child can inherit
  from its parent); peak CUDA memory allocated/reserved on a GPU;
- on a GPU, MFU = model FLOPs/s over the card's peak. Model FLOPs per real token = 4·N_base + 6·N_lora: the
  frozen base does a forward (2·N) and a backward for the activation gradients only (2·N; no weight
  gradients), the LoRA weights forward + both backward GEMMs (6·N_lora). N_base counts every base weight
  once (the tied embedding once, as the LM-head GEMM; the embedding lookup itself is free). Attention-score
  FLOPs (~4·layers·d·context per token, <1% at these lengths) and activation-checkpointing recomputation
  (hardware, not model, FLOPs) are left out. The usual 6·N figure overstates LoRA work by 1.5x; it is given
  too, labelled, for comparison with papers that use it.

The data: seeded worked-arithmetic explanations of varied length (``make_records``), like those teaching
produces. A model folder without weights (config.json + tokenizer only) is filled with seeded random weights
of that shape, so a GPU machine that cannot receive the real model still measures the same architecture.

Run ``python bench/train_throughput.py --help``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from bench.machine import describe as machine  # noqa: E402 (after the path is set)
from training.core.config import PRECISIONS  # noqa: E402

H100_PEAK_BF16_TFLOPS = 989.0  # H100 SXM, dense bf16, no sparsity (NVIDIA datasheet)
ROUND_RECORDS, ROUND_BATCH = 200, 8


# --- data -----------------------------------------------------------------------------------


def make_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` chat records: an arithmetic question and a worked answer, from a one-line fact to a few
    column steps."""
    rng = random.Random(seed)
    kinds = [
        _add_small,
        _add_small,
        _add_small,
        _multiply_small,
        _multiply_small,
        _add_columns,
        _add_columns,
        _subtract,
        _multiply,
    ]
    records = []
    for _ in range(n):
        question, answer = rng.choice(kinds)(rng)
        records.append(
            {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
        )
    return records


def _ask(rng: random.Random, expression: str) -> str:
    return rng.choice(
        ["What is {}?", "Compute {}.", "{} = ?", "Work out {}, please.", "What does {} equal?"]
    ).format(expression)


def _add_small(rng):
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    answer = rng.choice(
        [
            f"{a}+{b} = {a + b}.",
            f"Start at {a} and count on {b}: {a + b}. So {a}+{b} = {a + b}.",
            f"{a} plus {b} makes {a + b}.",
        ]
    )
    return _ask(rng, f"{a}+{b}"), answer


def _add_columns(rng):
    digits = rng.choice([2, 2, 3])
    a, b = rng.randint(10 ** (digits - 1), 10**digits - 1), rng.randint(10 ** (digits - 1), 10**digits - 1)
    steps, carry = [], 0
    for x, y in zip(reversed(str(a)), reversed(str(b)), strict=True):
        total = int(x) + int(y) + carry
        plus = f"+{carry}" if carry else ""
        steps.append(f"{x}+{y}{plus}={total}" + (f", write {total % 10} carry 1" if total >= 10 else ""))
        carry = total // 10
    if carry:
        steps.append("the last carry 1 starts a new column")
    return _ask(rng, f"{a}+{b}"), ". ".join(steps) + f". So {a}+{b} = {a + b}."


def _subtract(rng):
    a = rng.randint(20, 99)
    b = rng.randint(10, a - 1)
    ones_a, ones_b = a % 10, b % 10
    if ones_a < ones_b:
        text = (
            f"Ones: {ones_a} is less than {ones_b}, so borrow ten: "
            f"{ones_a + 10}-{ones_b}={ones_a + 10 - ones_b}. "
            f"Tens: {a // 10}-1-{b // 10}={a // 10 - 1 - b // 10}."
        )
    else:
        text = f"Ones: {ones_a}-{ones_b}={ones_a - ones_b}. Tens: {a // 10}-{b // 10}={a // 10 - b // 10}."
    return _ask(rng, f"{a}-{b}"), f"{text} So {a}-{b} = {a - b}."


def _multiply(rng):
    a, b = rng.randint(11, 99), rng.randint(2, 9)
    tens, ones = a // 10 * 10, a % 10
    return _ask(rng, f"{a}×{b}"), (
        f"Split {a} into {tens} and {ones}. {tens}×{b}={tens * b} and {ones}×{b}={ones * b}. "
        f"{tens * b}+{ones * b}={a * b}. So {a}×{b} = {a * b}."
    )


def _multiply_small(rng):
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return _ask(rng, f"{a}×{b}"), rng.choice(
        [f"{a}×{b} = {a * b}.", f"{a} groups of {b} is {a * b}, so {a}×{b} = {a * b}."]
    )


# --- one arm, in its own process -------------------------------------------------------------


class _Meter:
    """Counts real tokens per training forward and timestamps the end of each optimizer step."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.tokens = 0
        self.marks: list[tuple[float, int]] = []  # (time at the end of step k, tokens fed up to then)

    def hook(self, module, args, kwargs):
        if not module.training:
            return
        from training.core.cpu_paths import shared_prefix_tokens_saved

        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        # A prefix the batch's records share is fed once and stands for that many tokens of each record.
        fed = int(mask.sum()) if mask is not None else int(ids.numel())
        self.tokens += fed + shared_prefix_tokens_saved(kwargs)

    def callback(self):
        from transformers import TrainerCallback

        meter = self

        class StepClock(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if meter.cuda:
                    import torch

                    torch.cuda.synchronize()
                meter.marks.append((time.perf_counter(), meter.tokens))

        return StepClock()

    def attach(self, model) -> None:
        model.register_forward_pre_hook(self.hook, with_kwargs=True)

    def summary(self) -> dict[str, Any]:
        if len(self.marks) < 2:
            return {"steady_tokens": self.tokens, "steady_s": None, "tokens_per_s": None}
        (t1, n1), (tn, nn) = self.marks[0], self.marks[-1]
        return {"steady_tokens": nn - n1, "steady_s": tn - t1, "tokens_per_s": (nn - n1) / (tn - t1)}


def run_arm(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    cuda = spec["device"] == "cuda"
    if not cuda:
        torch.set_num_threads(spec["threads"])
    from training.core.config import TrainConfig

    config = TrainConfig(
        base_model=spec["model"],
        batch_size=spec["batch_size"],
        max_steps=spec["steps"] or -1,
        num_epochs=1.0,
        seed=spec["seed"],
        precision=spec["precision"],  # the engine's; the baseline arm computes in fp32 whatever it says
    )
    records = json.loads(Path(spec["records"]).read_text())
    meter = _Meter(cuda)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    if spec["arm"] == "baseline":
        extra = _train_baseline(config, records, Path(spec["work"]), meter, cuda)
    else:
        extra = _train_engine(config, records, Path(spec["work"]), meter)
    wall = time.perf_counter() - started
    out = {
        "arm": spec["arm"],
        "wall_s": wall,
        "threads": torch.get_num_threads(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "peak_rss_mb": _peak_rss_mb(),
        **meter.summary(),
        **extra,
        "steps": len(meter.marks),
        "total_tokens": meter.tokens,
    }
    if spec["arm"] == "engine":
        from training.core.trainer import computes_in_bf16

        out["bf16"] = computes_in_bf16(config.precision, cuda=cuda)
    if cuda:
        out["cuda_peak_alloc_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["cuda_peak_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
    return out


def _train_engine(config, records, work: Path, meter: _Meter) -> dict[str, Any]:
    import training.core.trainer as engine

    load_model, build_trainer = engine._load_model, engine._build_trainer
    sizes: dict[str, int] = {}

    def instrumented_load(*args, **kwargs):
        model = load_model(*args, **kwargs)
        meter.attach(model)  # the causal-LM module TRL and peft call
        sizes["base_params"] = sum(p.numel() for p in model.parameters())
        return model

    def instrumented_build(*args, **kwargs):
        trainer = build_trainer(*args, **kwargs)
        trainer.add_callback(meter.callback())
        sizes["lora_params"] = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        return trainer

    engine._load_model, engine._build_trainer = instrumented_load, instrumented_build
    events = []
    result = engine.train(config, records, work / "engine", progress=events.append, resume=False)
    if result.status != "succeeded":
        raise SystemExit(f"engine run {result.status}: {result.reason}")
    reported = [e.tokens_per_s for e in events[1:]] or [0.0]
    return {
        **sizes,
        "final_loss": result.metrics.get("final_loss"),
        "engine_tokens": result.metrics.get("tokens"),
        "engine_reported_tokens_per_s_mean": sum(reported) / len(reported),
    }


def _train_baseline(config, records, work: Path, meter: _Meter, cuda: bool) -> dict[str, Any]:
    """What a plain transformers + peft user writes: pad to the longest in the batch, loss on every
    real token."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, Trainer, TrainingArguments

    from training.core.config import default_target_modules

    bf16 = cuda and torch.cuda.is_bf16_supported()
    tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    model = AutoModelForCausalLM.from_pretrained(
        config.base_model, dtype=torch.bfloat16 if bf16 else torch.float32
    )
    model.config.use_cache = False
    meter.attach(model)
    base_params = sum(p.numel() for p in model.parameters())
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=default_target_modules(model.config.model_type),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    lora_params = sum(p.numel() for p in model.parameters() if p.requires_grad)

    texts = [tokenizer.apply_chat_template(r["messages"], tokenize=False) for r in records]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"][: config.max_seq_length] for t in texts]
    dataset = Dataset.from_dict({"input_ids": ids})
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def collate(examples):
        longest = max(len(e["input_ids"]) for e in examples)
        input_ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(examples), longest), dtype=torch.long)
        for row, example in enumerate(examples):
            input_ids[row, : len(example["input_ids"])] = torch.tensor(example["input_ids"])
            mask[row, : len(example["input_ids"])] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": mask,
            "labels": input_ids.masked_fill(mask == 0, -100),
        }

    args = TrainingArguments(
        output_dir=str(work / "baseline"),
        seed=config.seed,
        data_seed=config.seed,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,
        num_train_epochs=config.num_epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        logging_steps=1,
        save_strategy="no",
        bf16=bf16,
        use_cpu=not cuda,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=dataset, data_collator=collate, callbacks=[meter.callback()]
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    model.save_pretrained(str(work / "baseline" / "adapter"))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "base_params": base_params,
        "lora_params": lora_params,
        "final_loss": losses[-1] if losses else None,
    }


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the parent: prepare, spawn the arms, report ---------------------------------------------


def bundled_model(cache: Path) -> Path:
    from training.core.bundled import bundled_gguf_path
    from training.core.llm.local import ensure_gguf_cache

    return ensure_gguf_cache(bundled_gguf_path(), cache)


def fill_random_weights(shape_dir: Path, into: Path, seed: int) -> Path:
    """A model folder with ``shape_dir``'s config and tokenizer and seeded random weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if (into / "config.json").is_file() and any(into.glob("*.safetensors")):
        return into
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(shape_dir), dtype=torch.float32)
    model.save_pretrained(into)
    for item in shape_dir.iterdir():
        if item.is_file() and not (into / item.name).exists():
            shutil.copy2(item, into / item.name)
    return into


def spawn(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    path = work / f"{spec['arm']}-spec.json"
    path.write_text(json.dumps(spec))
    env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    if spec["device"] == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    print(
        f"[{spec['arm']}] training {spec['records_n']} records, batch {spec['batch_size']}, "
        f"{spec['steps'] or '1 epoch of'} steps on {spec['device']} (load {os.getloadavg()[0]:.2f}) …",
        flush=True,
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--_arm", str(path)], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-8000:])
        raise SystemExit(f"the {spec['arm']} arm failed (exit {done.returncode})")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started
    print(
        f"[{spec['arm']}] {result['tokens_per_s']:.1f} real tokens/s, wall {result['wall_s']:.1f} s, "
        f"peak RSS {result['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    return result


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest run (other processes only ever slow a run down), with the largest peak memory of
    all runs."""
    chosen = dict(max(runs, key=lambda r: r["tokens_per_s"]))
    chosen["runs"] = len(runs)
    chosen["all_tokens_per_s"] = [round(r["tokens_per_s"], 1) for r in runs]
    for key in ("peak_rss_mb", "cuda_peak_alloc_mb", "cuda_peak_reserved_mb"):
        if key in chosen:
            chosen[key] = max(r[key] for r in runs)
    return chosen


def model_flops_per_token(result: dict[str, Any]) -> tuple[float, float]:
    """(LoRA-aware 4·N_base + 6·N_lora, conventional 6·(N_base + N_lora))."""
    n_base, n_lora = result["base_params"], result["lora_params"]
    return 4 * n_base + 6 * n_lora, 6 * (n_base + n_lora)


def token_stats(model_dir: Path, records: list[dict[str, Any]]) -> dict[str, float]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lengths = [
        len(
            tokenizer(tokenizer.apply_chat_template(r["messages"], tokenize=False), add_special_tokens=False)[
                "input_ids"
            ]
        )
        for r in records
    ]
    return {"mean": sum(lengths) / len(lengths), "min": min(lengths), "max": max(lengths)}


def report(args, results: dict[str, dict], stats, data_note: str, round_result: dict | None, versions) -> str:
    engine, baseline = results["engine"], results["baseline"]
    gpu = args.device == "cuda"
    from training.core.config import TrainConfig

    lora = TrainConfig(base_model="-")  # the defaults run_arm trains both arms with
    lines = [
        f"Command: `{' '.join(['python', 'bench/train_throughput.py', *sys.argv[1:]])}`",
        f"Date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"Machine: {machine()}"
        + (f"; GPU: {engine.get('gpu')}" if gpu else f"; torch threads: {engine['threads']}"),
        f"Versions: {versions}",
        f"Model: {data_note}",
        f"Data: {args.records} records, {stats['mean']:.1f} tokens on average "
        f"({stats['min']}–{stats['max']}), "
        f"batch {args.batch_size}, {engine['steps']} steps; LoRA r={lora.lora_r} alpha={lora.lora_alpha} "
        f"dropout {lora.lora_dropout:g} on all projections, lr {lora.learning_rate:g} {lora.lr_scheduler}, "
        f"warmup {lora.warmup_ratio:.0%} (TrainConfig defaults, both arms); engine precision "
        f"{args.precision} ({'bf16' if engine.get('bf16') else 'fp32'} here), baseline fp32",
        "",
    ]
    header = "| arm | real tokens/s | ratio | wall (s) | peak RSS (MB) |"
    rule = "|---|---:|---:|---:|---:|"
    if gpu:
        header += " peak CUDA alloc / reserved (MB) | TFLOP/s (4N+6N_lora) | MFU | MFU (6N convention) |"
        rule += "---:|---:|---:|---:|"
    lines += [header, rule]
    for name in ("engine", "baseline"):
        r = results[name]
        row = (
            f"| {name} | {r['tokens_per_s']:.1f} | {r['tokens_per_s'] / baseline['tokens_per_s']:.2f}x | "
            f"{r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} |"
        )
        if gpu:
            lora_aware, conventional = model_flops_per_token(r)
            tflops = lora_aware * r["tokens_per_s"] / 1e12
            row += (
                f" {r['cuda_peak_alloc_mb']:.0f} / {r['cuda_peak_reserved_mb']:.0f} | {tflops:.2f} | "
                f"{100 * tflops / H100_PEAK_BF16_TFLOPS:.2f}% | "
                f"{100 * conventional * r['tokens_per_s'] / 1e12 / H100_PEAK_BF16_TFLOPS:.2f}% |"
            )
        lines.append(row)
    lines.append("")
    if round_result is not None:
        lines.append(
            f"200-record round with the engine (1 epoch, batch {ROUND_BATCH}, "
            f"{round_result['steps']} steps): "
            f"{round_result['wall_s']:.1f} s in train() (model load, data preparation, training, checkpoint "
            f"and adapter save), {round_result['process_s']:.1f} s for the whole process with imports."
        )
    if args.repeat > 1:
        lines.append(
            "Fastest of "
            + str(args.repeat)
            + " alternating runs per arm; all runs (real tokens/s): "
            + "; ".join(f"{name} {', '.join(map(str, r['all_tokens_per_s']))}" for name, r in results.items())
            + ". Peak memory is the largest of the runs."
        )
    loads = ", ".join(f"{name} {r['load_before']:.2f}→{r['load_after']:.2f}" for name, r in results.items())
    lines.append(
        f"1-minute load average before→after each arm's reported run (this benchmark's own process "
        f"counts about {engine['threads']} when it runs alone): {loads}."
    )
    if gpu:
        lines.append(
            f"MFU is model FLOPs/s over {H100_PEAK_BF16_TFLOPS:.0f} TFLOP/s (H100 SXM dense bf16 peak); "
            f"model FLOPs per real token = 4·N_base + 6·N_lora with N_base = {engine['base_params']:,}, "
            f"N_lora = {engine['lora_params']:,} (see the script's docstring)."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Each arm runs in its own subprocess; see the module docstring for "
        "how tokens/s, peak memory and MFU are measured.",
    )
    parser.add_argument(
        "--records", type=int, default=ROUND_RECORDS, help="number of chat records (default 200)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimizer steps per arm (default: one epoch, records / batch size)",
    )
    parser.add_argument("--batch-size", type=int, default=ROUND_BATCH, help="per-step batch (default 8)")
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model folder (default: the bundled SmolLM2-135M-Instruct, converted from its GGUF); "
        "a folder with config.json and tokenizer but no weights gets seeded random weights",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "tl-bench-cache",
        help="where the bundled model's safetensors copy and random-weight models are kept",
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads (default: all)"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the engine arm's TrainConfig.precision (default auto: bf16 on a GPU that has it, fp32 on "
        "a CPU; bf16 also on a CPU with AVX512-BF16 or AMX); the baseline arm is a plain Trainer in fp32",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per arm, alternating; the table shows each arm's fastest run (default 1)",
    )
    parser.add_argument(
        "--no-round",
        action="store_true",
        help="skip the separate 200-record engine round when the comparison is not one already",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown report here")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    parser.add_argument("--_arm", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._arm is not None:  # inside an arm's subprocess
        print(json.dumps(run_arm(json.loads(args._arm.read_text()))))
        return 0

    import torch
    import transformers

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.model is None:
        model_dir = bundled_model(args.cache)
        note = (
            f"bundled SmolLM2-135M-Instruct (Q4_1 GGUF de-quantized to float32 safetensors, {model_dir.name})"
        )
    elif not any(args.model.glob("*.safetensors")):
        model_dir = fill_random_weights(
            args.model, args.cache / f"random-{args.model.name}-{args.seed}", args.seed
        )
        note = (
            f"random weights (seed {args.seed}) in the shape of {args.model}/config.json — same architecture "
            "and tokenizer as the named model, not its trained weights"
        )
    else:
        model_dir, note = args.model, str(args.model)
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}, " + ", ".join(
        f"{m} {__import__(m).__version__}" for m in ("peft", "trl", "datasets", "accelerate")
    )
    records = make_records(args.records, args.seed)
    stats = token_stats(model_dir, records)
    print(
        f"{len(records)} records, {stats['mean']:.1f} tokens on average ({stats['min']}–{stats['max']})",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="tl-bench-") as tmp:
        work = Path(tmp)
        (work / "records.json").write_text(json.dumps(records))
        common = {
            "model": str(model_dir),
            "records": str(work / "records.json"),
            "records_n": len(records),
            "batch_size": args.batch_size,
            "steps": args.steps,
            "seed": args.seed,
            "device": args.device,
            "threads": args.threads,
            "precision": args.precision,
            "work": str(work),
        }
        runs: dict[str, list[dict]] = {"baseline": [], "engine": []}
        for _ in range(args.repeat):  # alternate the arms, so a burst of load elsewhere hits both alike
            for arm in runs:
                runs[arm].append(spawn({**common, "arm": arm}, work))
        results = {arm: best(found) for arm, found in runs.items()}
        is_round = args.steps is None and args.records == ROUND_RECORDS and args.batch_size == ROUND_BATCH
        round_result = results["engine"] if is_round else None
        if round_result is None and not args.no_round:
            (work / "round.json").write_text(json.dumps(make_records(ROUND_RECORDS, args.seed)))
            round_result = spawn(
                {
                    **common,
                    "arm": "engine",
                    "records": str(work / "round.json"),
                    "records_n": ROUND_RECORDS,
                    "batch_size": ROUND_BATCH,
                    "steps": None,
                },
                work,
            )

    text = report(args, results, stats, note, round_result, versions)
    print("\n" + text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "results": results,
                    "round": round_result,
                    "tokens": stats,
                    "model": note,
                    "versions": versions,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
