"""The integrations do what PAL defines: LAL's audio never reaches an FFN, delayed layers never see audio, Flamingo's
gates start closed, padding is invisible, and stage 1 trains the connectors only."""
import pytest
import torch
import torch.nn.functional as F

from apps.audio.models import INTEGRATIONS, AudioLM
from apps.audio.task import set_stage

DIMS = {"mel": 40, "ge2e": 256}


def _batch(b=3, t=30, nt=7):
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, 50, (b, nt), generator=g)
    tokens[0, -2:] = 0  # a shorter question, right-padded
    tokens[0, -3] = 3
    audio = {n: (torch.randn(b, t, d, generator=g), torch.arange(t) < torch.tensor([[t], [t - 9], [12]]))
             for n, d in DIMS.items()}
    return tokens, audio


def _model(integration, open_gates=True, **kw):
    torch.manual_seed(0)
    m = AudioLM(60, DIMS, integration=integration, dim=32, depth=4, heads=4, drop=0.0, **kw).eval()
    with torch.no_grad():
        for x in m.xattn.values():  # Flamingo's gates start closed: open them to see the audio's effect
            x.gate_attn.fill_(float(open_gates))
            x.gate_ffn.fill_(float(open_gates))
    return m


@pytest.mark.parametrize("integration", INTEGRATIONS)
@pytest.mark.parametrize("connector", ["mlp", "resampler"])
def test_padded_audio_frames_change_nothing(integration, connector):
    m = _model(integration, connector=connector)
    tokens, audio = _batch()
    y = m(tokens, audio)
    x, mask = audio["mel"]
    x2 = x.clone()
    x2[~mask] = 100.0
    torch.testing.assert_close(m(tokens, {**audio, "mel": (x2, mask)}), y)
    x2[1, 0] += 3.0  # a visible frame does change the answer
    assert not torch.allclose(m(tokens, {**audio, "mel": (x2, mask)})[1], y[1])
    alone = {n: (x[2:, :12], mk[2:, :12]) for n, (x, mk) in audio.items()}  # row 2 has 12 frames: no padding
    if connector == "mlp":  # (a resampler reads all frames into fixed latents; its mask is checked above)
        torch.testing.assert_close(m(tokens[2:], alone)[0], y[2], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_delayed_integration_leaves_the_first_layers_text_only(integration):
    m = _model(integration, start=2)
    tokens, audio = _batch()
    with_audio, blind = [], []
    m(tokens, audio, hidden=with_audio)
    m(tokens, None, hidden=blind)
    for i in range(2):
        torch.testing.assert_close(with_audio[i], blind[i])
    assert not torch.allclose(with_audio[3], blind[3])


@pytest.mark.parametrize("integration,audio_through_ffn", [("plits", True), ("lal", False), ("pal", True),
                                                          ("lal_summary", False), ("xattn", False)])
def test_only_plits_and_pals_summary_tokens_pass_through_the_lms_ffns(integration, audio_through_ffn):
    m = _model(integration)
    tokens, audio = _batch()
    seen = []
    h = m.blocks[1].ffn.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[1]))
    m(tokens, audio)
    h.remove()
    extra = seen[0] - tokens.shape[1]
    assert (extra > 0) == audio_through_ffn
    if integration == "pal":
        assert extra == 2 * m.summaries["mel"].latents.shape[0]  # the summary tokens only, not the sequence


def test_flamingo_gates_start_closed_so_the_untrained_model_equals_the_blind_one():
    m = _model("xattn", open_gates=False)
    tokens, audio = _batch()
    torch.testing.assert_close(m(tokens, audio), m(tokens, None))
    with torch.no_grad():
        m.xattn["1"].gate_attn.fill_(0.5)
    assert not torch.allclose(m(tokens, audio), m(tokens, None))


@pytest.mark.parametrize("integration", ["plits", "lal"])
def test_text_is_causal_and_the_answer_is_read_at_ans(integration):
    m = _model(integration)
    tokens, audio = _batch()
    hidden = []
    m(tokens, audio, hidden=hidden)
    t2 = tokens.clone()
    t2[1:, -1] = 5
    hidden2 = []
    m(t2, audio, hidden=hidden2)
    torch.testing.assert_close(hidden2[-1][:, :-1], hidden[-1][:, :-1])  # no position sees a later one
    one = {n: (x[:1], mk[:1]) for n, (x, mk) in audio.items()}  # row 0 ends earlier: read at its <ans>, not at a pad
    torch.testing.assert_close(m(tokens[:1, :-2], one)[0], m(tokens, audio)[0], rtol=1e-5, atol=1e-5)


def test_stage_one_trains_the_connectors_and_leaves_the_lm_alone():
    m = _model("lal")
    m.train()
    set_stage(m, 1)
    tokens, audio = _batch()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    F.cross_entropy(m(tokens, audio), torch.tensor([5, 6, 7])).backward()
    opt.step()
    after = m.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("connectors.", "lal.", "kind")) for k in changed), changed
    assert any(k.startswith("connectors.") for k in changed) and any(k.startswith("lal.") for k in changed)


def test_the_connector_keeps_the_level_a_layernorm_would_erase():
    from apps.audio.models import MLPConnector

    torch.manual_seed(0)
    c = MLPConnector(40, 32, stride=2)
    c.norm.set_(torch.full((40,), -6.0), torch.full((40,), 2.0))  # training-split statistics
    x, m = torch.randn(1, 10, 40), torch.ones(1, 10, dtype=torch.bool)
    quiet = x + 2 * torch.log(torch.tensor(0.1))  # log-mel power of the same clip at gain 0.1
    assert (c(x, m)[0] - c(quiet, m)[0]).abs().max() > 1e-2  # loud / quiet questions need this difference


def test_attention_mass_is_zero_before_the_audio_arrives_and_a_share_after():
    from types import SimpleNamespace

    from apps.audio.probes import audio_attention_mass

    m = _model("plits", start=2)
    tokens, audio = _batch()
    rows = [{"tokens": tokens[i][tokens[i] != 0].tolist(), "qtype": 0, "rephrased": False, "item": i}
            for i in range(3)]
    dm = SimpleNamespace(sets={"test": SimpleNamespace(rows=rows)},
                         collate=lambda rs: {"tokens": tokens, "audio": audio})
    mass = audio_attention_mass(m, dm)
    assert mass[:2] == [0.0, 0.0] and all(0 < x < 1 for x in mass[2:])


@pytest.mark.parametrize("integration", INTEGRATIONS)
@pytest.mark.parametrize("connector", ["mlp", "resampler"])
def test_audio_tokens_carry_their_order(integration, connector):
    """Two digits heard in the other order must be able to give another answer ("which came second?"): the audio
    tokens (and the stage-0 oracle's words) carry a position code. Without it, attention over the audio keys is a
    function of the set of tokens, and reversing them changes nothing."""
    m = _model(integration, connector=connector, stride=2)
    tokens, audio = _batch()
    tokens, audio = tokens[1:2], {n: (x[1:2, :12], mk[1:2, :12]) for n, (x, mk) in audio.items()}  # 12 valid frames
    rev = {n: (x.view(1, 6, 2, -1).flip(1).reshape(x.shape), mk) for n, (x, mk) in audio.items()}  # tokens reversed
    assert not torch.allclose(m(tokens, audio), m(tokens, rev), atol=1e-5)
    oracle = torch.tensor([[5, 6, 7]])
    assert not torch.allclose(m(tokens, oracle=oracle), m(tokens, oracle=oracle.flip(1)), atol=1e-5)


def test_majority_floor_answers_each_types_most_common_training_answer():
    from apps.audio.task import majority_floor

    train = [{"qtype": 0, "answer": 5}, {"qtype": 0, "answer": 5}, {"qtype": 0, "answer": 7},
             {"qtype": 1, "answer": 2}]
    test = [{"qtype": 0, "answer": 5}, {"qtype": 0, "answer": 7}, {"qtype": 1, "answer": 2}, {"qtype": 1, "answer": 3}]
    macro, per = majority_floor(train, test)
    assert list(per.values()) == [0.5, 0.5] and macro == 0.5


def test_pals_matched_control_has_pals_parameters_and_hears_its_summary_by_lal():
    pal, matched = _model("pal"), _model("lal_summary")
    assert sum(p.numel() for p in pal.parameters()) == sum(p.numel() for p in matched.parameters())
    tokens, audio = _batch()
    y = matched(tokens, audio)
    with torch.no_grad():
        matched.summaries["mel"].latents.add_(1.0)  # the summary tokens reach the answer (as LAL keys)
    assert not torch.allclose(matched(tokens, audio), y)


def test_the_text_only_control_never_gets_the_audio_nor_the_oracle():
    from apps.audio.task import AudioQATask

    m = _model("lal")
    tokens, audio = _batch()
    task = AudioQATask(m, list(range(4, 20)), stage=0, text_only=True)
    batch = {"tokens": tokens, "audio": audio, "oracle": torch.randint(4, 50, (3, 4))}
    torch.testing.assert_close(task(batch), m(tokens, None))
