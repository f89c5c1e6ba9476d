"""Load an experiment YAML, compose it with its bases, apply `key=value` overrides, validate it.

A YAML may name bases with `extends: [base.yaml, ...]` (paths relative to the file); later entries
and the file itself override earlier ones. The result is merged onto the task's dataclass schema
(`experiments.tasks.TASKS[task].schema`), so unknown keys and wrong types fail loudly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from experiments.schemas.checks import check_values
from experiments.tasks import TASKS

# The experiment YAMLs (+ sweeps/), apart from the Python code.
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"


# A config with any of these set runs on real data: its `embedded_default:` block is not applied.
REAL_DATA_KEYS = ("data.amass_dir", "data.train_json", "data.h36m_file")


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> DictConfig:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: circular 'extends' chain: {' -> '.join(str(p) for p in seen + (path,))}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        node = OmegaConf.load(path)
    except Exception as exc:  # yaml syntax errors
        raise ConfigError(f"{path}: cannot parse YAML: {exc}") from exc
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(node).__name__}")
    bases = node.pop("extends", None)
    if bases is None:
        return node
    if isinstance(bases, str):
        bases = [bases]
    merged = OmegaConf.create({})
    for base in bases:
        merged = OmegaConf.merge(merged, _read_yaml(path.parent / str(base), seen + (path,)))
    return OmegaConf.merge(merged, node)


def _schema_keys(schema: Any, dotted: str) -> list[str]:
    """Valid keys at `dotted` (a path of parent keys) in a dataclass schema, or [] if unknown."""
    node = schema
    for part in [p for p in dotted.split(".") if p]:
        if not dataclasses.is_dataclass(node):
            return []
        fields = {f.name: f for f in dataclasses.fields(node)}
        if part not in fields:
            return []
        node = fields[part].type
        if isinstance(node, str):  # postponed annotations: resolve through the default value
            default = fields[part].default_factory if fields[part].default_factory is not dataclasses.MISSING else None
            node = type(default()) if default is not None else None
    if dataclasses.is_dataclass(node):
        return sorted(f.name for f in dataclasses.fields(node))
    return []


def _explain(exc: OmegaConfBaseException, schema: Any, source: str) -> ConfigError:
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    parent = key.rsplit(".", 1)[0] if "." in str(key) else ""
    if isinstance(exc, ConfigKeyError):
        valid = _schema_keys(schema, parent)
        where = f"'{parent}'" if parent else "the top level"
        hint = f"; valid keys in {where}: {', '.join(valid)}" if valid else ""
        return ConfigError(f"{source}: unknown config key '{key}'{hint}")
    if isinstance(exc, ValidationError):
        msg = str(exc.msg if hasattr(exc, "msg") else exc).splitlines()[0]  # omegaconf appends key/type lines
        return ConfigError(f"{source}: wrong value for '{key}': {msg}")
    return ConfigError(f"{source}: {exc}")


def parse_overrides(overrides: Iterable[str]) -> DictConfig:
    items = [o for o in overrides if o.strip()]
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
    try:
        return OmegaConf.from_dotlist(items)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot parse overrides {items}: {exc}") from exc


def load_config(path: str | Path, overrides: Sequence[str] = (), task: str | None = None) -> DictConfig:
    """Compose `path` with its bases and `overrides`; validate against the task's schema.

    The task is `task`, else the YAML's `task` key. Returns a read-only, fully resolved DictConfig.
    """
    raw = _read_yaml(Path(path))
    over = parse_overrides(overrides)
    # `embedded_default:` holds settings for runs on the synthetic demo data (no data.amass_dir):
    # applied after the YAML and before the command-line overrides, which still win.
    embedded = raw.pop("embedded_default", None)
    real_data = [OmegaConf.select(over, key, default=OmegaConf.select(raw, key)) for key in REAL_DATA_KEYS]
    if embedded is not None and all(v is None for v in real_data):
        raw = OmegaConf.merge(raw, embedded)
    name = task or over.get("task") or raw.get("task")
    if name not in TASKS:
        raise ConfigError(f"{path}: unknown task '{name}'; valid tasks: {', '.join(sorted(TASKS))}")
    schema = TASKS[name].schema
    cfg = OmegaConf.structured(schema)
    try:
        cfg = OmegaConf.merge(cfg, raw)
    except OmegaConfBaseException as exc:
        raise _explain(exc, schema, str(path)) from exc
    try:
        cfg = OmegaConf.merge(cfg, over)
    except OmegaConfBaseException as exc:
        raise _explain(exc, schema, "override") from exc
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise _explain(exc, schema, str(path)) from exc
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{path}: required keys without a value: {', '.join(missing)}")
    # Ranges and core-declared choices: omegaconf runs no __post_init__ on merges, so one pass here.
    problems = check_values(cfg)
    if problems:
        raise ConfigError(f"{path}: invalid value{'s' if len(problems) > 1 else ''}: {'; '.join(problems)}")
    OmegaConf.set_readonly(cfg, True)
    return cfg


def to_container(cfg: DictConfig | ListConfig) -> Any:
    return OmegaConf.to_container(cfg, resolve=True)


def save_config(cfg: DictConfig, path: str | Path) -> None:
    """Write the resolved config (atomically) so a run folder records what ran."""
    from pose_prior.io import atomic_write_text

    atomic_write_text(Path(path), OmegaConf.to_yaml(cfg, resolve=True))
