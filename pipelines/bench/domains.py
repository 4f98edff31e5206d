"""``python -m pipelines.bench ffn --sections domains``: every FFN variant through every app's default job.

The project's claim is one FFN backbone across the domains; this section shows it side by side. Each cell is the
app's default job (``pipelines.<app>``, through :func:`pipelines.runner.fit_test`) with ``--model.ffn <variant>``
at the training budget of :data:`BUDGETS` (stated in the table), over ``--domain-seeds``: the app's headline test metric
(mean ± std), the model's trainable parameters, and one training step's time relative to ``mlp`` on the same batch
of that app, all variants timed interleaved in one process after a warm-up.

Each training is a child MLflow run tagged with a key of (app, variant, seed, budget, code hash); ``--resume``
reuses every finished child with the same key (so an interrupted table continues where it stopped, and a change
to the code starts afresh).
"""
from __future__ import annotations

import hashlib
import json

import mlflow
import torch
from mlflow.tracking import MlflowClient

from core.utils import deep_merge
from pipelines import tracking
from pipelines.bench.sections import code_hash, interleaved_ms, train
from pipelines.bench.table import markdown, mean_std

# app -> (the budget: options over its default job, the headline metric, its label, higher is better)
BUDGETS = {
    "forecast": ({"trainer": {"max_epochs": 2}}, "test_mse", "test MSE", False),
    "ais": ({"model": {"members": 1}, "trainer": {"max_epochs": 6}}, "test_mean_m_120s", "+120 s error m", False),
    "graph": ({"model": {"ffn_sublayer": True}}, "test_acc", "test acc", True),
    "traffic": ({"model": {"pretrain_epochs": 1}, "trainer": {"max_epochs": 6}}, "test_macro_f1", "macro-F1", True),
    "audio": ({"data": {"subset": 5}, "model": {"stage0_epochs": 1, "stage1_epochs": 1}, "trainer": {"max_epochs": 3}},
              "test_acc", "macro acc", True),
}
QUICK = {  # plumbing only: a slice of every split
    "forecast": {"trainer": {"max_epochs": 1, "limit_train_batches": 20, "limit_val_batches": 5,
                             "limit_test_batches": 5}},
    "ais": {"model": {"members": 1}, "trainer": {"max_epochs": 1, "limit_train_batches": 10}},
    "graph": {"model": {"ffn_sublayer": True}, "trainer": {"max_epochs": 20}},
    "traffic": {"model": {"pretrain_epochs": 0}, "trainer": {"max_epochs": 1}},
    "audio": {"data": {"subset": 2}, "model": {"stage0_epochs": 0, "stage1_epochs": 0}, "trainer": {"max_epochs": 1}},
}
NOT_APPLICABLE = {"spiking": "no FFN to swap: every layer is a delayed spiking synapse (DelayedLinear + LIF "
                             "neurons) and the readout integrates membrane potentials; a real-valued FFN there would "
                             "be another model, not the same one with its FFN swapped"}
APPS = tuple(BUDGETS) + tuple(NOT_APPLICABLE)
# what a cell's training depends on (with pipelines/<app>.py): a change here retrains on --resume, one elsewhere not
TRAINING_CODE = ("core", "apps", "pipelines/runner.py", "pipelines/options.py", "pipelines/config.py",
                 "pipelines/callbacks.py", "pipelines/bench/domains.py")


def jobs() -> dict:
    from pipelines.ais import AISJob
    from pipelines.audio import AudioJob
    from pipelines.forecast import ForecastJob
    from pipelines.graph import GraphJob
    from pipelines.traffic import TrafficJob

    return {"forecast": ForecastJob, "ais": AISJob, "graph": GraphJob, "traffic": TrafficJob, "audio": AudioJob}


def _user(variant: str, kw: dict, budget: dict, seed: int) -> dict:
    return deep_merge(budget, {"seed": seed, "model": {"ffn": variant, "ffn_kw": kw}})


def _key(app: str, variant: str, kw: dict, budget: dict, seed: int, code: str) -> str:
    text = json.dumps([app, variant, kw, budget, seed, code], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _finished(keys: set[str]) -> dict[str, dict]:
    """key -> metrics of the newest finished child run with that key in the ``bench`` experiment."""
    client = MlflowClient(tracking.tracking_uri())
    exp = client.get_experiment_by_name("bench")
    if exp is None or not keys:
        return {}
    out = {}
    for r in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED' and tags.`domains.key` != ''",
                                order_by=["attributes.start_time DESC"]):
        k = r.data.tags.get("domains.key")
        if k in keys and k not in out:
            out[k] = dict(r.data.metrics)
    return out


def _train_cell(job, app: str, variant: str, kw: dict, budget: dict, seed: int, key: str, parent: str) -> dict:
    out = train(job, _user(variant, kw, budget, seed))
    metrics = {**out.metrics, **out.reference, "fit_seconds": out.fit_seconds}
    with mlflow.start_run(run_name=f"domains-{app}-{variant}-s{seed}", nested=True,
                          tags={"domains.key": key, "mlflow.parentRunId": parent}):
        mlflow.log_params({"app": app, "variant": variant, "seed": seed, "budget": json.dumps(budget)[:480]})
        mlflow.log_metrics({k: v for k, v in metrics.items() if v == v})
    return metrics


def step_times(app: str, variants: dict, budget: dict, reps: int) -> tuple[dict, dict]:
    """One training step (forward, loss, backward) of the app's default model with each variant on the same first
    training batch, interleaved -> ({variant: median ms}, {variant: trainable parameters})."""
    job = jobs()[app]()
    base = job.resolve(deep_merge(budget, {"threads": torch.get_num_threads()}))
    dm = job.data(base)
    batch = next(iter(dm.train_dataloader()))
    fns, params = {}, {}
    for name, kw in variants.items():
        torch.manual_seed(0)
        task = job.task(job.resolve(_user(name, kw, budget, 0)), dm)
        task.log = task.log_dict = lambda *a, **k: None  # outside a Trainer: nothing to log to
        task.train()
        params[name] = sum(p.numel() for p in task.parameters() if p.requires_grad)

        def step(task=task):
            task.zero_grad(set_to_none=True)
            out = task.training_step(batch, 0)
            (out["loss"] if isinstance(out, dict) else out).backward()
        fns[name] = step
    return interleaved_ms(fns, reps, warmup=2), params


def domains(a) -> str:
    """The variant x app table (see the module docstring)."""
    from pipelines.bench.ffn import VARIANTS

    variants = {v: VARIANTS.get(v, {}) for v in a.variants}
    if "mlp" not in variants:
        variants = {"mlp": {}, **variants}  # the step-time reference
    apps = [x for x in a.apps if x in BUDGETS]
    budgets = {x: (QUICK if a.quick else {k: v[0] for k, v in BUDGETS.items()})[x] for x in apps}
    code = code_hash(TRAINING_CODE + tuple(f"pipelines/{x}.py" for x in apps))
    keys = {(x, v, s): _key(x, v, variants[v], budgets[x], s, code) for x in apps for v in variants for s in a.domain_seeds}
    done = _finished(set(keys.values())) if a.resume else {}
    if a.resume:
        print(f"domains: {len(done)} of {len(keys)} trainings kept from earlier runs (same code {code})", flush=True)
    parent = mlflow.active_run().info.run_id
    cells: dict[tuple, list[float]] = {}
    times, params = {}, {}
    for app in apps:
        job = jobs()[app]()
        metric = BUDGETS[app][1]
        for v in variants:
            for s in a.domain_seeds:
                k = keys[app, v, s]
                m = done.get(k) or _train_cell(job, app, v, variants[v], budgets[app], s, k, parent)
                cells.setdefault((app, v), []).append(m[metric])
                print(f"  domains {app} {v} seed {s}: {metric} {m[metric]:.4f}" + (" (kept)" if k in done else ""),
                      flush=True)
        times[app], params[app] = step_times(app, variants, budgets[app], a.reps)
    rows, skipped = [], [x for x in a.apps if x in NOT_APPLICABLE]
    for v in variants:
        row = [v]
        for app in apps:
            rel = times[app][v] / times[app]["mlp"]
            row.append(f"{mean_std(cells[app, v], 3)} · {params[app][v] / 1e3:,.0f}k · {rel:.2f}x")
        rows.append(row + ["n/a (no FFN, below)"] * len(skipped))
    head = ["ffn"] + [f"{app}: {BUDGETS[app][2]} {'↑' if BUDGETS[app][3] else '↓'}" for app in apps] + skipped
    budget_text = "; ".join(f"{app} `{json.dumps(budgets[app])}`" for app in apps)
    na = "; ".join(f"{app}: {why}" for app, why in NOT_APPLICABLE.items() if app in a.apps)
    return (markdown(head, rows) + f"\n\nEach cell: the app's headline test metric, mean ± std over seeds "
            f"{a.domain_seeds} · trainable parameters of the whole model · one training step's time relative to mlp on the "
            f"same batch ({a.reps} interleaved rounds, medians). Every training is the app's default job "
            f"(`python -m pipelines.<app>`) with `--model.ffn <variant>` and these options over its defaults: "
            f"{budget_text}; FFN options: {json.dumps({v: k for v, k in variants.items() if k})}. "
            f"Graph: the GCN gets an FFN sublayer after each convolution (`--model.ffn_sublayer true`), which the "
            f"default GCN does not have. Duo serves its big route (no router stage in these jobs); CHESS is "
            f"uncalibrated (the dense form). Code {code}." + (f" Not applicable: {na}." if na else ""))
