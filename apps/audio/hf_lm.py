"""A pretrained causal LM from a local Hugging Face directory as the audio LM: PAL's own setting (Alex et al. 2025,
"PAL: Probing Audio Encoders via LLMs", arXiv 2506.10423), a frozen LLM that the audio reaches through trained
connectors, with the integrations of :class:`~apps.audio.models.AudioLM`.

``--model.lm hf:PATH``: PATH holds a ``transformers`` checkpoint (config.json, weights, tokenizer files), read with
``local_files_only`` -- nothing downloads. Supported decoders: Llama-style (Llama, Mistral, Qwen2/3: ``q/k/v_proj``,
``input_layernorm``) and GPT-2. The LM is frozen and runs as at inference (no dropout); the connectors, the per-layer
LAL projections, PAL's summary resamplers and the type embeddings train (the LM's norms too with ``train_norms``).

How the audio enters, the LM's own code untouched: its attention function is replaced by :func:`audio_attention`
(registered as ``ffn_audio``), which reads the audio of the current forward pass and builds the mask itself.

- ``plits``: audio tokens before the text, in the LM's embedding space, through every layer (FFNs included).
  Delayed (``start > 0``): placeholders that no text token sees before layer ``start``, where the connector's
  tokens take their place.
- ``lal``: each layer l >= ``start`` adds P_l(audio), through the layer's own input norm and key / value
  projections, to the keys and values of its self-attention; queries come from text only and the audio never
  enters the residual stream or an FFN. Audio keys carry no rotary position (the connector codes the order).
- ``pal``: the summary tokens by PLITS, the full sequence by LAL; ``lal_summary``: both by LAL (PAL's parameters).

Prompt: ``Question: <question> Answer:``; the answer is the LM's next token, among the answer words' first tokens.
"""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from apps.audio.models import BY_LAL, AudioSources
from apps.audio.questions import ANSWERS
from core.datadir import DataError

IMPL = "ffn_audio"
HF_INTEGRATIONS = ("plits", "lal", "pal", "lal_summary")


def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise DataError("--model.lm hf:PATH needs transformers: pip install -e '.[hf]'") from e
    from transformers import AttentionInterface
    AttentionInterface.register(IMPL, audio_attention)
    transformers.utils.logging.disable_progress_bar()
    return transformers


def _load_path(path) -> str:
    from pathlib import Path

    p = Path(str(path).removeprefix("hf:")).expanduser()
    if not (p / "config.json").is_file():
        raise DataError(f"--model.lm hf:{p}: expected a local Hugging Face model directory with config.json "
                        "(nothing is downloaded)")
    return str(p)


class HFText:
    """The question tokenizer of a pretrained LM (the interface of :class:`~apps.audio.questions.Vocab`):
    ``Question: <q> Answer:`` -> token ids; an answer word -> the id of its first token after a space."""

    pad = -1  # outside every vocabulary: the model masks it
    PROMPT = "Question: {} Answer:"

    def __init__(self, path: str):
        self.path = _load_path(path)
        self.tok = _transformers().AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        words = sorted({w for a in ANSWERS.values() for w in a})
        ids = {w: self.tok.encode(" " + w, add_special_tokens=False)[0] for w in words}
        by_id: dict[int, list[str]] = {}
        for w, i in ids.items():
            by_id.setdefault(i, []).append(w)
        clash = [ws for ws in by_id.values() if len(ws) > 1]
        if clash:
            raise DataError(f"{self.path}: the tokenizer starts different answers with one token: {clash}")
        self.answer_ids, self.answers = ids, sorted(by_id)
        self._words = {i: ws[0] for i, ws in by_id.items()}

    def __len__(self) -> int:
        return len(self.tok)

    def question(self, text: str, max_text: int = 64) -> list[int]:
        return self.tok.encode(self.PROMPT.format(text))[-max_text:]

    def oracle(self, labels: list[str]) -> list[int]:
        return self.tok.encode(" " + " ".join(labels), add_special_tokens=False)

    def answer_id(self, word: str) -> int:
        if word not in self.answer_ids:
            raise ValueError(f"answer {word!r} is not one of the answer words")
        return self.answer_ids[word]

    def word(self, i: int) -> str:
        return self._words.get(i) or self.tok.decode([i]).strip()


@dataclass
class _Audio:
    """The audio of one forward pass, as :func:`audio_attention` reads it."""
    start: int
    na: int = 0  # prefix positions (PLITS) before the text
    pmask: torch.Tensor | None = None  # [B, na] valid prefix tokens
    prefix: torch.Tensor | None = None  # [B, na, dim] written in at layer ``start`` (delayed PLITS)
    context: dict = field(default_factory=dict)  # layer -> LAL keys, values [B, Hkv, Nc, hd]
    cmask: torch.Tensor | None = None  # [B, Nc] valid LAL tokens


_STATE: ContextVar[_Audio | None] = ContextVar("ffn_audio", default=None)


def audio_attention(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0, **kwargs):
    """The LM's self-attention with the audio of the current pass. query [B, H, L, hd], key / value
    [B, Hkv, L, hd] (the LM's own, rotated) -> [B, L, H, hd], None. Causal over the text; PLITS prefix rows see
    the valid prefix, text rows see it from layer ``start`` on; LAL keys / values of this layer come first."""
    st, layer = _STATE.get(), module.layer_idx
    b, _, n, _ = query.shape
    mask = torch.ones(n, n, dtype=torch.bool, device=query.device).tril().expand(b, 1, n, n)
    if st is not None and st.na:
        mask = mask.clone()
        mask[..., :st.na] = st.pmask[:, None, None, :] if layer >= st.start else False
        mask[..., torch.arange(st.na), torch.arange(st.na)] = True  # a row never sees nothing
    if st is not None and layer in st.context:
        k, v = st.context[layer]
        key, value = torch.cat([k, key], 2), torch.cat([v, value], 2)
        mask = torch.cat([st.cmask[:, None, None, :].expand(b, 1, n, -1), mask], -1)
    rep = query.shape[1] // key.shape[1]  # grouped-query attention
    key, value = key.repeat_interleave(rep, 1), value.repeat_interleave(rep, 1)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def decoder_layers(lm) -> nn.ModuleList:
    base = lm.base_model
    for name in ("layers", "h"):
        if isinstance(getattr(base, name, None), nn.ModuleList):
            return getattr(base, name)
    raise DataError(f"{type(lm).__name__}: no decoder layers found (supported: Llama-style and GPT-2)")


def attention_of(layer) -> tuple[nn.Module, nn.Module]:
    """A decoder layer -> (its self-attention, the norm before it)."""
    for attn, norm in (("self_attn", "input_layernorm"), ("attn", "ln_1")):
        if hasattr(layer, attn) and hasattr(layer, norm):
            return getattr(layer, attn), getattr(layer, norm)
    raise DataError(f"{type(layer).__name__}: unsupported decoder layer (supported: Llama-style and GPT-2)")


def keys_values(attn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens [B, N, dim] (after the layer's norm) -> the layer's own keys and values [B, Hkv, N, hd]."""
    b, n, _ = x.shape
    if hasattr(attn, "k_proj"):
        k, v = attn.k_proj(x), attn.v_proj(x)
    else:  # GPT-2's fused projection
        _, k, v = attn.c_attn(x).split(attn.split_size, 2)
    k, v = (t.view(b, n, -1, attn.head_dim) for t in (k, v))
    if hasattr(attn, "k_norm"):  # Qwen3 normalises keys per head
        k = attn.k_norm(k)
    return k.transpose(1, 2), v.transpose(1, 2)


def _write_prefix(module, args, kwargs):
    """Forward pre-hook of layer ``start`` (delayed PLITS): the connector's tokens replace the placeholders."""
    st = _STATE.get()
    if st is None or st.prefix is None:
        return None
    h = args[0] if args else kwargs["hidden_states"]
    h = torch.cat([st.prefix, h[:, st.na:]], 1)
    if args:
        return (h, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": h}


class HFAudioLM(AudioSources):
    """Question tokens [B, Nt] (the LM's ids, right-padded with ``HFText.pad``) + audio features per encoder ->
    next-token logits at the last question token [B, vocab].

    Args:
        path: a local Hugging Face causal-LM directory (``hf:`` prefix allowed).
        feature_dims: encoder name -> feature width.
        integration: plits, lal or pal.
        start: first layer that sees the audio (> 0: delayed integration).
        connector: mlp or resampler.
        stride: frames stacked per token by the MLP connector.
        latents: tokens of a resampler connector.
        summary: PAL's summary tokens per encoder.
        train_norms: the LM's layer norms train too (stage 2).
    """

    def __init__(self, path: str, feature_dims: dict[str, int], integration: str = "lal", start: int = 0,
                 connector: str = "mlp", stride: int = 4, latents: int = 8, summary: int = 4,
                 train_norms: bool = False):
        super().__init__()
        if integration not in HF_INTEGRATIONS:
            raise ValueError(f"integration {integration!r} with a pretrained LM: choose from "
                             f"{', '.join(HF_INTEGRATIONS)}")
        self.path = _load_path(path)
        self.lm = _transformers().AutoModelForCausalLM.from_pretrained(
            self.path, local_files_only=True, dtype=torch.float32, attn_implementation=IMPL)
        self.depth = len(decoder_layers(self.lm))
        if not 0 <= start < self.depth:
            raise ValueError(f"start {start} must be a layer index in [0, {self.depth})")
        self.integration, self.start, self.train_norms = integration, start, train_norms
        dim = self.lm.get_input_embeddings().embedding_dim
        self._build_sources(feature_dims, dim, integration, connector, stride, latents, summary)
        self.lal = nn.ModuleDict({str(i): nn.Linear(dim, dim) for i in range(start, self.depth)}
                                 if integration in BY_LAL else {})
        if start > 0 and integration in ("plits", "pal"):
            decoder_layers(self.lm)[start].register_forward_pre_hook(_write_prefix, with_kwargs=True)
        self.set_stage(2)

    @property
    def head(self) -> nn.Module:
        return self.lm.get_output_embeddings()

    def embed_words(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    def set_stage(self, stage: int) -> None:
        """The LM stays frozen in every stage; its norms train in stage 2 with ``train_norms``."""
        for p in self.lm.parameters():
            p.requires_grad_(False)
        for p in self.connector_parameters():
            p.requires_grad_(True)
        if self.train_norms and stage == 2:
            for name, p in self.lm.named_parameters():
                if "norm" in name or ".ln_" in name:
                    p.requires_grad_(True)

    def train(self, mode: bool = True):
        super().train(mode)
        self.lm.eval()  # frozen: as at inference, no dropout
        return self

    def forward(self, tokens, audio: dict | None = None, oracle: torch.Tensor | None = None,
                hidden: list | None = None):
        """As :meth:`AudioLM.forward`: tokens [B, Nt]; audio: name -> (features, mask) or None (blind); oracle
        [B, No] (stage 0); ``hidden`` receives each layer's text states. -> [B, vocab]."""
        valid = tokens != HFText.pad
        x = self.embed_words(tokens.masked_fill(~valid, 0))
        prefix, context = self.routes(audio, oracle, pad=HFText.pad)
        st = _Audio(self.start)
        if prefix is not None:
            st.na, st.pmask = prefix[0].shape[1], prefix[1]
            if self.start:
                st.prefix = prefix[0]
            x = torch.cat([torch.zeros_like(prefix[0]) if self.start else prefix[0], x], 1)
        if context is not None:
            layers = decoder_layers(self.lm)
            for i in range(self.start, self.depth):
                attn, norm = attention_of(layers[i])
                st.context[i] = keys_values(attn, norm(self.lal[str(i)](context[0])))
            st.cmask = context[1]
        token = _STATE.set(st)
        try:
            out = self.lm.base_model(inputs_embeds=x, use_cache=False, output_hidden_states=hidden is not None)
        finally:
            _STATE.reset(token)
        if hidden is not None:
            hidden.extend(h[:, st.na:] for h in out.hidden_states[1:])
        last = st.na + valid.sum(1) - 1
        return self.head(out.last_hidden_state[torch.arange(len(tokens)), last])
