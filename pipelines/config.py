"""Configs: defaults < paper preset < YAML files (``--config a.yaml``) < command-line overrides.

Overrides are dotted keys, ``--model.d_model 128`` or ``--model.ffn_kw.experts=4``; values are YAML
(``true``, ``[1, 2]``, ``{a: 1}``) and numbers like ``1e-4`` are numbers. Each app adds shortcuts
(``--model s_mamba`` -> ``model.name``). The resolved config is logged with the run.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from core.utils import deep_merge


class ConfigError(ValueError):
    """A bad option, config file or value; the message says which and what is allowed."""


def parse_value(text: str):
    try:
        v = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(v, str):
        try:
            return float(v) if any(c in v for c in ".eE") else int(v)
        except ValueError:
            return v
    return v


def set_dotted(cfg: dict, key: str, value) -> None:
    parts = key.split(".")
    node = cfg
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--{key}: {'.'.join(parts[:parts.index(p) + 1])} is a value, not a section")
        node = nxt
    node[parts[-1]] = value


def load_yaml(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def parse_args(argv: list[str], shortcuts: dict[str, str]) -> dict:
    """argv -> the user's config (YAML files merged, then overrides), before defaults and presets."""
    files, overrides, i = [], {}, 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("--"):
            raise ConfigError(f"unexpected argument {tok!r}; options look like --section.key value")
        key, eq, val = tok[2:].partition("=")
        if not eq:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                val, i = argv[i + 1], i + 1
            else:
                val = "true"
        i += 1
        if key == "config":
            files.append(load_yaml(val))
            continue
        key = shortcuts.get(key, key)
        set_dotted(overrides, key, parse_value(val))
    return deep_merge({}, *files, overrides)


# options that say how a job runs, not what it computes: a run that changes only these is still the default job
OPERATIONAL = ("threads", "seed", "resume", "trainer.enable_progress_bar", "trainer.enable_model_summary", "mlflow.",
               "callbacks")


def overrides(defaults: dict, cfg: dict) -> dict[str, str]:
    """Flattened options where ``cfg`` differs from ``defaults`` (both resolved), operational ones left out:
    ``{}`` means ``cfg`` is the default job."""
    base = {k: str(v) for k, v in flatten(defaults).items()}
    return {k: str(v) for k, v in flatten(cfg).items() if not k.startswith(OPERATIONAL) and base.get(k) != str(v)}


def flatten(cfg: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
