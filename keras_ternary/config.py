"""Run configuration: a validated, nested dataclass read from YAML/TOML plus overrides.

A configuration file is a mapping with the sections below (every key optional; defaults
are the paper's recipe). ``extends: other.yaml`` merges the file onto another one first
(relative to the file, or the name of a shipped config such as ``reduced/base``).

.. code-block:: yaml

    name: log-k5              # run name (default run directory: runs/<name>)
    epochs: 500               # epochs of this run
    paper_epochs: 500         # span of the paper's epoch axis replayed by this run:
                              #   time_scale = paper_epochs / epochs drives both Δ and LR
    per_step: false           # advance Δ and LR every step on that axis (else every epoch)
    batch_size: 256
    seed: 0
    snapshot_epochs: [100]    # paper epochs after which latent-weight histograms are saved
    data: {source: auto, dir: null, tfds_dir: null, download: false,
           train_size: null, test_size: null, augment: true}
    model: {quantizer: ternary, inflation: 5, input_quantizer: null,
            quantize_first_last: true, blocks_per_stage: 2}
    ternary: {regime: log, delta0: 0.1, multiplier: 1.9, delta_max: 0.9,
              time_scale: null,      # paper epochs per epoch for Δ only (null: as the LR)
              saturate_epoch: null}  # or: the 1-based epoch in which Δ reaches delta_max
    optimizer: {name: adam, lr_values: [5e-3, 1e-3, 5e-4, 1e-4, 1e-5],
                lr_boundaries: [101, 142, 184, 220]}
    out_dir: null             # default runs/<name>
    tensorboard: true
    strategy: default         # tf.distribute: default, mirrored or multiworker (TF_CONFIG);
                              #   batch_size stays the global batch (keras_ternary.distribute)

Overrides are ``dotted.key=value`` strings whose value is parsed as YAML
(``ternary.delta0=0.05``, ``model.quantizer=binary``, ``snapshot_epochs=[50,100]``).

Files are read with bounds (:func:`read_config_file`): regular files of at most 1 MB, YAML
with at most :data:`MAX_ALIASES` aliases and :data:`MAX_NODES` values once aliases are
expanded, and sizes limited by :data:`LIMITS`; error messages quote at most 200 characters of
a value.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from keras_ternary.fileio import check_input_file, nested_size_exceeds, quote
from keras_ternary.regimes import REGIMES, saturation_time_scale, validate_regime_args

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimizerConfig",
    "TernaryConfig",
    "TrainConfig",
    "PAPER_LR_BOUNDARIES",
    "PAPER_LR_VALUES",
    "apply_overrides",
    "check_name",
    "load_config",
    "load_mapping",
    "read_config_file",
    "resolve_config_path",
    "shipped_config_dir",
    "validate_piecewise",
]

QUANTIZERS = ("ternary", "binary", "float")
REGIME_NAMES = ("fixed", *REGIMES)
DATA_SOURCES = ("auto", "cifar10_dir", "tfds", "shapes10")
OPTIMIZERS = ("adam",)
STRATEGIES = ("default", "mirrored", "multiworker")

#: Largest value of each size-like key: far above any sensible run, small enough that a
#: typo (an extra digit, 1e300) fails at once instead of hanging or exhausting memory.
LIMITS: dict[str, int] = {
    "epochs": 1_000_000,
    "paper_epochs": 1_000_000,
    "batch_size": 1_000_000,
    "seed": 2**32 - 1,  # TensorFlow's and NumPy's seeds are 32-bit
    "data.train_size": 100_000_000,
    "data.test_size": 100_000_000,
    "model.inflation": 64,  # k = 64 already has ~2.8 G weights
    "model.blocks_per_stage": 100,
    "ternary.saturate_epoch": 1_000_000,
    "snapshot_epochs": 10_000,  # entries
    "optimizer.lr_values": 10_000,  # entries
}
#: YAML aliases allowed in one document, and values once they are expanded.
MAX_ALIASES = 100
MAX_NODES = 100_000


#: Learning rates of the paper, in order (the schedule: :mod:`keras_ternary.schedules`).
PAPER_LR_VALUES: tuple[float, ...] = (5e-3, 1e-3, 5e-4, 1e-4, 1e-5)
#: 0-based paper epoch from which each value after the first applies.
PAPER_LR_BOUNDARIES: tuple[float, ...] = (101.0, 142.0, 184.0, 220.0)


def validate_piecewise(values: Sequence[float], boundaries: Sequence[float]) -> None:
    """ValueError unless values are finite, > 0 and one more than increasing boundaries >= 0."""
    if len(values) != len(boundaries) + 1:
        raise ValueError(
            f"need exactly one more learning rate than boundaries, got {len(values)} values "
            f"and {len(boundaries)} boundaries"
        )
    if any(not v > 0 for v in values):
        raise ValueError(f"learning rates must be > 0, got {list(values)}")
    if any(not math.isfinite(v) for v in values):
        raise ValueError(f"learning rates must be finite, got {list(values)}")
    if any(not (b >= 0 and math.isfinite(b)) for b in boundaries) or any(
        b2 <= b1 for b1, b2 in zip(boundaries, boundaries[1:], strict=False)
    ):
        raise ValueError(
            f"boundaries must be finite, >= 0 and strictly increasing, got {list(boundaries)}"
        )


class ConfigError(ValueError):
    """An invalid configuration; the message names the key and what is allowed."""


@dataclass
class DataConfig:
    """Where the images come from (see :mod:`keras_ternary.data`)."""

    source: str = "auto"
    dir: str | None = None
    tfds_dir: str | None = None
    download: bool = False
    train_size: int | None = None
    test_size: int | None = None
    augment: bool = True


@dataclass
class ModelConfig:
    """Arguments of :func:`keras_ternary.resnet20_star`."""

    quantizer: str = "ternary"
    inflation: int = 5
    input_quantizer: str | None = None
    quantize_first_last: bool = True
    blocks_per_stage: int = 2


@dataclass
class TernaryConfig:
    """The Δ regime of Eq. 7 (ignored unless ``model.quantizer`` is ternary)."""

    regime: str = "log"
    delta0: float = 0.1
    multiplier: float = 1.9
    delta_max: float = 0.9
    time_scale: float | None = None
    saturate_epoch: int | None = None


@dataclass
class OptimizerConfig:
    """Adam with the paper's piecewise-constant learning rate (boundaries on the paper axis)."""

    name: str = "adam"
    lr_values: list[float] = field(default_factory=lambda: list(PAPER_LR_VALUES))
    lr_boundaries: list[float] = field(default_factory=lambda: list(PAPER_LR_BOUNDARIES))


@dataclass
class TrainConfig:
    """Everything that defines one training run."""

    name: str = "run"
    epochs: int = 500
    paper_epochs: float = 500.0
    per_step: bool = False
    batch_size: int = 256
    seed: int = 0
    snapshot_epochs: list[float] = field(default_factory=lambda: [100.0])
    out_dir: str | None = None
    tensorboard: bool = True
    strategy: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ternary: TernaryConfig = field(default_factory=TernaryConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)

    # -- derived quantities ---------------------------------------------------------------
    @property
    def time_scale(self) -> float:
        """Paper epochs per epoch of this run (1.0 at full scale)."""
        return float(self.paper_epochs) / float(self.epochs)

    @property
    def delta_time_scale(self) -> float:
        """Epochs of the Δ regime per epoch of this run.

        From ``ternary.saturate_epoch`` (:func:`~keras_ternary.regimes.saturation_time_scale`),
        else ``ternary.time_scale``, else :attr:`time_scale` (the learning rate's).
        """
        t = self.ternary
        if t.saturate_epoch is not None:
            return saturation_time_scale(
                t.saturate_epoch, t.regime, t.delta0, t.multiplier, t.delta_max
            )
        return self.time_scale if t.time_scale is None else float(t.time_scale)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) if self.out_dir else Path("runs") / self.name

    @property
    def is_ternary(self) -> bool:
        return self.model.quantizer == "ternary"

    def snapshot_our_epochs(self) -> list[int]:
        """Our 1-based epochs at whose end a snapshot is saved: paper epoch p ↦ round(p/scale)."""
        return sorted(
            {min(self.epochs, max(1, round(p / self.time_scale))) for p in self.snapshot_epochs}
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        """Check every field; ConfigError naming the first offending key."""
        try:
            check_name(self.name, "name")
        except ConfigError as exc:
            raise ConfigError(f"invalid value for name: {exc}") from None
        for key, path in (
            ("out_dir", self.out_dir),
            ("data.dir", self.data.dir),
            ("data.tfds_dir", self.data.tfds_dir),
        ):
            _check(path is None or "\0" not in path, key, "a path without NUL bytes")
        _check_int(self.epochs, "epochs", 1)
        _check(
            _finite_positive(self.paper_epochs) and self.paper_epochs <= LIMITS["paper_epochs"],
            "paper_epochs",
            f"a finite number > 0 and <= {LIMITS['paper_epochs']}",
        )
        _check_int(self.batch_size, "batch_size", 1)
        _check_int(self.seed, "seed", 0)
        _check(
            len(self.snapshot_epochs) <= LIMITS["snapshot_epochs"]
            and all(_finite_positive(p) for p in self.snapshot_epochs),
            "snapshot_epochs",
            f"at most {LIMITS['snapshot_epochs']} finite paper epochs > 0",
        )
        _check(self.strategy in STRATEGIES, "strategy", f"one of {', '.join(STRATEGIES)}")
        d = self.data
        _check(d.source in DATA_SOURCES, "data.source", f"one of {', '.join(DATA_SOURCES)}")
        for key in ("train_size", "test_size"):
            value = getattr(d, key)
            if value is not None:
                _check_int(value, f"data.{key}", 1, "null or an integer")
        m = self.model
        _check(m.quantizer in QUANTIZERS, "model.quantizer", f"one of {', '.join(QUANTIZERS)}")
        _check(
            m.input_quantizer in (None, "ternary", "binary"),
            "model.input_quantizer",
            "null, ternary or binary",
        )
        _check_int(m.inflation, "model.inflation", 1)
        _check_int(m.blocks_per_stage, "model.blocks_per_stage", 1)
        t = self.ternary
        _check(t.regime in REGIME_NAMES, "ternary.regime", f"one of {', '.join(REGIME_NAMES)}")
        _check(
            t.time_scale is None or _finite_positive(t.time_scale),
            "ternary.time_scale",
            "null or a finite number > 0",
        )
        if self.is_ternary:
            try:
                validate_regime_args(t.regime, t.delta0, t.multiplier, t.delta_max)
            except ValueError as exc:
                raise ConfigError(f"ternary: {exc}") from None
            _check(math.isfinite(t.multiplier), "ternary.multiplier", "a finite number")
            if t.saturate_epoch is not None:
                _check_int(t.saturate_epoch, "ternary.saturate_epoch", 1)
                _check(
                    t.time_scale is None,
                    "ternary.time_scale",
                    "null when ternary.saturate_epoch is set (it sets the time scale)",
                )
                try:
                    self.delta_time_scale  # noqa: B018 - validates saturate_epoch
                except ValueError as exc:
                    raise ConfigError(f"ternary.saturate_epoch: {exc}") from None
        o = self.optimizer
        _check(o.name in OPTIMIZERS, "optimizer.name", f"one of {', '.join(OPTIMIZERS)}")
        _check(
            len(o.lr_values) <= LIMITS["optimizer.lr_values"],
            "optimizer.lr_values",
            f"at most {LIMITS['optimizer.lr_values']} learning rates",
        )
        try:
            validate_piecewise(o.lr_values, o.lr_boundaries)
        except ValueError as exc:
            raise ConfigError(f"optimizer: {exc}") from None
        return self


def check_name(name: object, what: str) -> str:
    """``name`` as one safe path component (run and sweep names), else ConfigError."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{what} must be a non-empty string, got {quote(name)}")
    bad = (
        "\0" in name
        or "/" in name
        or "\\" in name
        or name in (".", "..")
        or len(name.encode("utf-8", "surrogatepass")) > 255
    )
    if bad:
        raise ConfigError(
            f"{what} {quote(name)} is not a plain file name (no '/', '\\', NUL, '.' or '..', "
            "at most 255 bytes): runs must stay inside their root directory"
        )
    return name


def _finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _check(ok: bool, key: str, expected: str) -> None:
    if not ok:
        raise ConfigError(f"invalid value for {key}: expected {expected}")


def _check_int(value: int, key: str, low: int, kind: str = "an integer") -> None:
    """``low <= value <= LIMITS[key]``, else ConfigError naming the range."""
    high = LIMITS[key]
    _check(low <= value <= high, key, f"{kind} >= {low} and <= {high}")


# --------------------------------------------------------------------------- building
_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "ternary": TernaryConfig,
    "optimizer": OptimizerConfig,
}


def _coerce(value: Any, annotation: str, key: str) -> Any:
    """Convert a YAML/TOML value to the field's annotated type (strings in annotations)."""
    optional = "None" in annotation
    if value is None:
        if optional:
            return None
        raise ConfigError(f"invalid value for {key}: null is not allowed")
    base = annotation.replace(" | None", "")
    if base == "bool":
        if isinstance(value, bool):
            return value
    elif base == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif base == "float":
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "5e-3" as a string
            try:  # NaN and infinities reach validate(), whose message names the rule
                return float(value)
            except ValueError:
                pass
    elif base == "str":
        if isinstance(value, str):
            return value
    elif base == "list[float]":
        if isinstance(value, list | tuple):
            return [_coerce(v, "float", f"{key}[]") for v in value]
    else:  # pragma: no cover - programming error
        raise TypeError(f"unsupported annotation {annotation}")
    raise ConfigError(f"invalid value for {key}: expected {base}, got {quote(value)}")


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {quote(values)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(key)[:200] for key in set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{quote(unknown[0])[1:-1]}; allowed: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name in _SECTIONS and cls is TrainConfig:
            kwargs[name] = _build(_SECTIONS[name], value or {}, f"{key}.")
        else:
            kwargs[name] = _coerce(value, str(fields[name].type), key)
    return cls(**kwargs)


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a nested mapping."""
    return _build(TrainConfig, values, "").validate()


# --------------------------------------------------------------------------- files
def shipped_config_dir() -> Path:
    """Directory of the configs shipped with the package (``keras_ternary/configs``)."""
    return Path(str(resources.files("keras_ternary") / "configs"))


def resolve_config_path(name: str | Path, relative_to: Path | None = None) -> Path:
    """A config file path: as given, relative to ``relative_to``, or a shipped config name."""
    if not isinstance(name, str | Path) or not str(name) or "\0" in str(name):
        raise ConfigError(f"a config file name must be a non-empty string, got {quote(name)}")
    candidates = [Path(name)]
    if relative_to is not None:
        candidates.insert(0, relative_to / name)
    shipped = shipped_config_dir() / name
    candidates += [shipped, shipped.with_suffix(".yaml"), shipped.with_suffix(".toml")]
    for path in candidates:
        if path.is_file():
            return path
    try:  # a symbolic link loop is not "not found"
        check_input_file(name, "config", "config file")
    except OSError as exc:
        if "not found" not in str(exc):
            raise ConfigError(str(exc)) from None
    raise ConfigError(
        f"config file {name} not found (neither a path nor a shipped config under "
        f"{shipped_config_dir()})"
    )


def load_mapping(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML or TOML file into a dict, following ``extends`` chains."""
    path = resolve_config_path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"config {path} extends itself")
    data = read_config_file(path)
    parent = data.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(
                f"config {path}: extends must be a config file name, got {quote(parent)}"
            )
        parent_path = resolve_config_path(parent, relative_to=path.parent)
        data = merge(load_mapping(parent_path, (*_seen, path.resolve())), data)
    return data


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader allowing at most :data:`MAX_ALIASES` aliases per document."""

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            self.aliases = getattr(self, "aliases", 0) + 1
            if self.aliases > MAX_ALIASES:
                raise ConfigError(f"more than {MAX_ALIASES} YAML aliases (*name) in one document")
        return super().compose_node(parent, index)


def parse_yaml(text: str, where: str = "YAML") -> Any:
    """``yaml.safe_load`` with alias and size bounds (ConfigError naming ``where``)."""
    try:
        value = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if nested_size_exceeds(value, MAX_NODES):
        raise ConfigError(f"{where}: more than {MAX_NODES} values once YAML aliases are expanded")
    return value


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML or TOML file, read with bounds (see the module docstring).

    ConfigError for a file that is missing, not a regular file, larger than 1 MB, not UTF-8,
    not YAML/TOML, empty, or not a mapping at the top level.
    """
    path = Path(path)
    try:
        check_input_file(path, "config", "config file")
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = parse_yaml(text, f"cannot read config {path}")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config {path}: not UTF-8 text (byte {exc.start})") from None
    except (OSError, yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {one_line_error(exc)}") from None
    if data is None or data == {}:
        raise ConfigError(f"config {path} is empty (no keys); write at least one key")
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a mapping at the top level")
    return data


def one_line_error(exc: BaseException) -> str:
    """A parser error as one line: YAML's problem with its line and column, else ``str``."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or type(exc).__name__
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return f"{where}{problem}"
    return " ".join(str(exc)[:400].split())


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge, everything else in ``update`` replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``"a.b=value"`` → ``{"a": {"b": value}}`` with ``value`` parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {quote(text)} must look like section.key=value")
    try:
        value = parse_yaml(raw, f"override {quote(key)}") if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def apply_overrides(values: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides (see :func:`parse_override`) to a config mapping."""
    out = dict(values)
    for text in overrides:
        out = merge(out, parse_override(text))
    return out


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> TrainConfig:
    """Defaults ← config file (if any) ← overrides, validated."""
    values = load_mapping(path) if path is not None else {}
    return config_from_dict(apply_overrides(values, overrides))


def dump_yaml(config: TrainConfig) -> str:
    """The complete configuration as YAML (what a run directory stores)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
