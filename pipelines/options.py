"""Typed options: every config section is checked against the constructor it feeds, before anything is built.

A :class:`Section` names the callable a section's keys go to (``data`` -> ``ForecastData``, ``model`` -> the chosen
model class, ``optim`` -> the task). Its options are that callable's keyword arguments (``**kw`` followed up the
class's MRO), typed by their annotations (or, unannotated, by their default's type), described by the
``Args:`` lines of the docstrings, plus any ``extra`` :class:`Param` a job adds (``model.name`` with its choices).

    check(cfg, sections)   # coerces values in place ("1e3" for an int -> 1000) or raises ConfigError:
                           # "--model.d_model: expected int, got 'abc'"
    describe(sections)     # the --help text: every option with its type, default, choices and one line

Why not jsonargparse (Lightning's CLI parser)? Our commands name a model by a short name (``--model itransformer``)
and set its options beside it (``--model.d_model 128``), and a paper preset chosen by (model, data, horizon) sits
between the defaults and the user's options; jsonargparse's ``class_path`` / ``init_args`` layering expresses neither
without a resolution step of our own, would change every documented command and YAML, and reports errors with its
own usage text and exit code. Typing from signatures is the part we need, and it is this file.
"""
from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from pipelines.config import ConfigError, parse_value

REQUIRED = inspect.Parameter.empty


@dataclass
class Param:
    """One option: its type (a typing annotation), default, one-line help and, where there are any, choices."""

    name: str
    type: Any = Any
    default: Any = REQUIRED
    help: str = ""
    choices: tuple | None = None


@dataclass
class Section:
    """The options of one config section: ``target``'s keyword arguments less ``skip``, plus ``extra``.

    ``open``: keys ``target`` takes through a ``**kwargs`` we cannot see are allowed (unchecked).
    ``nested``: option name -> function of the section's values giving the Section its dict value is checked
    against (``model.ffn_kw`` -> the chosen FFN variant's options).
    ``listed``: for --help, the option names to show (None: all).
    """

    target: Callable | None = None
    skip: tuple[str, ...] = ()
    extra: tuple[Param, ...] = ()
    choices: dict[str, typing.Iterable] = field(default_factory=dict)
    nested: dict[str, Callable[[dict], "Section | None"]] = field(default_factory=dict)
    help: str = ""
    listed: tuple[str, ...] | None = None

    def params(self) -> dict[str, Param]:
        out = {p.name: p for p in self.extra}  # a job's own options (model.name) first
        if self.target is not None:
            out.update((k, v) for k, v in signature_params(self.target, self.skip).items() if k not in out)
        for name, choices in self.choices.items():
            if name in out:
                out[name].choices = tuple(choices)
        return out

    def is_open(self) -> bool:
        return self.target is not None and _accepts_any(self.target)


# ---------------------------------------------------------------- reading signatures and docstrings
_ARG_LINE = re.compile(r"^\s+(\w+)(?:\s*\([^)]*\))?:\s+(.*\S)\s*$")


def docstring_args(obj) -> dict[str, str]:
    """``name -> description`` from the ``Args:`` block of a docstring (Google style): the argument's line and its
    continuation lines (indented deeper), up to the next argument or a blank line."""
    doc = inspect.getdoc(obj) or ""
    out, inside, current = {}, False, None
    for line in doc.splitlines():
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            inside, current = True, None
            continue
        if not inside:
            continue
        if line and not line.startswith(" "):
            inside, current = False, None
            continue
        m = _ARG_LINE.match(line)
        if m and not line.startswith("        "):
            current = m.group(1) if m.group(1) not in out else None
            if current:
                out[current] = m.group(2)
        elif current and line.startswith("        ") and line.strip():
            out[current] += " " + line.strip()
        else:
            current = None
    return out


def _functions(target) -> list:
    """The __init__s a class's keyword arguments come from (following ``**kw`` up the MRO), or [target]."""
    if not inspect.isclass(target):
        return [target]
    fns = []
    for k in target.__mro__:
        if "__init__" in vars(k):
            fns.append(k)
            params = inspect.signature(k.__init__).parameters.values()
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
    return fns


def _accepts_any(target) -> bool:
    fns = _functions(target)
    last = fns[-1].__init__ if inspect.isclass(target) else fns[-1]
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(last).parameters.values())


def signature_params(target, skip: tuple[str, ...] = ()) -> dict[str, Param]:
    """Keyword options of a class or function, typed and described. The subclass's default wins."""
    out: dict[str, Param] = {}
    for owner in _functions(target):
        fn = owner.__init__ if inspect.isclass(owner) else owner
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # noqa: BLE001 - an annotation we cannot evaluate: fall back to defaults' types
            hints = {}
        docs = {**docstring_args(fn), **docstring_args(owner)}
        for name, p in inspect.signature(fn).parameters.items():
            if name == "self" or name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in out:
                continue
            ann = hints.get(name, Any)
            if ann is Any and p.default not in (REQUIRED, None):
                ann = type(p.default)
            out[name] = Param(name, ann, p.default, docs.get(name, ""), _literal(ann))
        # doc lines of a subclass may describe options it only passes on
        for name, text in docs.items():
            if name in out and not out[name].help:
                out[name].help = text
    return out


def _literal(ann) -> tuple | None:
    if typing.get_origin(ann) is Literal:
        return typing.get_args(ann)
    return None


# ---------------------------------------------------------------- checking values
def type_name(ann) -> str:
    if ann is Any:
        return "any"
    if ann is type(None):
        return "none"
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (list, tuple, typing.Sequence):
        return f"list[{type_name(args[0])}]" if args else "list"
    if origin is dict:
        return "dict"
    return getattr(ann, "__name__", str(ann))


class _Mismatch(Exception):
    pass


def coerce(ann, value):
    """``value`` as type ``ann`` or _Mismatch. Numbers may widen (int -> float) or narrow when whole (1e3 -> int);
    a comma-separated string is a list; ``none``/``null`` is None for an optional."""
    if ann is Any or ann is inspect.Parameter.empty:
        return value
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        for a in sorted(args, key=lambda a: a is str):  # str last: "3" for int | str is 3
            if a is type(None):
                continue
            try:
                return coerce(a, value)
            except _Mismatch:
                pass
        raise _Mismatch
    if origin is Literal:
        if value in args:
            return value
        raise _Mismatch
    if ann is type(None):
        if value is None:
            return None
        raise _Mismatch
    if ann is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if ann is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _Mismatch
    if ann is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if ann is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _Mismatch
    if origin in (list, tuple, typing.Sequence) or ann in (list, tuple):
        if isinstance(value, str):
            value = [parse_value(v.strip()) for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        inner = args[0] if args else Any
        return [coerce(inner, v) for v in value]
    if origin is dict or ann is dict:
        if isinstance(value, dict):
            return value
        raise _Mismatch
    return value  # classes, callables, modules: passed through, the constructor decides


def check(cfg: dict, sections: dict[str, Section], prefix: str = "") -> None:
    """Check (and coerce in place) every listed section of ``cfg``; raise one ConfigError naming the option."""
    for sec_name, section in sections.items():
        values = cfg.get(sec_name)
        if values is None:
            continue
        where = f"{prefix}{sec_name}"
        if not isinstance(values, dict):
            raise ConfigError(f"--{where}: expected a section of options, got {values!r}")
        check_section(values, section, where)


def check_section(values: dict, section: Section, where: str) -> None:
    params = section.params()
    for key in list(values):
        p, opt = params.get(key), f"--{where}.{key}" if where else f"--{key}"
        if p is None:
            if section.is_open():
                continue
            raise ConfigError(f"{opt}: unknown option; valid: {', '.join(sorted(params))}")
        v = values[key]
        try:
            v = coerce(p.type, v)
        except _Mismatch:
            raise ConfigError(f"{opt}: expected {type_name(p.type)}, got {v!r}") from None
        if p.choices is not None and v not in p.choices and not (v is None and p.default is None):
            raise ConfigError(f"{opt}: unknown {v!r}; choose from {', '.join(map(str, p.choices))}")
        values[key] = v
        if key in section.nested and isinstance(v, dict):
            sub = section.nested[key](values)
            if sub is not None:
                check_section(v, sub, opt[2:])


# ---------------------------------------------------------------- --help
def _fmt_default(v) -> str:
    if v is REQUIRED:
        return "required"
    if isinstance(v, type):
        return v.__name__
    return repr(v) if isinstance(v, str) else str(v)


def describe(sections: dict[str, Section], values: dict) -> str:
    """One block per section: ``--sec.key  TYPE  (default D; choices ...)  help``; defaults are the resolved ones."""
    lines = []
    for sec_name, section in sections.items():
        cur = (values.get(sec_name) or {}) if sec_name else values
        head = f"{sec_name or 'top level'}:" + (f"  {section.help}" if section.help else "")
        pre = f"{sec_name}." if sec_name else ""
        lines.append(head)
        params = section.params()
        names = section.listed if section.listed is not None else list(params)
        for name in names:
            p = params[name]
            default = cur.get(name, p.default)
            extra = f"default {_fmt_default(default)}"
            if p.choices:
                extra += f"; choices: {', '.join(map(str, p.choices))}"
            lines.append(f"  --{pre + name:<24} {short_type(p.type):<16} {p.help}  ({extra})".rstrip())
            if name in section.nested and (sub := section.nested[name](cur)) is not None:
                sub_cur = cur.get(name) or {}
                for sp in sub.params().values():
                    d = sub_cur.get(sp.name, sp.default)
                    lines.append(f"      --{pre}{name}.{sp.name:<12} {short_type(sp.type):<14} {sp.help}  "
                                 f"(default {_fmt_default(d)})".rstrip())
        if section.is_open() and section.listed is not None:
            lines.append(f"  (any other keyword argument of {getattr(section.target, '__name__', section.target)})")
        lines.append("")
    return "\n".join(lines) + "\n"


def short_type(ann) -> str:
    """type_name with a Literal shown as its values' type (the choices are listed beside it)."""
    if typing.get_origin(ann) is Literal:
        return type(typing.get_args(ann)[0]).__name__
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return " | ".join(dict.fromkeys(short_type(a) for a in typing.get_args(ann)))
    return type_name(ann)


# ---------------------------------------------------------------- sections every app shares
FFN_CONTRACT = ("dim", "hidden", "out", "act", "drop", "bias")


def ffn_section(values: dict, default: str = "mlp") -> Section | None:
    """The own options of the FFN variant a model section chose (``model.ffn_kw.<option>``)."""
    from core.ffn import FFN

    cls = FFN.get(values.get("ffn", default))
    return Section(cls, skip=FFN_CONTRACT) if cls is not None else None


def ffn_choices() -> dict[str, tuple]:
    """Choices of the ``ffn`` and ``act`` options every model section has."""
    from core.ffn import ACTIVATIONS, FFN

    return {"ffn": tuple(sorted(FFN)), "act": ACTIVATIONS}
