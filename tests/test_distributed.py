"""Quantizers and DeltaGrowth under tf.distribute.MirroredStrategy (two logical CPUs).

Logical devices must be configured before TensorFlow initialises, so the check runs in a
fresh interpreter.
"""

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])

SCRIPT = textwrap.dedent(
    """
    import json
    import keras_ternary as kt
    import larq as lq
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )

    def build():
        init = tf.keras.initializers.RandomUniform(-0.5, 0.5, seed=3)
        inputs = tf.keras.Input((8, 8, 3))
        x = lq.layers.QuantConv2D(8, 3, padding="same", kernel_quantizer=kt.Ternary(0.1),
                                  kernel_constraint="weight_clip", kernel_initializer=init,
                                  name="conv")(inputs)
        x = kt.activations.HardTanh()(x)
        x = tf.keras.layers.GlobalAveragePooling2D()(x)
        x = lq.layers.QuantDense(4, kernel_quantizer=kt.Ternary(0.1),
                                 kernel_constraint="weight_clip", kernel_initializer=init,
                                 name="fc")(x)
        model = tf.keras.Model(inputs, x)
        model.compile(tf.keras.optimizers.SGD(0.1),
                      tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=64)
    x = (rng.normal(size=(64, 8, 8, 3)) + y[:, None, None, None] * 0.5).astype("float32")

    def train(strategy):
        with strategy.scope():
            model = build()
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
        hist = model.fit(ds, epochs=3, verbose=0,
                         callbacks=[kt.DeltaGrowth("linear", 0.05, 1.0, 0.9)])
        return model, hist.history

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    m_model, m_hist = train(mirrored)
    s_model, s_hist = train(tf.distribute.OneDeviceStrategy("/cpu:0"))
    per_replica = [
        [float(v.numpy()) for v in q.delta_variable.values]
        for q in kt.callbacks.find_ternary_quantizers(m_model)
    ]
    diff = max(float(np.abs(a - b).max())
               for a, b in zip(m_model.get_weights(), s_model.get_weights()))
    print(json.dumps({
        "replicas": mirrored.num_replicas_in_sync,
        "per_replica_delta": per_replica,
        "mirrored_history": m_hist,
        "single_history": s_hist,
        "max_weight_diff": diff,
    }))
    """
)


def test_mirrored_strategy_matches_single_device():
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    expected_delta = 0.05 + 0.05 * 3  # linear regime at epoch 3 (x = 3)
    for values in out["per_replica_delta"]:
        assert len(values) == 2 and all(abs(v - expected_delta) < 1e-6 for v in values)
    m, s = out["mirrored_history"], out["single_history"]
    for key in ("delta", "sparsity", "entropy", "loss"):
        assert len(m[key]) == 3
    assert m["delta"] == s["delta"]
    assert max(abs(a - b) for a, b in zip(m["loss"], s["loss"], strict=True)) < 1e-4
    assert out["max_weight_diff"] < 1e-4


CLI_SCRIPT = textwrap.dedent(
    """
    import sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    from keras_ternary import cli

    out, *common = sys.argv[1:]
    mirrored = [*common, "--strategy", "mirrored", "--out", out + "/mirrored"]
    assert cli.main([*mirrored, "--stop-after", "1"]) == 0
    assert cli.main([*mirrored, "--resume"]) == 0  # resumed under the strategy
    assert cli.main([*common, "--out", out + "/single"]) == 0
    """
)

TINY_TRAIN = shlex.split(
    "train --data shapes10 --train-size 64 --test-size 32 --batch-size 16 --inflation 1 "
    "--epochs 2 --paper-epochs 20 --regime linear --delta0 0.05 --multiplier 0.1 "
    "--delta-max 0.5 --set model.blocks_per_stage=1 --set tensorboard=false "
    "--set snapshot_epochs=[] --verbose 0"
)


def test_train_strategy_mirrored_matches_single_device(tmp_path):
    """`train --strategy mirrored` on two logical CPUs: the global batch is split in two, batch
    norm is synchronised, so losses and Δ equal single-device training (also across a resume)."""
    from keras_ternary.rundir import read_history

    env = {
        **os.environ,
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
    }
    r = subprocess.run(
        [sys.executable, "-c", CLI_SCRIPT, str(tmp_path), *TINY_TRAIN],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("strategy: mirrored, 2 replicas") == 2, r.stdout
    m = read_history(tmp_path / "mirrored" / "history.csv")
    s = read_history(tmp_path / "single" / "history.csv")
    assert [row["epoch"] for row in m] == [row["epoch"] for row in s] == [1, 2]
    assert [row["delta"] for row in m] == [row["delta"] for row in s]
    # rounding differs (two partial sums, unfused batch norm): ~2e-4 here; per-replica batch
    # norm instead of synchronised gives ~0.1 on the first epoch
    for key in ("loss", "val_loss"):
        assert max(abs(a[key] - b[key]) for a, b in zip(m, s, strict=True)) < 2e-3, key
    assert m[0]["loss"] != m[-1]["loss"]  # it trained
