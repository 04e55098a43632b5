"""The learning-rate schedule, configuration files and the run-directory primitives."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import tensorflow as tf

from keras_ternary.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    dump_yaml,
    load_config,
    shipped_config_dir,
)
from keras_ternary.run_callbacks import atomic_save_model
from keras_ternary.rundir import (
    STATE_ATTR,
    atomic_write_text,
    format_history,
    read_checkpoint_state,
    read_history,
    run_status,
)
from keras_ternary.schedules import EpochPiecewiseSchedule, paper_learning_rate

# 0-based epoch index -> learning rate, at and around every boundary of the paper's schedule
PAPER_POINTS = [
    (0, 5e-3),
    (100, 5e-3),
    (101, 1e-3),
    (141, 1e-3),
    (142, 5e-4),
    (183, 5e-4),
    (184, 1e-4),
    (219, 1e-4),
    (220, 1e-5),
    (499, 1e-5),
]


@pytest.mark.parametrize("epoch, lr", PAPER_POINTS)
def test_paper_schedule_boundaries_are_zero_based(epoch, lr):
    assert paper_learning_rate(epoch) == lr


def test_keras_schedule_matches_python_and_paper():
    steps = 7
    schedule = EpochPiecewiseSchedule(steps)
    for epoch, lr in PAPER_POINTS:
        for step in (epoch * steps, epoch * steps + steps - 1):  # first and last step of epoch
            assert float(schedule(step)) == pytest.approx(lr, rel=1e-6)
            assert schedule.value_at_step(step) == lr
    clone = EpochPiecewiseSchedule.from_config(schedule.get_config())
    assert clone.get_config() == schedule.get_config()


def test_compressed_schedule_per_epoch_and_per_step():
    # 20 epochs replaying 250 paper epochs: time_scale 12.5, boundary 101 -> our epoch 8.08
    per_epoch = EpochPiecewiseSchedule(100, time_scale=12.5)
    assert per_epoch.value_at_epoch(8.5) == 5e-3  # floored to epoch 8 = paper 100
    assert float(per_epoch(9 * 100)) == pytest.approx(1e-3)  # epoch 9 = paper 112.5
    per_step = EpochPiecewiseSchedule(100, time_scale=12.5, per_step=True)
    assert float(per_step(807)) == pytest.approx(5e-3)  # paper epoch 100.875
    assert float(per_step(808)) == pytest.approx(1e-3)  # paper epoch 101.0
    assert float(per_step(1760)) == pytest.approx(1e-5)  # paper epoch 220
    with pytest.raises(ValueError, match="one more learning rate"):
        EpochPiecewiseSchedule(10, values=[1e-3], boundaries=[5])
    with pytest.raises(ValueError, match="increasing"):
        EpochPiecewiseSchedule(10, values=[1e-3, 1e-4, 1e-5], boundaries=[5, 5])
    with pytest.raises(ValueError, match="steps_per_epoch"):
        EpochPiecewiseSchedule(0)


def test_schedule_drives_adam():
    var = tf.Variable(1.0)
    opt = tf.keras.optimizers.Adam(EpochPiecewiseSchedule(2, [0.1, 0.01], [1]))
    for _ in range(3):
        opt.apply_gradients([(tf.constant(1.0), var)])
    # Adam's first steps move by ~lr: two steps at 0.1, one at 0.01
    assert float(var.numpy()) == pytest.approx(1.0 - 0.1 - 0.1 - 0.01, abs=2e-3)


def test_default_config_is_the_paper_recipe():
    config = TrainConfig().validate()
    assert (config.epochs, config.batch_size, config.paper_epochs) == (500, 256, 500)
    assert config.optimizer.lr_values == [5e-3, 1e-3, 5e-4, 1e-4, 1e-5]
    assert config.optimizer.lr_boundaries == [101, 142, 184, 220]
    assert config.time_scale == 1.0 and config.snapshot_our_epochs() == [100]
    reduced = load_config("reduced/base")
    assert reduced.model.inflation == 1 and reduced.time_scale == 12.5
    assert reduced.delta_time_scale == 1.0  # Δ uncompressed, the learning rate compressed
    assert reduced.snapshot_our_epochs() == [8, 20]
    assert reduced.optimizer.lr_values == config.optimizer.lr_values  # inherited by extends
    schedule = EpochPiecewiseSchedule(1, time_scale=reduced.time_scale)
    assert [schedule.value_at_epoch(e) for e in (8, 9, 11, 12, 14, 15, 17, 18)] == [
        5e-3,
        1e-3,
        1e-3,
        5e-4,
        5e-4,
        1e-4,
        1e-4,
        1e-5,
    ]
    compressed = load_config(None, ["epochs=20", "paper_epochs=250"])
    assert compressed.time_scale == 12.5
    assert compressed.snapshot_our_epochs() == [8]  # paper epoch 100 -> our epoch 8


def test_saturate_epoch_sets_the_delta_time_scale():
    from keras_ternary.regimes import saturation_time_scale

    config = load_config("reduced/base", ["ternary.time_scale=null", "ternary.saturate_epoch=8"])
    assert config.delta_time_scale == saturation_time_scale(8, "log", 0.1, 1.9, 0.9)
    assert config.time_scale == 12.5  # the learning rate's axis is unchanged
    growth = __import__("keras_ternary.training", fromlist=["x"]).make_delta_growth(config)
    assert growth.delta_for(6) < 0.9 == growth.delta_for(7)
    with pytest.raises(ConfigError, match="ternary.time_scale: expected null"):
        load_config("reduced/base", ["ternary.saturate_epoch=8"])  # reduced sets time_scale 1
    with pytest.raises(ConfigError, match="fixed regime never grows"):
        load_config(None, ["ternary.regime=fixed", "ternary.saturate_epoch=5"])


@pytest.mark.parametrize(
    "sweep_name, saturate, first_drop",
    [("reduced/faithful", 68, 79), ("reduced/compressed", 20, 23)],
)
def test_long_reduced_sweeps_saturate_delta_before_the_first_lr_drop(
    sweep_name, saturate, first_drop
):
    """The paper's ordering (docs/delta_growth.md, rule 1): Δ at Δf before the LR drops."""
    from keras_ternary.sweep import load_sweep
    from keras_ternary.training import make_delta_growth

    for run in load_sweep(sweep_name, "out")[1]:
        config = run.config
        opt = config.optimizer
        schedule = EpochPiecewiseSchedule(1, opt.lr_values, opt.lr_boundaries, config.time_scale)
        lrs = [schedule.value_at_epoch(e - 1) for e in range(1, config.epochs + 1)]
        assert lrs[first_drop - 2] == 5e-3 > lrs[first_drop - 1]  # 1-based epoch first_drop
        if config.is_ternary and config.ternary.regime != "fixed":
            growth = make_delta_growth(config)
            # delta_for(n): Δ after n epochs done, i.e. during 1-based epoch n + 1
            assert growth.delta_for(saturate - 2) < 0.9 == growth.delta_for(saturate - 1)


def test_yaml_toml_extends_and_overrides(tmp_path):
    (tmp_path / "parent.yaml").write_text("epochs: 7\nternary: {regime: linear, delta0: 0.05}\n")
    (tmp_path / "child.toml").write_text(
        'extends = "parent.yaml"\nseed = 3\n[model]\nquantizer = "binary"\n'
    )
    config = load_config(tmp_path / "child.toml", ["ternary.delta_max=0.5", "epochs=9"])
    assert (config.epochs, config.seed, config.model.quantizer) == (9, 3, "binary")
    assert (config.ternary.regime, config.ternary.delta0, config.ternary.delta_max) == (
        "linear",
        0.05,
        0.5,
    )
    round_trip = config_from_dict(__import__("yaml").safe_load(dump_yaml(config)))
    assert round_trip == config


@pytest.mark.parametrize(
    "override, message",
    [
        ("epochs=0", "epochs"),
        ("epochs=abc", "epochs: expected int"),
        ("model.quantizer=quaternary", "model.quantizer"),
        ("ternary.regime=cubic", "ternary.regime"),
        ("ternary.delta_max=1.5", "delta_max"),
        ("modle.inflation=2", "unknown key modle"),
        ("model.width=2", "unknown key model.width"),
        ("optimizer.lr_boundaries=[5]", "one more learning rate"),
        ("data.source=imagenet", "data.source"),
        ("ternary.saturate_epoch=1", "saturate_epoch must be an integer epoch >= 2"),
        ("noequals", "section.key=value"),
    ],
)
def test_invalid_configs_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_every_shipped_config_is_valid():
    from keras_ternary.config import load_mapping
    from keras_ternary.sweep import load_sweep

    root = shipped_config_dir()
    files = sorted(root.rglob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        mapping = load_mapping(path)
        if any(k in mapping for k in ("grid", "runs")):
            _, runs = load_sweep(path)
            assert runs
        else:
            config_from_dict(mapping)


def test_atomic_text_and_history(tmp_path):
    target = tmp_path / "sub" / "history.csv"
    rows = [{"epoch": 1, "loss": 2.5, "delta": None}, {"epoch": 2, "loss": 2.0, "delta": 0.2}]
    atomic_write_text(target, format_history(rows))
    assert [p.name for p in target.parent.iterdir()] == ["history.csv"]  # no temp file left
    back = read_history(target)
    assert [r["epoch"] for r in back] == [1, 2] and back[0]["delta"] is None
    assert back[1]["loss"] == 2.0 and back[1]["val_accuracy"] is None
    assert apply_overrides({"a": {"b": 1}}, ["a.c=[1, 2]"]) == {"a": {"b": 1, "c": [1, 2]}}


def test_atomic_checkpoint_carries_state(tmp_path):
    model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
    model.compile("adam", "mse")
    path = tmp_path / "checkpoints" / "last.h5"
    atomic_save_model(model, path, include_optimizer=True, state={"epochs_done": 4})
    assert read_checkpoint_state(path) == {"epochs_done": 4}
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.h5"]
    with h5py.File(path) as handle:
        assert json.loads(handle.attrs[STATE_ATTR])["epochs_done"] == 4
    restored = tf.keras.models.load_model(path)
    np.testing.assert_array_equal(restored.get_weights()[0], model.get_weights()[0])
    assert run_status(tmp_path) == "partial"
    (tmp_path / "summary.json").write_text("{}")
    assert run_status(tmp_path) == "finished"
    assert run_status(tmp_path / "nothing") == "new"
