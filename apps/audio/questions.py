"""The audio question-answering set built on FSDD: question types, templates, answers, and the word vocabulary.

Every answer is checkable from FSDD's file names or the signal: the digit and the speaker from the name, loud /
quiet from a gain the data module applied (1.0 or 0.1, i.e. -20 dB), long / short from the clip's length against
the training clips' median, the rest derived from the digit; clips of 2-3 digits in a row (one speaker, 0.1 s of
silence between) are asked how many digits and which came first / second / third.

Each type has four training templates and one **rephrased** template used only at test time
(``test_acc_rephrased``): it measures whether the model follows a question worded as it never saw.
"""
from __future__ import annotations

import re

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
ORDINALS = ("first", "second", "third")
SINGLE_TYPES = ("digit", "speaker", "loudness", "length", "parity", "bigger", "verify")
MULTI_TYPES = ("count", "order")
TYPES = SINGLE_TYPES + MULTI_TYPES

TEMPLATES: dict[str, tuple[str, ...]] = {  # the last one of each: rephrased, test only
    "digit": ("which digit is spoken ?", "what number does the speaker say ?", "what digit do you hear ?",
              "name the spoken digit .", "tell me the number said in this recording ."),
    "speaker": ("who is speaking ?", "which speaker is this ?", "whose voice is it ?", "name the speaker .",
                "tell me who said this number ."),
    "loudness": ("is the clip loud or quiet ?", "is the recording quiet or loud ?", "how loud is the voice ?",
                 "is the speaker loud ?", "would you call this recording quiet ?"),
    "length": ("is the clip long or short ?", "is the recording short or long ?", "how long is the clip ?",
               "is the word said quickly ?", "would you call this recording long ?"),
    "parity": ("is the digit odd or even ?", "is the number even or odd ?", "is the spoken digit odd ?",
               "what parity has the digit ?", "tell me if the number said is even ."),
    "bigger": ("is the digit bigger than four ?", "is the number greater than four ?",
               "is the spoken digit above four ?", "does the digit exceed four ?",
               "tell me if the number said is more than four ."),
    "verify": ("is the digit {d} ?", "does the speaker say {d} ?", "is the spoken number {d} ?",
               "did you hear {d} ?", "tell me if the number said is {d} ."),
    "count": ("how many digits are spoken ?", "how many numbers do you hear ?", "count the spoken digits .",
              "how many digits does the speaker say ?", "tell me the amount of numbers said ."),
    "order": ("what was the {o} digit ?", "which digit came {o} ?", "what number was said {o} ?",
              "name the {o} spoken digit .", "tell me the {o} number in this recording ."),
}
ANSWERS: dict[str, tuple[str, ...]] = {
    "digit": DIGITS, "speaker": SPEAKERS, "loudness": ("loud", "quiet"), "length": ("long", "short"),
    "parity": ("odd", "even"), "bigger": ("yes", "no"), "verify": ("yes", "no"), "count": ("two", "three"),
    "order": DIGITS,
}
SPECIALS = ("<pad>", "<unk>", "<bos>", "<ans>")
PAD, UNK, BOS, ANS = range(4)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+|[?.]", text.lower())


def answer(qtype: str, item: dict, arg: int | None = None) -> str:
    """The checkable answer. ``item``: digits (list), speaker, gain, long (bool); ``arg``: the asked digit (verify)
    or the asked position (order)."""
    d = item["digits"][0]
    return {
        "digit": lambda: DIGITS[d], "speaker": lambda: item["speaker"],
        "loudness": lambda: "loud" if item["gain"] >= 0.5 else "quiet",
        "length": lambda: "long" if item["long"] else "short", "parity": lambda: "odd" if d % 2 else "even",
        "bigger": lambda: "yes" if d > 4 else "no", "verify": lambda: "yes" if d == arg else "no",
        "count": lambda: DIGITS[len(item["digits"])], "order": lambda: DIGITS[item["digits"][arg]],
    }[qtype]()


def oracle_words(item: dict) -> list[str]:
    """What the audio slot holds in stage 0 (the LM learning the text side): the item's labels as words."""
    if len(item["digits"]) > 1:
        return [DIGITS[d] for d in item["digits"]]
    return [DIGITS[item["digits"][0]], item["speaker"], "loud" if item["gain"] >= 0.5 else "quiet",
            "long" if item["long"] else "short"]


class Vocab:
    """Word-level vocabulary: specials, the training templates' words, answers and oracle words. Unknown -> <unk>."""

    def __init__(self):
        toks = list(SPECIALS)
        for qtype, temps in TEMPLATES.items():
            for t in temps[:-1]:
                toks += words(t.format(d="zero", o="first"))
        toks += [w for a in ANSWERS.values() for w in a] + list(ORDINALS) + list(DIGITS) + ["loud", "quiet",
                                                                                          "long", "short"]
        self.itos = list(dict.fromkeys(toks))
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.answers = sorted({self.stoi[w] for a in ANSWERS.values() for w in a})

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(w, UNK) for w in words(text)]

    def answer_id(self, word: str) -> int:
        if word not in self.stoi:
            raise ValueError(f"answer {word!r} is outside the vocabulary")
        return self.stoi[word]

    # the text interface the data module, the model and the predictor share (apps.audio.hf_lm.HFText is the other)
    pad = PAD

    def question(self, text: str, max_text: int = 32) -> list[int]:
        """``<bos> question <ans>``, an overlong question keeping its last words; the answer is read at ``<ans>``."""
        return [BOS] + self.encode(text)[-(max_text - 2):] + [ANS]

    def oracle(self, labels: list[str]) -> list[int]:
        return [self.stoi[w] for w in labels]

    def word(self, i: int) -> str:
        return self.itos[i]
