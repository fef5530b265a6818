"""Reading, merging and writing configs: TOML presets (with ``base`` chains), ``--set`` overrides,
the resolved config as a dict or TOML text.

Unknown sections or keys and wrong types are errors that name the file and key, raised before any
work starts. The resolved config (every field, defaults included) is written into the run directory
and into every checkpoint; :func:`config_from_dict` reads those back.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from alexnet.config.presets import model_preset
from alexnet.config.schema import SECTIONS, Config, ConfigError, ModelConfig


# ------------------------------------------------------------------------------------------ TOML
def toml_string(text: str) -> str:
    """``text`` as a TOML basic string, quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    """A config value (bool, int, float, str, list or tuple of those) as TOML text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in value) + "]"
    if isinstance(value, (int, float)):
        return repr(value)
    raise TypeError(f"no TOML form for {type(value).__name__} {value!r}")


# ---------------------------------------------------------------------------------------- checks
def check_keys(data: Mapping[str, Any], source: str) -> None:
    """Unknown sections or keys in ``data`` (one TOML file, or the merged dict), reported against
    ``source``."""
    for name, values in data.items():
        if name not in SECTIONS:
            raise ConfigError(
                f"{source}: unknown section [{name}]; known sections: {sorted(SECTIONS)} "
                f"(and the top-level key 'base')"
            )
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: [{name}] must be a table of keys, got {values!r}")
        known = {f.name for f in dataclasses.fields(SECTIONS[name])}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)}; "
                f"known keys of [{name}]: {', '.join(sorted(known))}"
            )


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` (TOML types), returning it in canonical form."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if not any(value == c and type(value) is type(c) for c in choices):
            raise ConfigError(f"{where}: expected one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} matches none of the allowed types ({'; '.join(errors)})")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} at {where}")


def _build_section(cls: type, values: Mapping[str, Any], source: str, section: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{source}: {section}.{k}") for k, v in values.items()}
    try:
        if cls is ModelConfig:
            return model_preset(kwargs.pop("preset", "paper"), **kwargs)
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


# --------------------------------------------------------------------------------------- reading
def config_from_dict(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """Build a validated :class:`Config` from nested sections (as read from TOML or a checkpoint)."""
    check_keys(data, source)
    built = {name: _build_section(cls, data.get(name, {}), source, name) for name, cls in SECTIONS.items()}
    try:
        return Config(**built)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value``; the value is read as TOML (``0.1``, ``true``, ``"x"``, ``[1, 2]``)
    and, failing that, taken as a bare string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if len(path) != 2 or not all(path):
        raise ConfigError(f"--set {text!r}: the key must be section.key, e.g. optim.lr=0.02")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return path, value


def read_preset(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A TOML preset as nested sections, with its ``base`` presets merged in.

    A top-level key ``base = "other.toml"`` (a path relative to this file) names the preset this one
    starts from: the base is read first (it may have a base of its own) and then this file's keys
    replace the base's, key by key within each section. Every file's sections and keys are checked
    against the config, so a typo is reported in the file that has it. Used by the ablation presets
    (``configs/ablations/``), each the paper preset plus one change.
    """
    path = Path(path)
    if path.resolve() in _chain:
        loop = " -> ".join(str(p) for p in (*_chain, path.resolve()))
        raise ConfigError(f"{path}: the 'base' chain loops: {loop}")
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        where = f" (named as 'base' in {_chain[-1]})" if _chain else ""
        raise ConfigError(f"config file not found: {path}{where}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    base = data.pop("base", None)
    check_keys(data, str(path))
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: base must be the path of another TOML preset, got {base!r}")
    merged = read_preset(path.parent / base, (*_chain, path.resolve()))
    for section, values in data.items():
        merged[section] = {**merged.get(section, {}), **values}
    return merged


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a TOML preset (or the defaults when ``path`` is None), merging its ``base`` presets
    (:func:`read_preset`), and apply ``--set`` overrides."""
    data: dict[str, dict[str, Any]] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        data = read_preset(path)
    for text in overrides:
        (section, key), value = parse_override(text)
        check_keys({section: {key: value}}, f"--set {text!r}")
        data.setdefault(section, {})[key] = value
    if overrides:
        source = f"{source} with --set {' '.join(overrides)}"
    return config_from_dict(data, source)


# --------------------------------------------------------------------------------------- writing
def config_to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """Every field of every section, as plain TOML-compatible values (tuples become lists)."""

    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v

    return {
        s.name: {k: plain(v) for k, v in dataclasses.asdict(getattr(cfg, s.name)).items()}
        for s in dataclasses.fields(cfg)
    }


def config_to_toml(cfg: Config) -> str:
    """The resolved config as TOML text (written into each run directory)."""
    lines = []
    for section, values in config_to_dict(cfg).items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)
