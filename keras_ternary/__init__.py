"""keras-ternary: sparse ternary neural networks in Keras.

Implements Dordoni et al., *Sparsification of Deep Neural Networks via Ternary
Quantization* (MLSP 2024): the ternary quantizer of Eq. 5 with the saturating
straight-through estimator of Eq. 2, Δ growth regimes (Eq. 6–7) as a Keras callback,
sparsity/entropy/training-speed metrics, and the paper's ResNet-20*.

Importing this package is light: it imports neither TensorFlow nor larq. The public names
are attributes loaded on first use (PEP 562); those that need TensorFlow import it then,
without its start-up chatter (:mod:`keras_ternary.tflog`).

It selects Keras 2 (tf-keras) for ``tf.keras`` when TensorFlow has not been imported yet
(larq needs it), and raises an ImportError explaining the fix otherwise.

Saved models reload with ``tf.keras.models.load_model`` (or :func:`load_model`) without
``custom_objects``, whatever the import order: the quantizers and layers are registered with
Keras at once if TensorFlow is already imported, and otherwise by a post-import hook as soon
as TensorFlow (with tf-keras and larq, if those are being imported around it) has finished
importing (:func:`keras_ternary._compat.after_import`). The hook costs nothing until then,
so ``python -m keras_ternary --help``, ``report`` and ``configs`` never load TensorFlow.
"""

from __future__ import annotations

import importlib

from keras_ternary import _compat

_compat.select_legacy_keras()

__version__ = "0.1.0"

#: public name -> module that defines it (modules themselves map to their own name)
_LAZY = {
    "Binary": "keras_ternary.quantizers",
    "DeltaGrowth": "keras_ternary.callbacks",
    "Ternary": "keras_ternary.quantizers",
    "load_model": "keras_ternary.modelfile",
    "regimes": "keras_ternary.regimes",
    "resnet20_star": "keras_ternary.models",
    "stats": "keras_ternary.stats",
}
#: modules of :data:`_LAZY` that do not import TensorFlow
_WITHOUT_TENSORFLOW = frozenset({"keras_ternary.modelfile", "keras_ternary.regimes"})
#: modules whose classes Keras must know to deserialize saved models (they register them)
_REGISTERING = ("keras_ternary.quantizers", "keras_ternary.activations")

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'keras_ternary' has no attribute {name!r}")
    if module_name not in _WITHOUT_TENSORFLOW:
        _register_with_keras()  # imports TensorFlow quietly, checks it has Keras 2
    module = importlib.import_module(module_name)
    value = module if module_name.rsplit(".", 1)[-1] == name else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def _register_with_keras() -> None:
    """Import TensorFlow (quietly, with Keras 2 checked) and register our classes with Keras."""
    _compat.ensure_legacy_keras()
    for module in _REGISTERING:
        importlib.import_module(module)


_compat.after_import("tensorflow", _register_with_keras, settle=("tf_keras", "larq", *_REGISTERING))
