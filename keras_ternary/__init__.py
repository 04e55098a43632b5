"""keras-ternary: sparse ternary neural networks in Keras.

Implements Dordoni et al., *Sparsification of Deep Neural Networks via Ternary
Quantization* (MLSP 2024): the ternary quantizer of Eq. 5 with the saturating
straight-through estimator of Eq. 2, Δ growth regimes (Eq. 6–7) as a Keras callback,
sparsity/entropy/training-speed metrics, and the paper's ResNet-20*.

Importing this package selects Keras 2 (tf-keras) for ``tf.keras`` when TensorFlow has not
been imported yet (larq needs it), and raises an ImportError explaining the fix otherwise.
It also registers the quantizers and layers with Keras, so saved models reload with
``tf.keras.models.load_model`` (or :func:`load_model`) without ``custom_objects``.

The public names are attributes loaded on first use (PEP 562). Only in this project's
command lines (``python -m keras_ternary[.…]``, ``python -m hw_sim[.…]``) is the
registration (which imports TensorFlow) left to the command, after parsing, so that
``--help`` answers at once.
"""

from __future__ import annotations

import importlib
import sys

from keras_ternary._compat import select_legacy_keras

select_legacy_keras()

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

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'keras_ternary' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name.rsplit(".", 1)[-1] == name else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def _register_with_keras() -> None:
    """Import the modules whose classes Keras must know to deserialize saved models."""
    from keras_ternary.tflog import import_tensorflow

    import_tensorflow()  # without its native start-up chatter
    importlib.import_module("keras_ternary.quantizers")  # Ternary, Binary; imports larq
    importlib.import_module("keras_ternary.activations")  # HardTanh


#: Command lines of this project that register with Keras themselves, after parsing.
_COMMAND_LINES = ("keras_ternary", "hw_sim")


def _in_command_line() -> bool:
    """Whether a command line of :data:`_COMMAND_LINES` runs (``python -m NAME[.…]``)."""
    # ``python -m`` sets sys.argv[0] to "-m" while it locates the module (Python docs, "-m").
    if sys.argv[:1] == ["-m"]:
        return True
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name.split(".")[0] in _COMMAND_LINES


if not _in_command_line():
    _register_with_keras()
