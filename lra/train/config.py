"""Checks on the composed config, and the attention it chooses.

``validate`` runs before anything is written: every key must be one the harness knows (a typo gets the
closest valid name), and every value must have the type its code declares (the annotations of
``lightning.Trainer``, ``ModelConfig``, the attention backend, the task's data module and each ``_target_``;
for the top-level keys, the type of their default in ``conf/train.yaml``).
"""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

import lra.attention
import lra.data
from lra.attention.registry import AttentionChoice, UnknownBackendError, backend_class
from lra.conf import CONF_DIR, unknown_key_message
from lra.model import ModelConfig


class ConfigError(ValueError):
    """A config the run cannot use; the message names the key and the valid values."""


def attention_choice(cfg: DictConfig) -> AttentionChoice:
    """The run's attention backend and options (``attention=custom``: the class ``attention.target`` names)."""
    try:
        return AttentionChoice.from_config(OmegaConf.to_container(cfg.attention, resolve=True))
    except UnknownBackendError as error:
        raise ConfigError(str(error)) from None


def validate(cfg: DictConfig, config_name: str = "train") -> None:
    """Fail before any work if a key is unknown or a value has the wrong type; the message names the key,
    the value and what is expected."""
    check_top_level(cfg, config_name)
    attention = attention_choice(cfg)
    if cfg.task.name not in lra.data.TASKS:
        raise ConfigError(f"unknown task {cfg.task.name!r}; known: {', '.join(sorted(lra.data.TASKS))}")
    _check_keys("task", cfg.task, lra.data.task_options(cfg.task.name) | {"name"})
    _check_keys("model", cfg.model, {f.name for f in fields(ModelConfig)})
    trainer_keys = set(inspect.signature(L.Trainer.__init__).parameters) - {"self", "callbacks", "logger"}
    _check_keys("trainer", cfg.trainer, trainer_keys)
    for group in ("optimizer", "scheduler"):
        if cfg.get(group):
            _check_target(group, cfg[group])
    sources = _interpolated_from(cfg)
    hints = {"trainer": _hints(L.Trainer.__init__), "model": _hints(ModelConfig),
             "attention": _hints(attention.backend_class.__init__), "task": _task_hints(cfg.task.name)}
    for group, group_hints in hints.items():
        _check_types(group, OmegaConf.to_container(cfg[group], resolve=True), group_hints, sources)
    try:
        model = ModelConfig(**OmegaConf.to_container(cfg.model, resolve=True))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if model.causal and not attention.backend_class.supports_causal:
        causal = [n for n in lra.attention.available() if backend_class(n).supports_causal]
        raise ConfigError(f"model.causal=true: attention {attention.name!r} has no causal form; backends with one: "
                          f"{', '.join(causal)}")
    if cfg.trainer.max_steps <= 0:
        raise ConfigError("trainer.max_steps must be a positive number of optimizer steps (LRA counts steps)")


def top_level_defaults(config_name: str) -> dict[str, Any]:
    """The top-level keys ``conf/<config_name>.yaml`` defines: its own values, and its config groups (None)."""
    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / f"{config_name}.yaml"))
    groups = [next(iter(entry)) for entry in raw.pop("defaults", []) if isinstance(entry, dict)]
    return {**{group: None for group in groups if group != "hydra"}, **raw}


# Top-level keys whose values are not of their default's type alone
TOP_LEVEL_TYPES: dict[str, Any] = {"test_after_fit": bool | typing.Literal["finished"]}


def check_top_level(cfg: DictConfig, config_name: str) -> None:
    """Refuse a top-level key the config does not define (``+attenton=performer`` would otherwise train
    softmax); check the type of each top-level value against its default's."""
    defaults = top_level_defaults(config_name)
    for key in cfg:
        if key not in defaults:
            raise ConfigError(unknown_key_message(str(key), "", list(defaults)))
    interpolated = set(_interpolated_from(cfg).values())
    for key, default in defaults.items():
        if key in interpolated or key not in cfg or isinstance(cfg[key], DictConfig):
            continue
        expected = TOP_LEVEL_TYPES.get(key) or {bool: bool, int: int, float: float}.get(type(default))
        if expected is not None:
            _check_value(key, cfg[key], expected)


def _check_keys(group: str, node: DictConfig, valid: set[str]) -> None:
    unknown = sorted(set(node) - valid)
    if unknown:
        close = [match for key in unknown for match in difflib.get_close_matches(key, valid, n=1, cutoff=0.6)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"{group} has no key(s) {', '.join(unknown)}{hint}; valid keys: {', '.join(sorted(valid))}")


def _check_target(group: str, node: DictConfig) -> None:
    """A ``_target_`` node: its keys must be parameters of the target, with the types it declares."""
    try:
        target = hydra.utils.get_object(node._target_)
    except Exception as error:  # hydra wraps the import error
        raise ConfigError(f"{group}._target_={node._target_!r} cannot be imported ({error})") from None
    parameters = inspect.signature(target).parameters
    settings = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if not k.startswith("_")}
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        # the leading arguments without a default (params, optimizer, total_steps) are the harness's to pass
        settable = {key for key, p in parameters.items() if p.default is not inspect.Parameter.empty}
        _check_keys(group, OmegaConf.create(settings), settable)
    _check_types(group, settings, _hints(target.__init__ if inspect.isclass(target) else target), {})


def _hints(function: Callable[..., Any] | type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:  # a name only imported for type checkers: no types to check against
        return {}


def _task_hints(task: str) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for cls in reversed(lra.data.TASKS[task].__mro__):
        if "__init__" in vars(cls):
            hints.update(_hints(cls.__init__))
    return hints


def _interpolated_from(cfg: DictConfig) -> dict[str, str]:
    """Group keys set by a plain top-level interpolation (``trainer.precision: ${precision}``), mapped to
    the key that sets them, so a message names the key the user set."""
    raw = OmegaConf.to_container(cfg, resolve=False)
    return {f"{group}.{key}": value[2:-1] for group, node in raw.items() if isinstance(node, dict)
            for key, value in node.items()
            if isinstance(value, str) and value.startswith("${") and value.endswith("}") and value[2:-1] in raw}


def _check_types(group: str, values: dict[str, Any], hints: dict[str, Any], sources: dict[str, str]) -> None:
    for key, value in values.items():
        if key in hints:
            dotted = f"{group}.{key}"
            _check_value(sources.get(dotted, dotted), value, hints[key])


def _check_value(key: str, value: Any, hint: Any) -> None:
    if not _matches(value, hint):
        raise ConfigError(f"{key}={value!r}: expected {_describe(hint)}")


def _matches(value: Any, hint: Any) -> bool:
    """Whether a config value (a plain YAML value) can stand for an argument annotated ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or isinstance(hint, typing.TypeVar):
        return True
    if hint is type(None) or hint is None:
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if (origin or hint) in (list, tuple, collections.abc.Sequence):
        return isinstance(value, list)
    if (origin or hint) in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    if isinstance(hint, type) and hint.__module__ == "builtins":
        return isinstance(value, hint)
    return isinstance(hint, type) and isinstance(value, hint)  # other classes: no YAML value is one


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType, typing.Literal):
        literals = [repr(a) for a in _flatten(hint) if not isinstance(a, type) and a is not None]
        others = [_describe(a) for a in _flatten(hint) if isinstance(a, type) or a is None]
        parts = ([f"one of {', '.join(literals)}"] if literals else []) + [o for o in dict.fromkeys(others) if o]
        return " or ".join(parts)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null",
             list: "a list", tuple: "a list", dict: "a mapping"}
    return names.get(typing.get_origin(hint) or hint, "")


def _flatten(hint: Any) -> list[Any]:
    """The members of a Union of Literals and types, Literal values spelled out."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return [member for arg in typing.get_args(hint) for member in _flatten(arg)]
    if origin is typing.Literal:
        return list(typing.get_args(hint))
    return [hint]

