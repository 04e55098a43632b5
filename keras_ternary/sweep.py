"""Run a grid of configurations sequentially, skipping finished runs and resuming partial ones.

A sweep file (YAML or TOML) looks like::

    sweep: fig3                   # name; runs go to <out_root>/<sweep>/<run name>/
    base: paper/base              # a run config: path (relative to this file) or shipped name,
                                  # or an inline mapping
    set:                          # dotted overrides for every run
      ternary.delta_max: 0.9
    runs:                         # optional list of variants (each may set its own `name`)
      - {name: binary, model.quantizer: binary}
      - {name: log, ternary.regime: log}
    grid:                         # optional cartesian product over dotted keys
      seed: [0, 1, 2]

Runs are the product ``runs × grid`` (either may be absent). A run's name is its variant's
``name`` (if any) followed by ``key=value`` for every grid key, e.g. ``log_seed=1``.
Because every run is a resumable run directory, a sweep can be stopped at any time (Ctrl-C,
``--time-limit``) and started again with the same command: finished runs are skipped and the
partial one continues from its last checkpoint.
"""

from __future__ import annotations

import itertools
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keras_ternary.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    check_name,
    config_from_dict,
    load_mapping,
    merge,
    parse_override,
    resolve_config_path,
)
from keras_ternary.rundir import RunError, run_status

__all__ = ["SweepResult", "SweepRun", "SweepStopped", "expand_sweep", "load_sweep", "run_sweep"]

SWEEP_KEYS = ("sweep", "base", "set", "runs", "grid", "description")


class SweepStopped(RuntimeError):
    """``keep_going=False`` and a run failed (already reported on ``error_log``)."""


@dataclass
class SweepRun:
    """One member of a sweep: its name and complete configuration."""

    name: str
    config: TrainConfig


@dataclass
class SweepResult:
    """What :func:`run_sweep` did with each run (lists of run names)."""

    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.stopped or self.failed or self.pending)

    def summary(self) -> str:
        """The sweep's closing line."""
        return (
            f"sweep: {len(self.finished)} finished, {len(self.skipped)} skipped (already done), "
            f"{len(self.stopped)} stopped, {len(self.pending)} pending, {len(self.failed)} failed"
        )


def failure_message(sweep_name: str, run_name: str, reason: str) -> str:
    """The one stderr line that reports a failed run of a sweep."""
    return f"error: sweep {sweep_name}: run {run_name}: {reason}"


def _dotted(mapping: Mapping[str, Any], where: str) -> list[str]:
    """Turn ``{"a.b": 1}`` into override strings, rejecting non-mapping input."""
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where} must be a mapping of dotted keys to values")
    return [f"{key}={_yaml_scalar(value)}" for key, value in mapping.items()]


def _yaml_scalar(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def _format_value(value: Any) -> str:
    text = str(value) if not isinstance(value, float) else f"{value:g}"
    return text.replace("/", "-").replace(" ", "")


def expand_sweep(
    spec: Mapping[str, Any],
    base_dir: Path | None = None,
    out_root: str | Path = "runs",
    overrides: Iterable[str] = (),
    default_name: str = "sweep",
) -> tuple[str, list[SweepRun]]:
    """Expand a sweep mapping into validated runs (see the module docstring)."""
    unknown = sorted(set(spec) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(f"unknown sweep key {unknown[0]}; allowed: {', '.join(SWEEP_KEYS)}")
    sweep_name = spec.get("sweep") or default_name
    if isinstance(sweep_name, int | float):
        sweep_name = str(sweep_name)
    check_name(sweep_name, "sweep name")
    base = spec.get("base") or {}
    if isinstance(base, str):
        base = load_mapping(resolve_config_path(base, relative_to=base_dir))
    elif not isinstance(base, Mapping):
        raise ConfigError("sweep base must be a config file name or a mapping")
    common = _dotted(spec.get("set") or {}, "sweep 'set'")
    variants = spec.get("runs") or [{}]
    if not isinstance(variants, list) or not all(isinstance(v, Mapping) for v in variants):
        raise ConfigError("sweep 'runs' must be a list of mappings")
    grid = spec.get("grid") or {}
    if not isinstance(grid, Mapping) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError("sweep 'grid' must map dotted keys to non-empty lists")
    keys = list(grid)
    runs: list[SweepRun] = []
    seen: set[str] = set()
    for variant in variants:
        variant = dict(variant)
        label = variant.pop("name", None)
        for point in itertools.product(*(grid[k] for k in keys)):
            parts = [str(label)] if label else []
            parts += [
                f"{k.split('.')[-1]}={_format_value(v)}" for k, v in zip(keys, point, strict=True)
            ]
            name = "_".join(parts) or "run"
            if name in seen:
                raise ConfigError(f"sweep {sweep_name} has two runs named {name}")
            seen.add(name)
            values = apply_overrides(base, [*common, *_dotted(variant, "a sweep run")])
            for key, value in zip(keys, point, strict=True):
                values = merge(values, parse_override(f"{key}={_yaml_scalar(value)}"))
            values = apply_overrides(values, overrides)
            values["name"] = name
            values["out_dir"] = str(Path(out_root) / sweep_name / name)
            try:
                runs.append(SweepRun(name, config_from_dict(values)))
            except ConfigError as exc:
                raise ConfigError(f"sweep {sweep_name}, run {name}: {exc}") from None
    return sweep_name, runs


def load_sweep(
    path: str | Path, out_root: str | Path = "runs", overrides: Iterable[str] = ()
) -> tuple[str, list[SweepRun]]:
    """Read and expand a sweep file (path or shipped name such as ``paper/fig3``)."""
    path = resolve_config_path(path)
    spec = load_mapping(path)
    if not any(k in spec for k in ("grid", "runs", "base")):
        raise ConfigError(f"{path} is not a sweep file (it has none of base/runs/grid)")
    return expand_sweep(spec, path.parent, out_root, overrides, default_name=path.stem)


def runs_to_do(
    runs: list[SweepRun], result: SweepResult, log: Callable[[str], None]
) -> Iterator[tuple[str, SweepRun, str]]:
    """``(header, run, status)`` of every run not finished yet; finished ones are logged and
    recorded as skipped in ``result`` (``status`` is that of
    :func:`keras_ternary.rundir.run_status`)."""
    for i, run in enumerate(runs, start=1):
        header = f"[{i}/{len(runs)}] {run.name}"
        status = run_status(run.config.run_dir)
        if status == "finished":
            log(f"{header}: finished, skipped")
            result.skipped.append(run.name)
        else:
            yield header, run, status


def run_sweep(
    runs: list[SweepRun],
    *,
    train_fn: Callable[..., Any] | None = None,
    time_limit: float | None = None,
    verbose: int = 2,
    log: Callable[[str], None] = lambda message: print(message, flush=True),
    keep_going: bool = True,
    sweep_name: str = "sweep",
    error_log: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True),
) -> SweepResult:
    """Train ``runs`` one after the other in this process.

    Finished runs (``summary.json`` present) are skipped, partial ones resumed. With
    ``time_limit`` (seconds, whole sweep) the current run stops at the end of the epoch that
    crosses the limit and later runs are left pending. A run that raises is reported and,
    with ``keep_going``, the sweep continues with the next one; otherwise :class:`SweepStopped`
    is raised. A user error (bad config, missing data, unusable run directory) is reported as
    one ``error: sweep S: run R: ...`` line through ``error_log`` (stderr); any other error
    also logs its traceback.
    """
    from keras_ternary.data import DataError

    user_errors = (ConfigError, DataError, RunError)
    if train_fn is None:
        from keras_ternary.training import train as train_fn
    result = SweepResult()
    start = time.monotonic()
    for header, run, status in runs_to_do(runs, result, log):
        remaining = None if time_limit is None else time_limit - (time.monotonic() - start)
        if remaining is not None and remaining <= 0:
            result.pending.append(run.name)
            continue
        log(
            f"{header}: {'resuming' if status == 'partial' else 'starting'} in {run.config.run_dir}"
        )
        try:
            outcome = train_fn(
                run.config, resume=True, time_limit=remaining, verbose=verbose, log=log
            )
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one failing run must not lose the rest of the sweep
            log(f"{header}: FAILED: {exc}")
            if isinstance(exc, user_errors):  # the reason is the whole story: one line
                error_log(failure_message(sweep_name, run.name, str(exc)))
            else:
                error_log(failure_message(sweep_name, run.name, f"{type(exc).__name__}: {exc}"))
                log(traceback.format_exc(limit=3))
            result.failed.append(run.name)
            if not keep_going:
                raise SweepStopped(str(exc)) from exc
            continue
        finally:
            _clear_session()
        if getattr(outcome, "status", "finished") in ("finished", "already_finished"):
            result.finished.append(run.name)
        else:
            result.stopped.append(run.name)
    log(result.summary())
    return result


def _clear_session() -> None:
    import sys

    tf = sys.modules.get("tensorflow")
    if tf is not None:
        tf.keras.backend.clear_session()
