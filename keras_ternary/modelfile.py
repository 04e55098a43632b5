"""Loading saved Keras models without running code embedded in them.

A ``Lambda`` layer stores Python byte code, which Keras runs when it rebuilds the model. Keras'
``safe_mode`` refuses that for ``.keras`` files only; legacy ``.h5`` files are deserialized
without any check. :func:`check_model_file` closes that gap the same way for both formats:
before anything is deserialized, the ``model_config`` JSON of an ``.h5`` file (read with
h5py, in a child process first: :func:`~keras_ternary.fileio.probe_hdf5`) is searched for
entries that carry code, and the file is refused unless the caller opts in
(``safe_mode=False``; ``--unsafe-load`` on the command lines). ``.keras`` files are passed to
Keras with ``safe_mode`` set accordingly.

The path must be a regular file of bounded size (:func:`~keras_ternary.fileio.check_input_file`).
TensorFlow is imported only by :func:`load_model`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any

from keras_ternary.fileio import UnreadableFileError, check_input_file, probe_hdf5, quote

__all__ = [
    "CODE_LAYERS",
    "ModelFileError",
    "UnsafeModelError",
    "check_model_file",
    "code_entries",
    "h5_model_config",
    "is_inbound_ref",
    "keras_load",
    "keras_version",
    "load_error_reason",
    "load_model",
    "plain_functions",
]


def is_inbound_ref(value: Any) -> bool:
    """True for ``[layer name, node index, tensor index(, kwargs)]``: a reference to a layer's
    output in a Keras 2 model config's ``inbound_nodes`` (or in a ``TFOpLambda``'s kwargs)."""
    return (
        isinstance(value, list | tuple)
        and len(value) in (3, 4)
        and isinstance(value[0], str)
        and all(isinstance(i, int) for i in value[1:3])
    )


#: Layer classes whose saved config holds Python code (byte code or a function to import).
CODE_LAYERS = frozenset({"Lambda"})
#: Config keys whose value ``"lambda"`` means serialized byte code follows.
_CODE_TYPE_KEYS = ("function_type", "output_shape_type")

UNSAFE_HINT = (
    "loading it would run that code; if you trust the file, pass --unsafe-load "
    "(safe_mode=False in Python)"
)


class ModelFileError(ValueError):
    """A model file cannot be read (missing, not a regular file, too large, corrupt)."""


class UnsafeModelError(ModelFileError):
    """A model file holds code that loading would run, and the caller did not allow it."""


KERAS3_HINT = (
    "Keras 3 files are not supported (larq and this package use tf.keras 2): rebuild the "
    "model with tf-keras (TF_USE_LEGACY_KERAS=1) and save it again, copying the weights over "
    "with get_weights/set_weights"
)
#: Longest reason :func:`load_error_reason` keeps.
_REASON_CHARS = 300


def keras_version(path: str | os.PathLike) -> str | None:
    """The Keras version recorded in a ``.keras`` archive or an ``.h5`` model (None if none)."""
    path = os.fspath(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if "metadata.json" not in archive.namelist():
                    return None
                version = json.loads(archive.read("metadata.json")).get("keras_version")
        else:
            import h5py

            with h5py.File(path, "r") as handle:
                version = handle.attrs.get("keras_version")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None  # unreadable: the loader reports what is wrong with the file
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    return version if isinstance(version, str) else None


def _check_keras_version(path: str) -> None:
    version = keras_version(path)
    if version and version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 3:
        raise ModelFileError(f"{path} was saved by Keras {version}; {KERAS3_HINT}")


def load_error_reason(exc: BaseException) -> str:
    """The reason Keras gives for a failed load, on one line, without the config it dumps.

    Keras reports a layer it cannot rebuild as ``Error when deserializing class 'X' using
    config={...}.`` followed by ``Exception encountered: <reason>``; this keeps the class and
    the reason and drops the config (often kilobytes long).
    """
    text = str(exc).strip()
    match = re.match(r"Error when deserializing class '([^']*)' using config=", text)
    if match:
        _, found, reason = text.rpartition("Exception encountered:")
        reason = reason.strip() if found else "(Keras gives no reason)"
        text = f"cannot rebuild layer class {match.group(1)!r}: {reason}"
    first = text.splitlines()[0] if text else ""
    if len(first) > _REASON_CHARS:
        first = first[: _REASON_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {first}".rstrip(": ")


def code_entries(config: Any, where: str = "model") -> Iterator[str]:
    """Where in a parsed Keras model config code is stored (layer names), recursively."""
    if isinstance(config, Mapping):
        inner = config.get("config")
        name = inner.get("name") if isinstance(inner, Mapping) else None
        here = f"{where}/{name}" if isinstance(name, str) else where
        if config.get("class_name") in CODE_LAYERS:
            yield f"{config['class_name']} layer {quote(name or '?', 60)}"
            return
        if any(config.get(key) == "lambda" for key in _CODE_TYPE_KEYS):
            yield f"serialized function in {quote(here, 60)}"
        for value in config.values():
            if isinstance(value, Mapping | list):
                yield from code_entries(value, here)
    elif isinstance(config, list):
        for item in config:
            yield from code_entries(item, where)


def h5_model_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed ``model_config`` attribute of an ``.h5`` model (None if it has none).

    ModelFileError if the file is not readable HDF5 or the attribute is not JSON.
    """
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("model_config")
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError, KeyError, RuntimeError...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"cannot read {os.fspath(path)}: {first}") from None
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        config = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(
            f"{os.fspath(path)}: the model config is not valid JSON ({exc})"
        ) from None
    return config if isinstance(config, dict) else None


def check_model_file(path: str | os.PathLike, *, safe_mode: bool = True) -> None:
    """Check ``path`` before Keras deserializes it (see the module docstring).

    Raises:
        ModelFileError: not a regular file, too large, an HDF5 file that crashes the
            HDF5 library, or a file saved by Keras 3.
        UnsafeModelError: an ``.h5`` model holding code (``Lambda``) and ``safe_mode``.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        return  # a SavedModel directory: no Python code; Keras reports what it is not
    try:
        check_input_file(path, "model", "model file")
    except OSError as exc:
        raise ModelFileError(str(exc)) from None
    import h5py

    if not h5py.is_hdf5(path):
        _check_keras_version(path)
        return  # .keras (Keras checks it with safe_mode) or not a model: Keras reports it
    try:
        probe_hdf5(path)
    except UnreadableFileError as exc:
        raise ModelFileError(str(exc)) from None
    _check_keras_version(path)
    if not safe_mode:
        return
    try:
        config = h5_model_config(path)
    except ModelFileError:
        return  # unreadable config: the loader reports it; nothing can be deserialized
    found = list(code_entries(config)) if config is not None else []
    if found:
        raise UnsafeModelError(
            f"{path} holds Python code ({', '.join(found[:3])}"
            f"{', ...' if len(found) > 3 else ''}); {UNSAFE_HINT}"
        )


#: Model classes tf-keras knows without registration.
_KERAS_MODEL_CLASSES = ("Functional", "Model", "Sequential")
IMPORT_HINT = "--import the package that defines it (in Python: import it first)"


def plain_functions(config: Any) -> list[str]:
    """Names of plain Python functions (e.g. larq_zoo's ``blurpool_initializer``) in an
    ``.h5`` model config, in the form tf-keras writes them and its own ``.h5`` reader cannot
    read back.

    tf-keras 2.x saves such a function as ``{"class_name": "function", "module": "builtins",
    "config": NAME}``; ``load_model`` deserializes ``.h5`` configs in its legacy mode, which
    looks up a class called ``function`` and fails ("Unknown initializer: 'function'") even
    when NAME is registered. :func:`keras_load` rebuilds such a model outside that mode.
    """
    if isinstance(config, Mapping):
        if (
            config.get("class_name") == "function"
            and config.get("module") == "builtins"
            and isinstance(config.get("config"), str)
        ):
            return [config["config"]]
        return [name for value in config.values() for name in plain_functions(value)]
    if isinstance(config, list):
        return [name for item in config for name in plain_functions(item)]
    return []


def _imported_model_class(tf, name: str):
    """The ``tf.keras.Model`` subclass called ``name`` that an imported module defines.

    An unregistered subclass (larq_zoo's ``BinaryDenseNet``) is saved in an ``.h5`` file by
    its bare class name, which Keras cannot resolve; the class itself is found among the
    modules already imported (``--import``), by module attribute, without importing more.
    """
    found = {
        id(obj): obj
        for module in list(sys.modules.values())
        if isinstance(obj := getattr(module, "__dict__", {}).get(name), type)
        and issubclass(obj, tf.keras.Model)
    }
    if len(found) != 1:
        where = (
            "no imported module defines it"
            if not found
            else "several imported modules define it: "
            + ", ".join(sorted(f"{c.__module__}.{c.__qualname__}" for c in found.values()))
        )
        raise ModelFileError(
            f"the model class {name!r} is not registered with Keras and {where}; {IMPORT_HINT}"
        )
    return next(iter(found.values()))


def keras_load(
    path: str | os.PathLike,
    *,
    safe_mode: bool = True,
    compile: bool = True,
    custom_objects: Mapping[str, Any] | None = None,
):
    """``tf.keras.models.load_model``, plus two kinds of ``.h5`` file tf-keras cannot read back
    by itself (both written by larq_zoo models, #15; no check of the file: see
    :func:`load_model`):

    * the model is an unregistered ``tf.keras.Model`` subclass: the class is taken from the
      imported modules (:func:`_imported_model_class`) and given as a custom object;
    * the config holds plain functions (:func:`plain_functions`), which must be registered
      Keras custom objects (``--import`` the package): the model is rebuilt from its config
      with ``model_from_json`` and its weights loaded from the file, uncompiled.

    ModelFileError names the object and says what to import when it cannot be found.
    """
    import h5py
    import tensorflow as tf

    path = os.fspath(path)
    custom = dict(custom_objects or {})
    config = h5_model_config(path) if os.path.isfile(path) and h5py.is_hdf5(path) else None
    if config is None:
        return tf.keras.models.load_model(
            path, custom_objects=custom, compile=compile, safe_mode=safe_mode
        )
    model_class = config.get("class_name")
    registered = tf.keras.utils.get_custom_objects()
    if isinstance(model_class, str) and model_class not in (
        *_KERAS_MODEL_CLASSES,
        *custom,
        *registered,
    ):
        custom[model_class] = _imported_model_class(tf, model_class)
    functions = plain_functions(config)
    if not functions:
        return tf.keras.models.load_model(
            path, custom_objects=custom, compile=compile, safe_mode=safe_mode
        )
    unknown = sorted({f for f in functions if f not in registered and f not in custom})
    if unknown:
        raise ModelFileError(
            f"the model uses the function {unknown[0]!r}, which no imported package registers "
            f"with Keras; {IMPORT_HINT}"
        )
    model = tf.keras.models.model_from_json(json.dumps(config), custom_objects=custom)
    model.load_weights(path)
    return model


def load_model(
    path: str | os.PathLike,
    *,
    safe_mode: bool = True,
    compile: bool = True,
    custom_objects: Mapping[str, Any] | None = None,
    **kwargs: Any,
):
    """Load a saved model with keras-ternary/larq layers, without running code it holds.

    :func:`check_model_file` first, then ``tf.keras.models.load_model`` with ``safe_mode``.
    Works for ``model.h5``, checkpoints (with their optimizer and learning-rate schedule),
    ``.keras`` files; needs no ``custom_objects`` for this package's classes (those given are
    merged) and passes ``kwargs`` to Keras. Public as ``keras_ternary.load_model``.
    """
    check_model_file(path, safe_mode=safe_mode)
    from keras_ternary import _compat

    _compat.ensure_legacy_keras()
    import tensorflow as tf

    import keras_ternary.activations  # noqa: F401  (registers HardTanh)
    import keras_ternary.quantizers  # noqa: F401  (registers Ternary, Binary; imports larq)
    from keras_ternary.schedules import EpochPiecewiseSchedule

    custom = {"EpochPiecewiseSchedule": EpochPiecewiseSchedule, **(custom_objects or {})}
    if kwargs:
        return tf.keras.models.load_model(
            os.fspath(path), custom_objects=custom, compile=compile, safe_mode=safe_mode, **kwargs
        )
    return keras_load(path, custom_objects=custom, compile=compile, safe_mode=safe_mode)
