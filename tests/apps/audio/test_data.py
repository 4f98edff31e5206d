"""The question set: answers checkable from the labels, no recording in two splits, the rephrased templates held
out, features cached, bad wavs refused or counted."""
import numpy as np
import pytest
import soundfile as sf
import torch

from apps.audio.data import AudioQA, encode_items, read_wave, recipe_key
from apps.audio.questions import DIGITS, TEMPLATES, TYPES, Vocab, answer
from core.datadir import DataError


@pytest.fixture(scope="module")
def dm(data_root, cache_root):
    d = AudioQA(encoders=["mel"], subset=2)
    d.setup()
    return d


def test_every_answer_follows_from_the_item(dm):
    for split, ds in dm.sets.items():
        for r in ds.rows:
            it, qtype = dm.items[r["item"]], TYPES[r["qtype"]]
            a = dm.vocab.itos[r["answer"]]
            if qtype == "digit":
                assert DIGITS.index(a) == int(it["clips"][0].split("_")[0])
            elif qtype == "speaker":
                assert a == it["clips"][0].split("_")[1]
            elif qtype == "count":
                assert DIGITS.index(a) == len(it["clips"]) in (2, 3)
            elif qtype == "verify":
                asked = next(w for w in r["text"].split() if w in DIGITS)
                assert (a == "yes") == (DIGITS.index(asked) == it["digits"][0])
            elif qtype == "loudness":
                assert (a == "quiet") == (it["gain"] < 1)
            elif qtype == "order":
                pos = next(i for i, w in enumerate(("first", "second", "third")) if w in r["text"])
                assert DIGITS.index(a) == int(it["clips"][pos].split("_")[0])


def test_splits_share_no_recording_and_follow_fsdds_index_rule(dm):
    clips = {s: {c for r in ds.rows for c in dm.items[r["item"]]["clips"]} for s, ds in dm.sets.items()}
    assert not (clips["train"] & clips["test"]) and not (clips["val"] & clips["test"])
    assert not (clips["train"] & clips["val"])
    assert all(int(c.split("_")[2]) < 5 for c in clips["test"])
    held = AudioQA(encoders=["mel"], subset=1, split="speaker:theo")
    held.setup()
    spk = {s: {held.items[r["item"]]["speaker"] for r in ds.rows} for s, ds in held.sets.items()}
    assert spk["test"] == {"theo"} and "theo" not in spk["train"] | spk["val"]


def test_rephrased_templates_only_at_test_and_their_new_words_are_unknown(dm):
    reph = {t[-1] for t in TEMPLATES.values()}
    for split, ds in dm.sets.items():
        texts = {TEMPLATES[TYPES[r["qtype"]]][-1] for r in ds.rows if r["rephrased"]}
        assert (split == "test") == bool(texts)
        train_like = [r for r in ds.rows if not r["rephrased"]]
        assert all(r["text"] not in {t.format(d=w, o=o) for t in reph for w in DIGITS
                                     for o in ("first", "second", "third", "")} for r in train_like)
    v = Vocab()
    assert v.encode("tell me the number said in this recording .")[0] == v.stoi["<unk>"]  # "tell" never trained


def test_features_are_cached_by_recipe_and_reused(dm, cache_root):
    items = dm.items[:3]
    first = encode_items("mel", items, dm.waves)
    files = list((cache_root / "audio").glob("mel-*.pt"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again = encode_items("mel", items, dm.waves)
    assert files[0].stat().st_mtime_ns == stamp  # nothing new to compute: the file is not rewritten
    for it in items:
        torch.testing.assert_close(first[recipe_key(it)], again[recipe_key(it)])
    quiet = dict(items[0], gain=0.1 if items[0]["gain"] == 1.0 else 1.0)
    assert recipe_key(quiet) != recipe_key(items[0])


def test_bad_wavs_are_named_errors_or_counted(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(DataError, match="empty.wav: not a readable"):
        read_wave(tmp_path / "empty.wav")
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 8000)
    with pytest.raises(DataError, match="zero.wav: empty audio"):
        read_wave(tmp_path / "zero.wav")
    (tmp_path / "junk.wav").write_bytes(b"RIFF" + bytes(100))
    with pytest.raises(DataError, match="junk.wav"):
        read_wave(tmp_path / "junk.wav")
    sf.write(tmp_path / "hi.wav", np.sin(np.arange(16000 * 12) / 5).astype(np.float32), 16000)
    counts = __import__("collections").Counter()
    x = read_wave(tmp_path / "hi.wav", counts, max_seconds=10)
    assert counts == {"resampled": 1, "cut": 1} and len(x) == 80000


def test_an_answer_outside_the_vocabulary_is_an_error():
    with pytest.raises(ValueError, match="'maybe' is outside the vocabulary"):
        Vocab().answer_id("maybe")
    assert answer("bigger", {"digits": [7], "speaker": "theo", "gain": 1.0, "long": False}) == "yes"
