"""Typed options: bad values are one error line and exit 2 before anything runs; --help lists the model's own
options with types, defaults, descriptions and choices; --print_config prints the resolved config."""
import os
import subprocess
import sys
from typing import Literal

import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipelines import tracking

from pipelines.config import ConfigError
from pipelines.forecast import ForecastJob
from pipelines.graph import GraphJob
from pipelines.options import Param, Section, check_section, coerce, _Mismatch
from pipelines.runner import resolved_config
from pipelines.spiking import SpikingJob


def _cli(*args, module="pipelines.forecast"):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)


@pytest.mark.parametrize("args,message", [
    (["--model.d_model", "abc"], "error: --model.d_model: expected int, got 'abc'"),
    (["--model.ffn", "nosuch"], "error: --model.ffn: unknown 'nosuch'; choose from blockdense, chess, duo, glu, "
                                "lowrank, mlp, moe, mot, repa, swiglu"),
])
def test_bad_option_on_the_command_line_is_one_line_and_exit_2_with_no_run(args, message, cli):
    code, err = cli(ForecastJob(), *args)
    assert code == 2, err
    assert err.strip().splitlines() == [message], err
    exp = MlflowClient(tracking.tracking_uri()).get_experiment_by_name("forecast")
    assert exp is None or not MlflowClient(tracking.tracking_uri()).search_runs([exp.experiment_id])


@pytest.mark.parametrize("args,message", [
    (["--model.ffn", "moe", "--model.ffn_kw.experts", "many"], "--model.ffn_kw.experts: expected int, got 'many'"),
    (["--model.ffn", "moe", "--model.ffn_kw.expertz", "4"], "--model.ffn_kw.expertz: unknown option"),
    (["--data.features", "X"], "--data.features: expected one of M, S, MS, got 'X'"),
    (["--optim.lr", "fast"], "--optim.lr: expected float, got 'fast'"),
    (["--trainer.max_epochs", "ten"], "--trainer.max_epochs: expected int | none, got 'ten'"),
    (["--trainer.max_epochz", "3"], "--trainer.max_epochz: unknown option"),
    (["--seed", "x"], "--seed: expected int, got 'x'"),
    (["--callbacks.gradient_noise.eta", "big"], "--callbacks.gradient_noise.eta: expected float, got 'big'"),
    (["--modle.d_model", "3"], "unknown config section(s) ['modle']"),
])
def test_bad_option_names_the_option_and_what_was_expected(args, message):
    with pytest.raises(ConfigError) as e:
        resolved_config(ForecastJob(), args)
    assert str(e.value).startswith(message), str(e.value)


def _help(job, argv):
    lines = job.usage(resolved_config(job, argv)).splitlines()
    return {ln.split()[0]: ln for ln in lines if ln.strip().startswith("--")}


def test_help_lists_the_chosen_models_own_options_with_types_and_choices():
    lines = _help(ForecastJob(), ["--model", "s_mamba"])
    assert "int" in lines["--model.d_model"] and "width of a variate token" in lines["--model.d_model"]
    assert "(default 256" in lines["--model.d_model"]  # S-Mamba's ETTh1 preset, not the class default 512
    assert "SSM state size" in lines["--model.d_state"]
    assert "choices: blockdense, chess, duo, glu, lowrank, mlp, moe, mot, repa, swiglu" in lines["--model.ffn"]
    assert "choices: s_mamba, itransformer, rlinear" in lines["--model.name"]
    assert "float" in lines["--optim.lr"] and "choices: type1, constant" in lines["--optim.lradj"]
    lines = _help(ForecastJob(), ["--model", "rlinear"])
    assert "--model.affine" in lines and "--model.d_model" not in lines
    assert "--model.ffn_kw.experts" in _help(ForecastJob(), ["--model.ffn", "moe"])
    assert "--model.delays" in _help(SpikingJob(), []) and "--task.temperature" in _help(GraphJob(), ["--method", "sf"])


def test_help_print_config_and_a_bad_model_on_the_command_line(capsys):
    """``python -m`` for real once (exit code and output of the module's entry point), then in-process."""
    from pipelines.runner import main

    r = _cli("--model", "itransformer", "--help")
    assert r.returncode == 0 and "--model.n_heads" in r.stdout, r.stderr
    r = _cli("--model", "nosuch")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: unknown forecast model 'nosuch'; known: s_mamba, itransformer, rlinear"], r.stderr
    assert "Traceback" not in r.stderr
    capsys.readouterr()
    assert main(ForecastJob(), ["--model", "rlinear", "--data.batch_size", "64", "--print_config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["name"] == "rlinear" and cfg["data"]["batch_size"] == 64
    assert cfg["optim"]["lr"] == 5e-3  # RLinear's ETTh1 preset filled in


@pytest.mark.parametrize("job,argv", [
    (GraphJob(), ["--model.hidden", "x"]), (GraphJob(), ["--model.init", "nope"]),
    (GraphJob(), ["--method", "sf", "--task.temperature", "warm"]),
    (SpikingJob(), ["--model.delays", "sometimes"]), (SpikingJob(), ["--data.encoder.channels", "many"]),
])
def test_every_app_checks_its_options(job, argv):
    with pytest.raises(ConfigError):
        resolved_config(job, argv)


def test_values_are_coerced_to_the_declared_type():
    cfg = resolved_config(ForecastJob(), ["--model.d_model", "1e2", "--optim.lr", "1", "--data.columns", "OT,HUFL"])
    assert cfg["model"]["d_model"] == 100 and isinstance(cfg["model"]["d_model"], int)
    assert cfg["optim"]["lr"] == 1.0 and isinstance(cfg["optim"]["lr"], float)
    assert cfg["data"]["columns"] == ["OT", "HUFL"]


def test_coerce_rules():
    assert coerce(int | None, "none") is None and coerce(int | None, 3) == 3
    assert coerce(int | str, "abc") == "abc" and coerce(int | str, 3) == 3
    assert coerce(list[int], "1,2") == [1, 2]
    assert coerce(Literal["a", "b"], "b") == "b"
    for ann, v in ((int, 1.5), (int, True), (bool, "yes?"), (float, "x"), (Literal["a"], "c"), (dict, 3)):
        with pytest.raises(_Mismatch):
            coerce(ann, v)


def test_section_from_a_signature_with_docstring_help():
    def f(width: int = 4, mode: Literal["x", "y"] = "x", rate=0.5):
        """Doc.

        Args:
            width: how wide.
            mode: which mode.
        """
    params = Section(f).params()
    assert params["width"].help == "how wide." and params["mode"].choices == ("x", "y")
    assert params["rate"].type is float  # from the default
    values = {"width": 2.0, "mode": "y", "rate": 1}
    check_section(values, Section(f), "s")
    assert values == {"width": 2, "mode": "y", "rate": 1.0}
    with pytest.raises(ConfigError, match="--s.mode: expected one of x, y, got 'z'"):
        check_section({"mode": "z"}, Section(f), "s")
    with pytest.raises(ConfigError, match="choose from"):
        check_section({"k": "q"}, Section(extra=(Param("k", str, "a", "", ("a", "b")),)), "s")
