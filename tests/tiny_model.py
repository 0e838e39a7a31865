"""A tiny randomly initialised Llama model and tokenizer, built locally (no downloads).

Tests use it wherever a real model would be too slow: generation, streaming, log-likelihoods,
LoRA adapters, training. It is a normal ``LlamaForCausalLM`` (``q_proj``/``v_proj`` exist for
LoRA) with a byte-level BPE tokenizer and a ChatML chat template. Outputs are gibberish, but they
are deterministic under greedy decoding, which is all the tests need.

:func:`write_tiny_gguf` turns the same model into an unquantized (F32) llama GGUF file that
transformers can read back, so the GGUF cache path can be tested without the real model.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is 2+3? The answer is 5.",
    "What is 7 times 6? The answer is 42.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "A fraction is a part of a whole: one half is 1/2 and one quarter is 1/4.",
    "Explain it simply, then give an example, then check the student understood.",
    "The teacher writes an explanation and the student answers a question.",
    "Hello! How are you today? I am fine, thank you.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 100 1000.",
    "user assistant system: please answer with a number.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The capital of France is Paris. The capital of Italy is Rome.",
]

TINY_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,  # grouped-query attention, like SmolLM2, to exercise the GGUF q/k permutation
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
}


def build_tokenizer():
    """A byte-level BPE tokenizer (vocab ~400) trained on a small built-in corpus, ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    # Same pre-tokenizer/decoder as GPT-2, so a GGUF "gpt2" tokenizer rebuilds it identically.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(folder: Path) -> Path:
    """Save a tiny random Llama + tokenizer into ``folder`` (created if needed) and return it.

    Deterministic: the same weights every call (``torch.manual_seed(0)``).
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TINY_CONFIG,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    # Random init at std 0.02 gives near-uniform logits; larger weights make the greedy choice
    # well separated, so batched vs single results don't flip on float rounding.
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.15)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_lora(model_dir: Path, folder: Path, *, seed: int = 1) -> Path:
    """Save a LoRA adapter (r=4 on q_proj/v_proj) for the model in ``model_dir`` into ``folder``,
    with weights that visibly change the model's output (peft starts lora_B at zero: a no-op)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    peft_model.save_pretrained(folder)
    return Path(folder)


def tiny_spec(folder: Path, *, name: str = "tiny-llama", chat_template: str = ""):
    """A ``transformers`` ModelSpec pointing at a folder made by :func:`build_tiny_model`."""
    from training.core.llm.base import ModelSpec

    return ModelSpec(name=name, backend="transformers", source=str(folder), chat_template=chat_template)


def _permute_for_gguf(weight, n_head: int):
    """llama.cpp's q/k row permutation (its rotary layout); transformers undoes it when loading."""
    rows = weight.shape[0]
    return (
        weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def write_tiny_gguf(model_dir: Path, gguf_path: Path) -> Path:
    """Write the model in ``model_dir`` (from :func:`build_tiny_model`) as an F32 llama GGUF file.

    Carries the byte-level BPE vocabulary and merges (``tokenizer.ggml.model = "gpt2"``) and the
    chat template, so ``from_pretrained(folder, gguf_file=...)`` rebuilds both model and tokenizer.
    """
    import json

    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    model_dir, gguf_path = Path(model_dir), Path(gguf_path)
    config = json.loads((model_dir / "config.json").read_text())
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    tok_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    state = load_file(str(model_dir / "model.safetensors"))

    vocab: dict[str, int] = dict(tok["model"]["vocab"])
    for added in tok["added_tokens"]:
        vocab[added["content"]] = added["id"]
    tokens = [""] * config["vocab_size"]
    for text, index in vocab.items():
        tokens[index] = text
    special = {added["content"] for added in tok["added_tokens"] if added["special"]}
    token_types = [3 if t in special else 1 for t in tokens]  # 3 = CONTROL, 1 = NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]

    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    writer = gguf.GGUFWriter(str(gguf_path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(config["hidden_size"] // n_head)
    writer.add_rope_freq_base(
        float(config.get("rope_theta") or config.get("rope_parameters", {}).get("rope_theta", 10000.0))
    )
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_pad_token_id(config["pad_token_id"])
    writer.add_add_bos_token(False)
    writer.add_chat_template(tok_config.get("chat_template") or CHAT_TEMPLATE)

    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    per_layer = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    for hf_name in sorted(state):
        tensor = state[hf_name].astype(np.float32)
        if hf_name in names:
            name = names[hf_name]
        else:
            _, _, layer, rest = hf_name.split(".", 3)  # model.layers.<i>.<module>.weight
            module = rest.rsplit(".", 1)[0]
            name = f"blk.{layer}.{per_layer[module]}.weight"
            if module == "self_attn.q_proj":
                tensor = _permute_for_gguf(tensor, n_head)
            elif module == "self_attn.k_proj":
                tensor = _permute_for_gguf(tensor, n_kv)
        writer.add_tensor(name, np.ascontiguousarray(tensor))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return gguf_path
