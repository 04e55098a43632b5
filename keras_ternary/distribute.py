"""``tf.distribute`` strategies for ``train``: one device, the devices of a machine, or a cluster.

``strategy`` in a run config (or ``train --strategy``) is one of :data:`STRATEGIES`:

* ``default``: TensorFlow's default placement (one device);
* ``mirrored``: :class:`tf.distribute.MirroredStrategy` over every GPU of this machine, or
  over its logical CPU devices when it has no GPU;
* ``multiworker``: :class:`tf.distribute.MultiWorkerMirroredStrategy` across the machines
  listed in the ``TF_CONFIG`` environment variable (every worker runs the same command).

The config's ``batch_size`` is the global batch, split across the replicas. Batch-norm layers
are switched to synchronised statistics when there is more than one replica, so a batch is
normalised over the global batch as on one device. Only the chief writes the run directory:
the other workers run the same code (saving a model reads synchronised variables with
collective ops, so every worker has to save at the same points) into a private temporary
directory that is deleted when the process exits.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from keras_ternary.config import STRATEGIES, ConfigError

__all__ = [
    "STRATEGIES",
    "describe",
    "is_chief",
    "make_strategy",
    "output_dir",
    "prepare_model",
    "shard_dataset",
]


def make_strategy(name: str) -> Any:
    """The ``tf.distribute.Strategy`` called ``name``; create it before any other TF op."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"invalid value for strategy: expected one of {', '.join(STRATEGIES)}")


def _check_tf_config() -> None:
    """ConfigError unless ``TF_CONFIG`` describes a cluster and this process's place in it."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ConfigError(
            "strategy multiworker needs the TF_CONFIG environment variable (the cluster's "
            "workers and this process's task; see docs/distributed.md)"
        )
    try:
        spec = json.loads(text)
        workers = spec["cluster"]["worker"]
        task = spec["task"]
        ok = isinstance(workers, list) and task["type"] in ("chief", "worker")
        ok = ok and isinstance(task["index"], int)
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ConfigError(
            'TF_CONFIG must be JSON like {"cluster": {"worker": ["host1:port", ...]}, '
            '"task": {"type": "worker", "index": 0}}'
        )


def is_chief(strategy: Any) -> bool:
    """Whether this process writes the run directory (always, except non-chief workers)."""
    return bool(strategy.extended.should_checkpoint)


def describe(strategy: Any, name: str) -> str:
    """One line: the strategy, its replicas and this process's role."""
    replicas = strategy.num_replicas_in_sync
    role = "" if name != "multiworker" else (", chief" if is_chief(strategy) else ", worker")
    return f"strategy: {name}, {replicas} replica{'s' if replicas != 1 else ''}{role}"


def output_dir(run_dir: Path, strategy: Any) -> Path:
    """``run_dir`` on the chief; elsewhere a private temporary directory removed at exit."""
    if is_chief(strategy):
        return run_dir
    tmp = Path(tempfile.mkdtemp(prefix="keras-ternary-worker-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return tmp / run_dir.name


def prepare_model(model: Any, strategy: Any) -> Any:
    """Batch norm over the global batch: synchronised statistics when replicas > 1.

    TF-Keras' ``BatchNormalization(synchronized=True)`` all-reduces the batch moments across
    replicas (it cannot be fused). The flag is not part of the layer's config, so saved models
    are unchanged and a run resumed on another number of devices gets the flag it needs.
    """
    import tensorflow as tf

    if strategy.num_replicas_in_sync > 1:
        for layer in model.submodules:
            if isinstance(layer, tf.keras.layers.BatchNormalization):
                layer.synchronized, layer.fused = True, False
    return model


def shard_dataset(dataset: Any, strategy: Any) -> Any:
    """Under ``multiworker``, shard the (in-memory) dataset's batches by element across workers."""
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
