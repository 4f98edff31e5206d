"""Spike data: wav reading with clear errors, the encoder, FSDD splits from the real recordings, SHD HDF5."""
import wave

import h5py
import numpy as np
import pytest
import torch

from apps.spiking.data import SpikeData, read_shd
from apps.spiking.encode import SpikeEncoder, read_wav
from core.datadir import DataError


def _write_wav(path, samples, sr=8000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.asarray(samples) * 32767).astype("<i2").tobytes())
    return path


def test_read_wav_and_its_errors(tmp_path, data_root):
    x, sr = read_wav(data_root / "audio" / "fsdd" / "recordings" / "3_jackson_7.wav")
    assert sr == 8000 and x.dtype == np.float32 and 0.05 < np.abs(x).max() <= 1.0
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00not a wav at all")
    with pytest.raises(DataError, match="junk.wav: not a readable WAV file"):
        read_wav(tmp_path / "junk.wav")
    _write_wav(tmp_path / "empty.wav", [])
    with pytest.raises(DataError, match="empty.wav: empty WAV"):
        read_wav(tmp_path / "empty.wav")
    good = _write_wav(tmp_path / "cut.wav", np.zeros(1000))
    good.write_bytes(good.read_bytes()[:-500])  # truncated data chunk
    with pytest.raises(DataError, match="cut.wav: truncated: header says 1000 frames, data holds 750"):
        read_wav(good)


def test_encoder_resamples_and_keys_its_settings(tmp_path):
    t = np.arange(16000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t) * (t < 0.5)
    enc = SpikeEncoder()
    s16 = enc(*read_wav(_write_wav(tmp_path / "a.wav", tone, sr=16000)))
    s8 = enc(*read_wav(_write_wav(tmp_path / "b.wav", tone[::2], sr=8000)))
    assert s16.shape == s8.shape == (40, 128)
    assert int(s16[:25].sum()) > 0 and int(s16[30:].sum()) == 0  # spikes only while the tone sounds (20 ms bins)
    assert abs(int(s16.sum()) - int(s8.sum())) < 0.1 * int(s8.sum())  # resampled input ~ native 8 kHz
    assert SpikeEncoder(channels=32).key() != enc.key()
    assert SpikeEncoder(filterbank="mel").key() != enc.key() and SpikeEncoder(filterbank="mel").gain == 2.0
    with pytest.raises(ValueError, match="unknown filterbank 'bark'"):
        SpikeEncoder(filterbank="bark")


def _lif_reference(enc, x, sr):
    """The encoder's LIF written out for one file over all its frames, binned, then cut to max_bins."""
    d = enc.gain * (lambda e: e / np.quantile(e, enc.ref_quantile))(enc.envelope(x).double().numpy())
    v, spikes = np.zeros(enc.channels), np.zeros_like(d)
    for t in range(len(d)):
        v += enc.hop_ms / enc.tau_ms * (d[t] - v)
        spikes[t], v = v >= 1.0, np.where(v >= 1.0, 0.0, v)
    bins = -(-len(d) // enc.per_bin)
    counts = np.pad(spikes, ((0, bins * enc.per_bin - len(d)), (0, 0))).reshape(bins, enc.per_bin, -1).sum(1)
    out = np.zeros((enc.max_bins, enc.channels))
    out[:min(bins, enc.max_bins)] = counts[:enc.max_bins]
    return np.minimum(out, enc.max_count)


def test_batched_encoding_equals_one_file_at_a_time_and_a_plain_lif(data_root):
    """Files of different lengths (one longer than max_bins) encoded in uneven batches equal each file alone,
    and a float64 LIF over every frame of the file: the zero padding never spikes and the frames past max_bins
    that the encoder skips never reach the output."""
    rec = data_root / "audio" / "fsdd" / "recordings"
    names = ["3_jackson_7.wav", "0_theo_0.wav", "7_nicolas_12.wav", "5_yweweler_30.wav", "9_george_3.wav"]
    waves = [read_wav(rec / n) for n in names]
    long = max(range(len(waves)), key=lambda i: len(waves[i][0]))
    waves[long] = (np.tile(waves[long][0], 2), 8000)  # > 0.8 s: cut
    enc = SpikeEncoder()
    batched = enc.encode(waves, batch=2)
    alone = torch.stack([enc(x, sr) for x, sr in waves])
    assert torch.equal(batched, alone) and batched.shape == (5, 40, 128) and int(batched.sum()) > 1000
    for (x, sr), got in zip(waves, batched):
        ref = _lif_reference(enc, x, sr)
        assert np.abs(ref - got.numpy()).sum() <= 2, np.abs(ref - got.numpy()).sum()  # float32 vs float64 ties


@pytest.mark.parametrize("filterbank", ["gammatone", "mel"])
def test_a_tone_drives_the_channels_tuned_to_it(filterbank):
    """Both front ends are tonotopic: a pure tone's envelope peaks in the channel whose centre frequency is
    nearest (gammatone: ERB-spaced centres; mel: mel-spaced), and lower / higher tones peak lower / higher."""
    from apps.spiking.encode import erb_space

    enc = SpikeEncoder(filterbank=filterbank)
    t = np.arange(4000) / 8000
    peaks = [int(enc.envelope((0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32))[100:400].mean(0).argmax())
             for f in (300.0, 1000.0, 2500.0)]
    assert peaks == sorted(peaks) and len(set(peaks)) == 3
    if filterbank == "gammatone":
        fc = erb_space(enc.f_min, enc.f_max, enc.channels)
        for f, p in zip((300.0, 1000.0, 2500.0), peaks):
            assert abs(fc[p] - f) < 24.7 * (4.37 * f / 1000 + 1), (f, fc[p])  # within one ERB


def test_fsdd_official_and_speaker_splits(data_root):
    dm = SpikeData("fsdd")
    dm.setup()
    assert {k: len(v) for k, v in dm.sets.items()} == {"train": 2400, "val": 300, "test": 300}
    x, y = dm.sets["train"][0]
    assert x.shape == (40, 128) and 0 <= int(y) <= 9 and dm.stats["files"] == 3000
    assert dm.stats["truncated"] == 61 and dm.stats["resampled"] == 0  # recordings longer than 0.8 s, counted
    assert 0.02 < float((dm.sets["train"].tensors[0] > 0).float().mean()) < 0.5  # sparse: most bins silent
    held = SpikeData("fsdd", split="speaker:theo")
    held.setup()
    assert len(held.sets["test"]) == 500 and len(held.sets["train"]) == 2250
    with pytest.raises(DataError, match="no speaker 'bob'"):
        SpikeData("fsdd", split="speaker:bob").setup()
    wide = SpikeData("fsdd", val_recordings=10)  # the encoding is cached: cheap
    wide.setup()
    assert {k: len(v) for k, v in wide.sets.items()} == {"train": 2100, "val": 600, "test": 300}
    assert torch.equal(wide.sets["test"].tensors[1], dm.sets["test"].tensors[1])
    with pytest.raises(DataError, match="val_recordings=0"):
        SpikeData("fsdd", val_recordings=0)


def _shd(path, labels=(0, 3), fields=("spikes/times", "spikes/units", "labels")):
    with h5py.File(path, "w") as f:
        vl = h5py.vlen_dtype(np.float32)
        if "spikes/times" in fields:
            f.create_dataset("spikes/times", data=np.array([np.array([0.001, 0.5], "f4"),
                                                            np.array([0.2], "f4")], dtype=object), dtype=vl)
        if "spikes/units" in fields:
            f.create_dataset("spikes/units", data=np.array([np.array([5, 699], "u2"), np.array([7], "u2")],
                                                           dtype=object), dtype=h5py.vlen_dtype(np.uint16))
        if "labels" in fields:
            f.create_dataset("labels", data=np.array(labels, "u2"))
    return path


def test_shd_reader_bins_spikes_and_rejects_bad_files(tmp_path):
    x, y = read_shd(_shd(tmp_path / "shd_train.h5"))
    assert x.shape == (2, 100, 700) and y.tolist() == [0, 3]
    assert x[0, 0, 5] == 1 and x[0, 50, 699] == 1 and x[1, 20, 7] == 1 and int(x.sum()) == 3
    with pytest.raises(DataError, match="missing field 'labels'"):
        read_shd(_shd(tmp_path / "nolabels.h5", fields=("spikes/times", "spikes/units")))
    with pytest.raises(DataError, match="sample 1 has label 25, expected 0..19"):
        read_shd(_shd(tmp_path / "badlabel.h5", labels=(0, 25)))
    (tmp_path / "garbage.h5").write_bytes(b"nope")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        read_shd(tmp_path / "garbage.h5")
