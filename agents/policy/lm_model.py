"""Causal LMs for the LLM backend: loading a model directory, and a tiny randomly initialised one.

`tiny_model` builds, with no download, a 2-layer Llama (hidden 48) from a config and a byte-level
BPE tokenizer trained with `tokenizers` on the chat texts, wrapped as a `PreTrainedTokenizerFast`
with a ChatML-style chat template whose assistant turns carry `{% generation %}` markers (TRL's
assistant-only loss). It is for tests and CPU smoke runs; real runs start from a pretrained
instruct model's directory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from bench.errors import BenchError

EXTRA = ("trl", "transformers", "datasets", "accelerate", "tokenizers")
START, END, PAD = "<|im_start|>", "<|im_end|>", "<|pad|>"
CHAT_TEMPLATE = (
    "{% for m in messages %}" + START + "{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}" + END + "{% endgeneration %}"
    "{% else %}{{ m['content'] }}" + END + "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}" + START + "assistant\n{% endif %}"
)


def require_lm() -> None:
    """BenchError unless the `lm` extra (TRL and the Hugging Face stack) is installed."""
    from agents.llm.local import missing_extra

    if (reason := missing_extra(EXTRA)) is not None:
        raise BenchError(f"the LLM backend cannot run: {reason}")


def load_model(path: Path):
    """(model, tokenizer), float32, for training or serving: a model directory (`save_pretrained`),
    a `.gguf` file, or a known local model's name (`agents.llm.local.MODELS`, fetched on first use)."""
    require_lm()
    from agents.llm.local import MODELS, load_gguf

    if str(path) in MODELS:
        path = MODELS[str(path)].file()
    path = Path(path)
    if path.suffix == ".gguf":
        return load_gguf(path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise BenchError(f"{path} is not a model directory (no config.json); build one with "
                         f"`bench lm tiny`, download a causal LM there, or name one of {', '.join(MODELS)}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    except (OSError, ValueError, KeyError) as exc:
        raise BenchError(f"cannot load the model in {path}: {exc}") from None
    if tokenizer.chat_template is None:
        raise BenchError(f"the tokenizer in {path} has no chat template; use an instruct/chat model")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024):
    """A byte-level BPE tokenizer trained on `texts`, with the chat template and special tokens."""
    require_lm()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, START, END],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=END, pad_token=PAD,
                                   chat_template=CHAT_TEMPLATE, padding_side="left")


def tiny_model(texts: Iterable[str], directory: Path, seed: int = 0, hidden: int = 48, layers: int = 2,
               vocab_size: int = 1024) -> Path:
    """Build and save a randomly initialised tiny Llama with a tokenizer trained on `texts`."""
    require_lm()
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer(texts, vocab_size)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=32768, tie_word_embeddings=True,
                         bos_token_id=tokenizer.convert_tokens_to_ids(START),
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def chat_texts(records: Iterable[dict]) -> Iterator[str]:
    """Every message text of the chat records (the tokenizer's training corpus)."""
    for record in records:
        for message in record["messages"]:
            yield message["content"]
