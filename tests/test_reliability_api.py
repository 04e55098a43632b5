"""Bad arguments to the public constructors and functions: one clear exception, at once.

Every case calls a public entry point with an invalid argument and expects the listed
exception type whose message contains every listed fragment (so the message names the
argument and what is allowed). ``docs/errors.md`` is generated from :data:`API_CASES`
(see ``tests/test_reliability_docs.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import keras_ternary as kt
from keras_ternary import config as kconfig
from keras_ternary import data as kdata
from keras_ternary.regimes import delta_at

NAN = math.nan
INF = math.inf


@dataclass(frozen=True)
class ApiCase:
    """``call()`` must raise ``error`` with every ``fragments`` entry in its message."""

    id: str
    api: str  # the entry point, for the documentation table
    what: str  # the bad input, in words
    call: Callable[[], Any]
    error: type[BaseException]
    fragments: tuple[str, ...]
    xfail: str | None = None  # "owner: what is wrong now" until the fix lands


def _tiny_resnet(**kwargs: Any) -> Any:
    return kt.resnet20_star(**{"inflation": 1, "blocks_per_stage": 1, **kwargs})


API_CASES: tuple[ApiCase, ...] = (
    # --- Ternary / Binary ------------------------------------------------------------
    ApiCase(
        "ternary-negative",
        "Ternary",
        "delta < 0",
        lambda: kt.Ternary(-0.1),
        ValueError,
        ("delta must be >= 0",),
    ),
    ApiCase(
        "ternary-nan",
        "Ternary",
        "delta NaN",
        lambda: kt.Ternary(NAN),
        ValueError,
        ("delta must be >= 0",),
    ),
    ApiCase(
        "ternary-ge-clip",
        "Ternary",
        "delta >= clip_value",
        lambda: kt.Ternary(1.0),
        ValueError,
        ("delta must be < clip_value",),
    ),
    ApiCase(
        "ternary-inf",
        "Ternary",
        "delta infinite",
        lambda: kt.Ternary(INF),
        ValueError,
        ("delta must be < clip_value",),
    ),
    ApiCase(
        "ternary-setter-nan",
        "Ternary.delta = ...",
        "NaN assigned to .delta",
        lambda: setattr(kt.Ternary(0.1), "delta", NAN),
        ValueError,
        ("delta must be >= 0",),
    ),
    ApiCase(
        "ternary-clip-zero",
        "Ternary",
        "clip_value 0",
        lambda: kt.Ternary(0.1, clip_value=0),
        ValueError,
        ("clip_value must be > 0",),
    ),
    ApiCase(
        "ternary-clip-nan",
        "Ternary",
        "clip_value NaN",
        lambda: kt.Ternary(0.1, clip_value=NAN),
        ValueError,
        ("clip_value must be > 0",),
    ),
    ApiCase(
        "binary-clip-negative",
        "Binary",
        "clip_value < 0",
        lambda: kt.Binary(clip_value=-1),
        ValueError,
        ("clip_value must be > 0",),
    ),
    ApiCase(
        "binary-clip-nan",
        "Binary",
        "clip_value NaN",
        lambda: kt.Binary(clip_value=NAN),
        ValueError,
        ("clip_value must be > 0",),
    ),
    # --- DeltaGrowth -----------------------------------------------------------------
    ApiCase(
        "growth-regime",
        "DeltaGrowth",
        "unknown regime name",
        lambda: kt.DeltaGrowth("foo"),
        ValueError,
        ("regime must be one of", "'foo'"),
    ),
    ApiCase(
        "growth-delta0",
        "DeltaGrowth",
        "delta0 <= 0",
        lambda: kt.DeltaGrowth("log", 0.0),
        ValueError,
        ("delta0 must be > 0",),
    ),
    ApiCase(
        "growth-delta0-nan",
        "DeltaGrowth",
        "delta0 NaN",
        lambda: kt.DeltaGrowth("log", NAN),
        ValueError,
        ("delta0 must be > 0",),
    ),
    ApiCase(
        "growth-multiplier",
        "DeltaGrowth",
        "multiplier < 0",
        lambda: kt.DeltaGrowth("log", 0.1, -1.0),
        ValueError,
        ("multiplier must be >= 0",),
    ),
    ApiCase(
        "growth-multiplier-inf",
        "DeltaGrowth",
        "multiplier infinite",
        lambda: kt.DeltaGrowth("log", 0.1, INF),
        ValueError,
        ("multiplier",),
    ),
    ApiCase(
        "growth-delta-max",
        "DeltaGrowth",
        "delta_max <= delta0",
        lambda: kt.DeltaGrowth("log", 0.5, 1.0, 0.4),
        ValueError,
        ("delta_max must satisfy",),
    ),
    ApiCase(
        "growth-delta-max-one",
        "DeltaGrowth",
        "delta_max >= 1",
        lambda: kt.DeltaGrowth("log", 0.1, 1.0, 1.0),
        ValueError,
        ("delta_max must satisfy",),
    ),
    ApiCase(
        "growth-time-scale",
        "DeltaGrowth",
        "time_scale <= 0",
        lambda: kt.DeltaGrowth("log", time_scale=0),
        ValueError,
        ("time_scale must be > 0",),
    ),
    ApiCase(
        "growth-time-scale-inf",
        "DeltaGrowth",
        "time_scale infinite",
        lambda: kt.DeltaGrowth("log", time_scale=INF),
        ValueError,
        ("time_scale",),
    ),
    ApiCase(
        "growth-quantizers-empty",
        "DeltaGrowth",
        "quantizers=[]",
        lambda: kt.DeltaGrowth("log", quantizers=[]),
        ValueError,
        ("quantizers must be",),
    ),
    ApiCase(
        "growth-quantizers-binary",
        "DeltaGrowth",
        "quantizers=[Binary()]",
        lambda: kt.DeltaGrowth("log", quantizers=[kt.Binary()]),
        ValueError,
        ("Ternary quantizers",),
    ),
    # --- delta_at (Eq. 7) --------------------------------------------------------------
    ApiCase(
        "delta-at-log-zero",
        "regimes.delta_at",
        "x = 0 for the log regime",
        lambda: delta_at(0, "log", 0.1, 1.9, 0.9),
        ValueError,
        ("undefined at x=0",),
    ),
    ApiCase(
        "delta-at-nan",
        "regimes.delta_at",
        "x NaN",
        lambda: delta_at(NAN, "log", 0.1, 1.9, 0.9),
        ValueError,
        ("NaN",),
    ),
    ApiCase(
        "delta-at-regime",
        "regimes.delta_at",
        "unknown regime",
        lambda: delta_at(1, "foo", 0.1, 1.9, 0.9),
        ValueError,
        ("regime must be one of",),
    ),
    ApiCase(
        "delta-at-delta0",
        "regimes.delta_at",
        "delta0 < 0",
        lambda: delta_at(1, "log", -1, 1.9, 0.9),
        ValueError,
        ("delta0 must be > 0",),
    ),
    # --- resnet20_star -----------------------------------------------------------------
    ApiCase(
        "resnet-inflation",
        "resnet20_star",
        "inflation 0",
        lambda: kt.resnet20_star(inflation=0),
        ValueError,
        ("inflation must be",),
    ),
    ApiCase(
        "resnet-inflation-float",
        "resnet20_star",
        "inflation 1.5",
        lambda: kt.resnet20_star(inflation=1.5),
        ValueError,
        ("inflation must be",),
    ),
    ApiCase(
        "resnet-blocks",
        "resnet20_star",
        "blocks_per_stage 0",
        lambda: _tiny_resnet(blocks_per_stage=0),
        ValueError,
        ("blocks_per_stage",),
    ),
    ApiCase(
        "resnet-delta",
        "resnet20_star",
        "delta < 0",
        lambda: _tiny_resnet(delta=-1),
        ValueError,
        ("delta must be >= 0",),
    ),
    ApiCase(
        "resnet-quantizer",
        "resnet20_star",
        "unknown quantizer name",
        lambda: _tiny_resnet(quantizer="foo"),
        ValueError,
        ("'foo'", "ternary", "binary"),
    ),
    ApiCase(
        "resnet-num-classes",
        "resnet20_star",
        "num_classes 0",
        lambda: _tiny_resnet(num_classes=0),
        ValueError,
        ("num_classes",),
    ),
    ApiCase(
        "resnet-input-shape",
        "resnet20_star",
        "input_shape of rank 2",
        lambda: _tiny_resnet(input_shape=(8, 8)),
        ValueError,
        ("input_shape",),
    ),
    # --- data loaders ---------------------------------------------------------------------
    ApiCase(
        "cifar-missing",
        "data.load_cifar10_binary",
        "missing directory",
        lambda: kdata.load_cifar10_binary("/nonexistent/cifar"),
        kdata.DataError,
        ("no data_batch_1.bin in /nonexistent/cifar",),
    ),
    ApiCase(
        "cifar-empty-bytes",
        "data.decode_cifar10_records",
        "empty file",
        lambda: kdata.decode_cifar10_records(b"", "x.bin"),
        kdata.DataError,
        ("x.bin", "record size 3073"),
    ),
    ApiCase(
        "cifar-truncated-bytes",
        "data.decode_cifar10_records",
        "truncated record",
        lambda: kdata.decode_cifar10_records(bytes(3073 + 100), "x.bin"),
        kdata.DataError,
        ("x.bin", "not a positive multiple"),
    ),
    ApiCase(
        "cifar-bad-label",
        "data.decode_cifar10_records",
        "label byte 200",
        lambda: kdata.decode_cifar10_records(bytes([200]) + bytes(3072), "x.bin"),
        kdata.DataError,
        ("label 200 out of range",),
    ),
    ApiCase(
        "data-source",
        "data.load_data",
        "unknown source",
        lambda: kdata.load_data("foo"),
        kdata.DataError,
        ("unknown data source 'foo'",),
    ),
    ApiCase(
        "data-no-dir",
        "data.load_data",
        "cifar10_dir without a directory",
        lambda: kdata.load_data("cifar10_dir"),
        kdata.DataError,
        ("needs --data-dir",),
    ),
    ApiCase(
        "shapes-size",
        "data.generate_shapes10",
        "0 training images",
        lambda: kdata.generate_shapes10(0, 1),
        kdata.DataError,
        ("at least one",),
    ),
    # --- configuration -------------------------------------------------------------------
    ApiCase(
        "config-missing",
        "config.load_config",
        "missing file",
        lambda: kconfig.load_config("/nonexistent/run.yaml"),
        kconfig.ConfigError,
        ("/nonexistent/run.yaml not found",),
    ),
    ApiCase(
        "config-not-mapping",
        "config.config_from_dict",
        "a list instead of a mapping",
        lambda: kconfig.config_from_dict([1]),
        kconfig.ConfigError,
        ("must be a mapping",),
    ),
    ApiCase(
        "config-epochs-bool",
        "config.config_from_dict",
        "epochs: true",
        lambda: kconfig.config_from_dict({"epochs": True}),
        kconfig.ConfigError,
        ("invalid value for epochs",),
    ),
    ApiCase(
        "config-lr-nan",
        "config.config_from_dict",
        "learning rate NaN",
        lambda: kconfig.config_from_dict(
            {"optimizer": {"lr_values": ["nan"], "lr_boundaries": []}}
        ),
        kconfig.ConfigError,
        ("learning rates must be > 0",),
    ),
    ApiCase(
        "config-lr-inf",
        "config.config_from_dict",
        "learning rate infinite ('inf')",
        lambda: kconfig.config_from_dict(
            {"optimizer": {"lr_values": ["inf"], "lr_boundaries": []}}
        ),
        kconfig.ConfigError,
        ("optimizer",),
    ),
    ApiCase(
        "config-paper-epochs-inf",
        "config.config_from_dict",
        "paper_epochs: 'inf'",
        lambda: kconfig.config_from_dict({"paper_epochs": "inf"}),
        kconfig.ConfigError,
        ("paper_epochs",),
    ),
)


def _param(case: ApiCase):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in API_CASES])
def test_bad_argument_raises_clear_error(case: ApiCase):
    with pytest.raises(case.error) as info:
        case.call()
    message = str(info.value)
    for fragment in case.fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "\n" not in message.strip(), f"multi-line message: {message!r}"


def test_case_ids_are_unique():
    ids = [c.id for c in API_CASES]
    assert len(ids) == len(set(ids))
