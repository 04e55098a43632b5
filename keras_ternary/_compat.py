"""keras_ternary's side of TensorFlow's import: Keras 2 before it, registration after it.

**Before.** TensorFlow >= 2.16 maps ``tf.keras`` to Keras 3 unless ``TF_USE_LEGACY_KERAS=1``
is set before TensorFlow resolves ``tf.keras``; larq needs Keras 2 (tf-keras).
:func:`select_legacy_keras` sets it when TensorFlow has not been imported yet, and otherwise
checks that the user already got Keras 2 (:func:`ensure_legacy_keras`).

**After.** :func:`after_import` runs a function once a module (TensorFlow) has been
imported, without importing it: at once if it already is, else from a post-import hook on
``sys.meta_path``. The hook wraps the loader of the watched modules and fires when the last
of them finishes executing, so a function that imports larq or tf-keras never sees one of
them half-initialized (``import larq`` first imports TensorFlow and tf-keras from inside its
own ``__init__``). It removes itself after firing.

Data flows one way: this module uses :mod:`keras_ternary.tflog` to import TensorFlow quietly;
``tflog`` knows nothing of Keras.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from importlib.machinery import ModuleSpec
from types import ModuleType

_ADVICE = (
    "keras_ternary needs Keras 2 (the 'tf-keras' package) behind tf.keras, but tf.keras is "
    "Keras 3 in this process. Set the environment variable TF_USE_LEGACY_KERAS=1 before "
    "TensorFlow is imported (e.g. `export TF_USE_LEGACY_KERAS=1`, or import keras_ternary "
    "before tensorflow), and make sure tf-keras is installed (`pip install tf-keras==2.21.*`)."
)


def select_legacy_keras() -> None:
    """Without importing TensorFlow: select tf-keras if TensorFlow is not imported yet.

    If it is, check that ``tf.keras`` is Keras 2 (:func:`ensure_legacy_keras`).
    """
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    else:
        ensure_legacy_keras()


def ensure_legacy_keras() -> None:
    """Import TensorFlow (quietly, with tf-keras selected) if needed; ImportError unless
    ``tf.keras`` is Keras 2, saying what to do."""
    if "tensorflow" not in sys.modules:
        from keras_ternary.tflog import import_tensorflow

        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        tf = import_tensorflow()
    else:
        import tensorflow as tf

    try:
        keras_version = tf.keras.__version__ if hasattr(tf.keras, "__version__") else None
        if keras_version is None:
            import tf_keras

            uses_tf_keras = tf.keras.layers.Layer is tf_keras.layers.Layer
        else:
            uses_tf_keras = str(keras_version).startswith("2.")
    except ImportError as exc:  # tf_keras missing
        raise ImportError(_ADVICE) from exc
    if not uses_tf_keras:
        raise ImportError(_ADVICE)


# --------------------------------------------------------------------------- after import
def after_import(trigger: str, callback: Callable[[], None], settle: Iterable[str] = ()) -> None:
    """Call ``callback()`` once ``trigger`` is imported and none of ``settle`` is mid-import.

    At once if ``trigger`` is already in ``sys.modules``; else when the outermost import of
    ``trigger`` or a ``settle`` module finishes (see the module docstring). An exception of
    ``callback`` at import time becomes a warning: it must not break the user's import.
    """
    if trigger in sys.modules:
        callback()
        return
    sys.meta_path.insert(0, _AfterImportHook(trigger, callback, (trigger, *settle)))


class _AfterImportHook(importlib.abc.MetaPathFinder):
    """A ``sys.meta_path`` finder that only wraps the loaders of the watched modules."""

    def __init__(self, trigger: str, callback: Callable[[], None], watched: Iterable[str]):
        self.trigger = trigger
        self.callback = callback
        self.watched = frozenset(watched)
        self.loading: set[str] = set()  # watched modules being executed now
        self.lock = threading.RLock()
        self.fired = False

    def find_spec(self, name, path, target=None) -> ModuleSpec | None:
        if name not in self.watched or self.fired:
            return None
        for finder in list(sys.meta_path):
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _WrappedLoader(spec.loader, self, name)
                return spec
        return None

    def finished(self, name: str) -> None:
        with self.lock:
            self.loading.discard(name)
            if self.fired or self.loading or self.trigger not in sys.modules:
                return
            self.fired = True
            if self in sys.meta_path:
                sys.meta_path.remove(self)
        try:
            self.callback()
        except Exception as exc:  # noqa: BLE001 - reported, never raised into `import x`
            warnings.warn(f"keras_ternary: {exc}", ImportWarning, stacklevel=2)


class _WrappedLoader(importlib.abc.Loader):
    """Runs the real loader, then tells the hook; the module keeps the real loader."""

    def __init__(self, loader: importlib.abc.Loader, hook: _AfterImportHook, name: str):
        self.loader = loader
        self.hook = hook
        self.name = name

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader
        with self.hook.lock:
            self.hook.loading.add(self.name)
        try:
            self.loader.exec_module(module)
        except BaseException:
            with self.hook.lock:
                self.hook.loading.discard(self.name)
            raise
        self.hook.finished(self.name)
