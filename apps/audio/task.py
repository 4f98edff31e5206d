"""Training the audio LM in stages (PAL / LTU): 0 the LM alone with an oracle in the audio slot, 1 the connectors with
the LM frozen, 2 everything.

``AudioQATask(model, stage)``: cross-entropy of the answer word at ``<ans>``; predictions are restricted to answer
words. ``val_loss`` is 1 - the macro mean over question types of the validation accuracy, so the checkpoint is
chosen on the score that is tested. Test metrics: ``test_acc`` (macro over types, training templates),
``test_acc_<type>``, ``test_acc_rephrased`` (the held-out wording, macro over types) and ``test_acc_blind`` (the
same model with the audio removed, training templates). The stages are run by the job
(``pipelines/audio.py: AudioJob.steps``), each a fit of this module at its ``stage``.
"""
from __future__ import annotations

from collections import Counter

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from apps.audio.questions import TYPES
from core.ffn import collect_aux_loss


def set_stage(model, stage: int) -> None:
    """requires_grad for a stage: 1 trains ``model.connector_parameters()`` only; 0 and 2 train everything (a
    model with its own ``set_stage``, a frozen pretrained LM, decides itself)."""
    if hasattr(model, "set_stage"):
        return model.set_stage(stage)
    for p in model.parameters():
        p.requires_grad_(stage != 1)
    if stage == 1:
        for p in model.connector_parameters():
            p.requires_grad_(True)


def answer_mask(size: int, answer_ids: list[int]) -> torch.Tensor:
    """[size]: 0 at the answer words, -inf elsewhere; added to the logits, argmax and softmax see answers only."""
    mask = torch.full((size,), float("-inf"))
    mask[answer_ids] = 0.0
    return mask


def macro_by_type(correct: torch.Tensor, qtype: torch.Tensor) -> tuple[float, dict[str, float]]:
    """-> (mean over the types present of their accuracy, type -> accuracy)."""
    per = {TYPES[t]: correct[qtype == t].float().mean().item() for t in qtype.unique().tolist()}
    return (sum(per.values()) / len(per) if per else float("nan")), per


def majority_floor(train_rows: list[dict], test_rows: list[dict]) -> tuple[float, dict[str, float]]:
    """The prior a model could learn without listening: each question type's most common training answer, scored
    on ``test_rows`` -> (macro over types, type -> accuracy). Rows are the data module's question dicts."""
    common: dict[int, Counter] = {}
    for r in train_rows:
        common.setdefault(r["qtype"], Counter())[r["answer"]] += 1
    guess = {t: c.most_common(1)[0][0] for t, c in common.items()}
    correct = torch.tensor([guess.get(r["qtype"]) == r["answer"] for r in test_rows])
    return macro_by_type(correct, torch.tensor([r["qtype"] for r in test_rows]))


class AudioQATask(pl.LightningModule):
    """Wraps an :class:`~apps.audio.models.AudioLM`.

    Args:
        lr: AdamW peak learning rate (one-cycle).
        weight_decay: AdamW weight decay.
        text_only: the model never gets the audio (nor stage 0's oracle): the floor of what the questions alone
            answer, trained exactly as the model it is compared with.
    """

    def __init__(self, model, answer_ids: list[int], stage: int = 2, lr: float = 1e-3, weight_decay: float = 0.01,
                 text_only: bool = False):
        super().__init__()
        self.model, self.stage, self.lr, self.weight_decay = model, stage, lr, weight_decay
        self.text_only = text_only
        self.register_buffer("answer_mask", answer_mask(model.head.out_features, answer_ids))
        set_stage(model, stage)

    def forward(self, batch, blind: bool = False):
        if self.text_only:
            return self.model(batch["tokens"], None)
        if self.stage == 0:
            return self.model(batch["tokens"], oracle=batch["oracle"])
        return self.model(batch["tokens"], None if blind else batch["audio"])

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self(batch), batch["answer"]) + collect_aux_loss(self.model)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch["answer"]))
        return loss if loss.requires_grad else None  # None: nothing on the path trains (a frozen LM, text only)

    def predict_ids(self, batch, blind: bool = False) -> torch.Tensor:
        return (self(batch, blind) + self.answer_mask).argmax(-1)

    def on_validation_epoch_start(self):
        self._out = []

    def validation_step(self, batch, batch_idx):
        self._out.append((self.predict_ids(batch) == batch["answer"], batch["qtype"]))

    def on_validation_epoch_end(self):
        correct, qtype = (torch.cat(t) for t in zip(*self._out))
        acc, _ = macro_by_type(correct, qtype)
        self.log("val_loss", 1.0 - acc, prog_bar=True)
        self.log("val_acc", acc)

    def on_test_epoch_start(self):
        self._out = []

    def test_step(self, batch, batch_idx):
        self._out.append((self.predict_ids(batch) == batch["answer"], self.predict_ids(batch, True) == batch["answer"],
                          batch["qtype"], batch["rephrased"]))

    def on_test_epoch_end(self):
        correct, blind, qtype, reph = (torch.cat(t) for t in zip(*self._out))
        acc, per = macro_by_type(correct[~reph], qtype[~reph])
        self.log("test_acc", acc)
        for t, v in per.items():
            self.log(f"test_acc_{t}", v)
        self.log("test_acc_blind", macro_by_type(blind[~reph], qtype[~reph])[0])
        if reph.any():
            self.log("test_acc_rephrased", macro_by_type(correct[reph], qtype[reph])[0])

    def predict_step(self, batch, batch_idx):
        """-> the answer word id [B] of each question."""
        return self.predict_ids(batch)

    def configure_optimizers(self):
        opt = torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=self.lr,
                                weight_decay=self.weight_decay)
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=steps, pct_start=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
