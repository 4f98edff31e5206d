"""Where the audio information is inside the LM (PAL's information-transfer analysis).

- :func:`layer_states`: the text state at ``<ans>`` after every layer [layers, N, dim], for one question per
  single-clip item, with the item's digit, speaker and loudness labels.
- :func:`probe_accuracy`: a linear probe (logistic regression) per layer and label, fitted on the training items'
  states and scored on the test items' -- how linearly readable each property is at each depth.
- :func:`audio_attention_mass`: per layer, the share of the ``<ans>`` query's attention (mean over heads) that goes
  to audio keys: PLITS's prefix tokens or LAL's context keys.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from apps.audio.questions import SPEAKERS, TYPES

LABELS = ("digit", "speaker", "loudness")


def _digit_rows(dm, split: str, limit: int) -> list[dict]:
    rows = [r for r in dm.sets[split].rows if TYPES[r["qtype"]] == "digit" and not r["rephrased"]]
    return rows[:limit]


def layer_states(model, dm, split: str, limit: int = 2000) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """-> (states [layers, N, dim] at ``<ans>``, label name -> [N]) for the digit questions of ``split``."""
    rows = _digit_rows(dm, split, limit)
    states, labels = [], {k: [] for k in LABELS}
    model.eval()
    with torch.no_grad():
        for i in range(0, len(rows), 256):
            b = dm.collate(rows[i:i + 256])
            hidden: list = []
            model(b["tokens"], b["audio"], hidden=hidden)
            last = (b["tokens"] != 0).sum(1) - 1
            states.append(torch.stack([h[torch.arange(len(last)), last] for h in hidden]))
            for r in rows[i:i + 256]:
                it = dm.items[r["item"]]
                labels["digit"].append(it["digits"][0])
                labels["speaker"].append(SPEAKERS.index(it["speaker"]))
                labels["loudness"].append(int(it["gain"] >= 0.5))
    return torch.cat(states, 1).numpy(), {k: np.array(v) for k, v in labels.items()}


def probe_accuracy(model, dm, limit: int = 2000) -> dict[str, list[float]]:
    """Label -> test accuracy of a linear probe per layer (fitted on the training split's states)."""
    xtr, ytr = layer_states(model, dm, "train", limit)
    xte, yte = layer_states(model, dm, "test", limit)
    out = {}
    for k in LABELS:
        accs = []
        for layer in range(len(xtr)):
            mu, sd = xtr[layer].mean(0), xtr[layer].std(0) + 1e-6
            clf = LogisticRegression(max_iter=500).fit((xtr[layer] - mu) / sd, ytr[k])
            accs.append(float(clf.score((xte[layer] - mu) / sd, yte[k])))
        out[k] = accs
    return out


def audio_attention_mass(model, dm, split: str = "test", limit: int = 512) -> list[float]:
    """Per layer, the mean share of the ``<ans>`` query's attention on audio keys (0 where a layer sees none)."""
    rows = _digit_rows(dm, split, limit)
    b = dm.collate(rows)
    last = (b["tokens"] != 0).sum(1) - 1
    masses: list[float] = []

    def hook(att, args, kwargs):
        x = args[0]
        p = att.attention_weights(x, **kwargs)  # [B, H, Nq, Nk]
        n_audio = p.shape[-1] - b["tokens"].shape[1]  # PLITS prefix or LAL context: the keys before the text
        q_at = x.shape[1] - b["tokens"].shape[1] + last  # the <ans> row (after any prefix)
        rows_p = p[torch.arange(len(last)), :, q_at]  # [B, H, Nk]
        masses.append(float(rows_p[..., :n_audio].sum(-1).mean()) if n_audio > 0 else 0.0)

    handles = [blk.mixer.register_forward_pre_hook(hook, with_kwargs=True) for blk in model.blocks]
    model.eval()
    try:
        with torch.no_grad():
            model(b["tokens"], b["audio"])
    finally:
        for h in handles:
            h.remove()
    return masses
