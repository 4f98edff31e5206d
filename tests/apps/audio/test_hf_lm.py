"""A pretrained LM as the audio LM (``--model.lm hf:PATH``), on tiny random Llama- and GPT-2-style checkpoints saved
to a temp dir: the LM computes what it computes alone, stays frozen, and hears the audio only where and how the
integration says."""
import pytest
import torch

from apps.audio.hf_lm import HFAudioLM, HFText, decoder_layers
from apps.audio.task import AudioQATask
from core.datadir import DataError
from tests.apps.audio.tiny_lm import save_tiny_lm

pytest.importorskip("transformers")
KINDS = ("llama", "gpt2")
QUESTIONS = ("which digit is spoken ?", "is the clip loud or quiet ?", "what was the second digit ?")


@pytest.fixture(scope="module", params=KINDS)
def lm_dir(request, tmp_path_factory):
    return save_tiny_lm(tmp_path_factory.mktemp(request.param), request.param)


def _batch(text: HFText, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    toks = torch.nn.utils.rnn.pad_sequence([torch.tensor(text.question(q)) for q in QUESTIONS], batch_first=True,
                                           padding_value=text.pad)
    lens = torch.tensor([[14], [9], [5]])
    return toks, {"mel": (torch.randn(3, 14, 8, generator=g), torch.arange(14) < lens)}


def _model(lm_dir, **kw):
    torch.manual_seed(0)
    return HFAudioLM(str(lm_dir), {"mel": 8}, **kw).eval()


@pytest.mark.parametrize("integration,start", [("lal", 0), ("plits", 0), ("plits", 1), ("pal", 1)])
def test_without_audio_the_answer_logits_are_the_pretrained_lms_own(lm_dir, integration, start):
    """The attention function that carries the audio reproduces the LM's own (sdpa) attention when there is none,
    for every question of a right-padded batch."""
    from transformers import AutoModelForCausalLM

    text = HFText(str(lm_dir))
    model = _model(lm_dir, integration=integration, start=start)
    ref = AutoModelForCausalLM.from_pretrained(str(lm_dir), attn_implementation="sdpa").eval()
    toks, _ = _batch(text)
    with torch.no_grad():
        ours = model(toks, None)
        for i, q in enumerate(QUESTIONS):
            alone = ref(torch.tensor([text.question(q)])).logits[0, -1]
            torch.testing.assert_close(ours[i], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("integration,start", [("lal", 1), ("plits", 1), ("pal", 2)])
def test_audio_reaches_the_text_only_from_layer_start(lm_dir, integration, start):
    """Each layer's text states under two different clips of the same length: identical before ``start``,
    different from it on. Llama's positions are relative, so there the early text states equal those with no
    audio at all (the text does not even see PLITS's placeholders); GPT-2's absolute positions shift by the prefix
    length, as with any prefix."""
    text = HFText(str(lm_dir))
    model = _model(lm_dir, integration=integration, start=start)
    toks, audio = _batch(text, seed=0)
    _, other = _batch(text, seed=1)
    states: dict[str, list] = {"audio": [], "other": [], "none": []}
    with torch.no_grad():
        for name, a in (("audio", audio), ("other", other), ("none", None)):
            model(toks, a, hidden=states[name])
    for ref in ("other", "none") if "llama" in str(lm_dir) else ("other",):
        for i, (a, b) in enumerate(zip(states["audio"], states[ref])):
            if i < start:
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
            else:
                assert (a - b).abs().max() > 1e-4, f"layer {i} does not hear the audio"


def test_lal_audio_never_enters_the_residual_stream_or_an_ffn(lm_dir):
    """Under LAL every FFN sees the text positions only (the audio is keys and values, nothing else); under PLITS
    the FFNs see the audio tokens too."""
    text = HFText(str(lm_dir))
    toks, audio = _batch(text)
    for integration, extra in (("lal", 0), ("plits", 4)):  # 14 frames / stride 4 -> 4 tokens
        model = _model(lm_dir, integration=integration)
        seen = []
        hooks = [layer.mlp.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
                 for layer in decoder_layers(model.lm)]
        with torch.no_grad():
            model(toks, audio)
        for h in hooks:
            h.remove()
        assert seen == [toks.shape[1] + extra] * len(decoder_layers(model.lm)), integration


def test_training_moves_the_connectors_and_never_the_lm(lm_dir):
    text = HFText(str(lm_dir))
    model = _model(lm_dir, integration="pal", start=1)
    task = AudioQATask(model, text.answers, stage=2)
    lm_before = {k: v.clone() for k, v in model.lm.state_dict().items()}
    conn_before = [p.clone() for p in model.connector_parameters()]
    opt = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-2)
    toks, audio = _batch(text)
    answer = torch.tensor([text.answer_id(w) for w in ("seven", "loud", "two")])
    model.train()
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(task({"tokens": toks, "audio": audio}), answer)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not model.lm.training  # frozen: no dropout either
    assert all(torch.equal(v, model.lm.state_dict()[k]) for k, v in lm_before.items())
    assert any(not torch.equal(a, b) for a, b in zip(conn_before, model.connector_parameters()))


def test_train_norms_unfreezes_the_lms_norms_only_in_stage_2(lm_dir):
    model = _model(lm_dir, train_norms=True)
    trainable = {n for n, p in model.lm.named_parameters() if p.requires_grad}
    assert trainable and all("norm" in n or ".ln_" in n for n in trainable)
    model.set_stage(1)
    assert not any(p.requires_grad for p in model.lm.parameters())


def test_a_tokenizer_that_merges_answers_or_a_missing_folder_is_a_clear_error(tmp_path):
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = save_tiny_lm(tmp_path / "lm", "llama", layers=1)
    tok = Tokenizer(models.WordLevel({"<unk>": 0, "question": 1}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(folder)
    with pytest.raises(DataError, match="starts different answers with one token"):
        HFText(str(folder))
    with pytest.raises(DataError, match="config.json"):
        HFText(str(tmp_path / "nowhere"))
