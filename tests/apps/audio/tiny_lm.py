"""Tiny random causal LMs saved as local Hugging Face directories (a word-level tokenizer over the questions'
words), so ``--model.lm hf:PATH`` is tested without downloading anything."""
from __future__ import annotations

from pathlib import Path

from apps.audio.questions import ANSWERS, DIGITS, ORDINALS, TEMPLATES, words


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = ["<unk>", "<s>", "question", "answer", ":"]
    for temps in TEMPLATES.values():
        for t in temps:
            vocab += words(t.format(d="zero", o="first"))
    vocab += [w for a in ANSWERS.values() for w in a] + list(DIGITS) + list(ORDINALS)
    vocab += ["loud", "quiet", "long", "short"]
    ids = {w: i for i, w in enumerate(dict.fromkeys(vocab))}
    tok = Tokenizer(models.WordLevel(ids, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    from tokenizers import normalizers
    tok.normalizer = normalizers.Lowercase()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>"), len(ids)


def save_tiny_lm(folder: Path, kind: str = "llama", layers: int = 3, dim: int = 32, seed: int = 0) -> Path:
    """A random ``kind`` ("llama" or "gpt2") causal LM of ``layers`` layers and width ``dim`` -> its folder."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok, n = _tokenizer()
    if kind == "llama":
        cfg = LlamaConfig(vocab_size=n, hidden_size=dim, intermediate_size=2 * dim, num_hidden_layers=layers,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
        model = LlamaForCausalLM(cfg)
    else:
        cfg = GPT2Config(vocab_size=n, n_embd=dim, n_layer=layers, n_head=4, n_positions=512, bos_token_id=1,
                         eos_token_id=1)
        model = GPT2LMHeadModel(cfg)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
