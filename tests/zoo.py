"""A zoo of small models nobody here wrote, for the hw_sim round-trip tests (issue #15).

Each :class:`ZooModel` builds a seeded tf.keras model with random weights from stock Keras
and larq layers, from larq_zoo architectures (``weights=None``) or from
``tf.keras.applications`` (``weights=None``), at tiny input sizes so that the tests stay
fast. Batch-norm statistics are randomized so that no layer is an identity. Left out as too
slow for the suite: ``tf.keras.applications.ResNet50`` (23.6 M weights even at 32x32; its
``.keras`` file takes ~30 s to load) and larq_zoo ``XNORNet`` (needs 224x224 inputs, 58 M
weights).

``missing`` names, per file format, what hw_sim cannot load yet (``".tflite"``: what does
not survive export with ``keras_ternary.export.to_tflite`` and hw_sim's .tflite loader,
tests/test_zoo_tflite.py): the tests mark those cases as expected failures (strict), so a
case that starts to work fails until its mark is removed. ``emulation_missing`` says why a
model that loads cannot be emulated yet.
``refused`` marks a model hw_sim refuses by design: the float ``MobileNetV2`` (hw_sim
profiles ternary/binary networks; a float network has no ternary/binary kernel to count, so
its "energy on a ternary accelerator" would mean nothing). Its layers (depthwise, ReLU6,
ZeroPadding2D, Add) all convert: the refusal is the "no quantized layer" check, after them.
And larq_zoo's ``RealToBinaryNet``, whose ``Lambda`` layers hold Python code, which loading
refuses unless ``safe_mode=False`` (then it loads: tests/test_broadcast.py).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field

import larq as lq
import numpy as np
import tensorflow as tf

import keras_ternary
from keras_ternary.activations import HardTanh

__all__ = ["FORMATS", "ZOO", "ZooModel", "randomize_batchnorm"]

FORMATS = (".h5", ".keras")
HAVE_LARQ_ZOO = importlib.util.find_spec("larq_zoo") is not None
L = tf.keras.layers


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry: a builder and what hw_sim does not support in it yet."""

    name: str
    build: Callable[[], tf.keras.Model]
    #: file suffix -> xfail reason (the first thing hw_sim cannot load); absent: loads
    missing: dict[str, str] = field(default_factory=dict)
    #: the model loads, but ``Emulator`` cannot run it yet: the xfail reason
    emulation_missing: str | None = None
    needs_larq_zoo: bool = False
    #: file formats to test (larger models in one only: loading each takes 5-12 s)
    formats: tuple[str, ...] = FORMATS
    #: hw_sim refuses the model on purpose: a fragment of the expected one-line error
    refused: str | None = None


def randomize_batchnorm(model: tf.keras.Model, seed: int = 0) -> tf.keras.Model:
    """Give every BatchNormalization random γ, β, moving mean and variance (seeded)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            values = []
            for w in layer.weights:
                shape = w.shape
                if "moving_variance" in w.name:
                    values.append(rng.uniform(0.5, 2.0, shape))
                elif "gamma" in w.name:
                    values.append(rng.uniform(0.5, 1.5, shape))
                else:
                    values.append(rng.normal(0.0, 0.3, shape))
            layer.set_weights([v.astype(np.float32) for v in values])
    return model


def _seeded(builder: Callable[[], tf.keras.Model]) -> Callable[[], tf.keras.Model]:
    def build() -> tf.keras.Model:
        tf.keras.backend.clear_session()
        tf.keras.utils.set_random_seed(7)
        return randomize_batchnorm(builder())

    build.__doc__ = builder.__doc__
    return build


def _tern(delta: float = 0.05) -> keras_ternary.Ternary:
    return keras_ternary.Ternary(delta=delta)


def _qconv(filters: int, **kwargs) -> L.Layer:
    kwargs.setdefault("kernel_quantizer", _tern())
    kwargs.setdefault("padding", "same")
    kwargs.setdefault("use_bias", False)
    return lq.layers.QuantConv2D(filters, 3, **kwargs)


def _qdense(units: int, **kwargs) -> L.Layer:
    kwargs.setdefault("kernel_quantizer", _tern())
    return lq.layers.QuantDense(units, **kwargs)


def _classifier(x, classes: int = 5) -> tf.Tensor:
    return _qdense(classes, name="logits")(L.Flatten()(x))


# ---------------------------------------------------------------------------- supported
@_seeded
def mlp() -> tf.keras.Model:
    """Flatten, QuantDense (ternary, binary kernels; float, binary inputs), BN, Dropout."""
    x_in = tf.keras.Input((4, 4, 2))
    x = L.Flatten()(x_in)
    x = _qdense(16, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.Dropout(0.3)(x)
    x = _qdense(12, kernel_quantizer="ste_sign", input_quantizer="ste_sign", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    x = L.Dense(6)(x)
    return tf.keras.Model(x_in, L.Activation("softmax")(x))


@_seeded
def conv_inputs() -> tf.keras.Model:
    """Conv2D stem; QuantConv2D with ternary/binary kernels on float/ternary/binary inputs."""
    x_in = tf.keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same")(x_in)
    x = L.BatchNormalization()(x)
    x = _qconv(8, input_quantizer=_tern(0.3))(x)  # ternary x ternary
    x = L.BatchNormalization()(x)
    x = _qconv(8, input_quantizer="ste_sign", kernel_quantizer="ste_sign", pad_values=1.0)(x)
    x = L.BatchNormalization()(x)
    x = _qconv(8, input_quantizer="ste_sign", strides=2, pad_values=-1.0)(x)  # bin x tern
    x = L.BatchNormalization()(x)
    x = _qconv(8, kernel_quantizer=None, input_quantizer="ste_sign", pad_values=1.0)(x)
    x = L.BatchNormalization()(x)
    x = _qconv(8, padding="valid", strides=(1, 2))(x)  # float x ternary, valid padding
    return tf.keras.Model(x_in, _classifier(x))


@_seeded
def pools() -> tf.keras.Model:
    """Max / average pooling (valid and same), global average and global max pooling."""
    x_in = tf.keras.Input((9, 9, 3))
    x = _qconv(8)(x_in)
    a = L.MaxPooling2D(2)(x)
    a = _qconv(8, padding="valid")(L.AveragePooling2D(3, strides=1, padding="same")(a))
    b = L.GlobalAveragePooling2D()(a)
    c = L.GlobalMaxPooling2D()(L.MaxPooling2D(3, strides=2, padding="same")(a))
    y = L.Add()([_qdense(5, name="head_avg")(b), _qdense(5, name="head_max")(c)])
    return tf.keras.Model(x_in, y)


@_seeded
def activations() -> tf.keras.Model:
    """ReLU, ReLU6, hard-tanh (keras_ternary HardTanh), tanh, sigmoid, softmax, residual Add."""
    x_in = tf.keras.Input((6, 6, 3))
    x = L.BatchNormalization()(_qconv(8)(x_in))
    r = L.ReLU()(x)
    y = L.ReLU(max_value=6.0)(_qconv(8)(r))
    y = HardTanh()(L.BatchNormalization()(y))
    y = L.Activation("tanh")(_qconv(8)(y))
    x = L.Add()([r, y])
    x = L.Activation("sigmoid")(L.BatchNormalization()(_qconv(8, activation="relu")(x)))
    x = _classifier(x)
    return tf.keras.Model(x_in, L.Activation("softmax")(x))


# ---------------------------------------------------------------------------- new layer types


@_seeded
def depthwise() -> tf.keras.Model:
    """DepthwiseConv2D (float) and QuantDepthwiseConv2D (ternary kernel, binary input)."""
    x_in = tf.keras.Input((8, 8, 4))
    x = _qconv(8)(x_in)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    x = L.BatchNormalization()(x)
    x = lq.layers.QuantDepthwiseConv2D(
        3, strides=2, depthwise_quantizer=_tern(), input_quantizer="ste_sign", use_bias=False
    )(x)
    return tf.keras.Model(x_in, _classifier(x))


@_seeded
def separable() -> tf.keras.Model:
    """SeparableConv2D and QuantSeparableConv2D (ternary kernels)."""
    x_in = tf.keras.Input((8, 8, 4))
    x = _qconv(8)(x_in)
    x = L.SeparableConv2D(8, 3, padding="same")(x)
    x = lq.layers.QuantSeparableConv2D(
        8, 3, depthwise_quantizer=_tern(), pointwise_quantizer=_tern(), use_bias=False
    )(x)
    return tf.keras.Model(x_in, _classifier(x))


@_seeded
def zero_padding() -> tf.keras.Model:
    """ZeroPadding2D before a valid convolution."""
    x_in = tf.keras.Input((6, 6, 3))
    x = L.ZeroPadding2D(((1, 2), (0, 1)))(x_in)
    x = _qconv(8, padding="valid")(x)
    return tf.keras.Model(x_in, _classifier(x))


@_seeded
def concatenate() -> tf.keras.Model:
    """Concatenate along channels (a DenseNet block)."""
    x_in = tf.keras.Input((6, 6, 3))
    x = _qconv(8)(x_in)
    x = L.Concatenate()([x, _qconv(4)(x)])
    x = _qconv(8)(x)
    return tf.keras.Model(x_in, _classifier(x))


def _merge(layer: type) -> Callable[[], tf.keras.Model]:
    @_seeded
    def build() -> tf.keras.Model:
        x_in = tf.keras.Input((6, 6, 3))
        x = _qconv(8)(x_in)
        x = layer()([x, _qconv(8)(x)])
        return tf.keras.Model(x_in, _classifier(_qconv(8)(x)))

    build.__doc__ = f"A {layer.__name__} layer merging two branches."
    return build


def _tfop(op: Callable) -> Callable[[], tf.keras.Model]:
    @_seeded
    def build() -> tf.keras.Model:
        x_in = tf.keras.Input((6, 6, 3))
        x = _qconv(8)(x_in)
        x = op(x, _qconv(8)(x))  # a TFOpLambda layer
        return tf.keras.Model(x_in, _classifier(_qconv(8)(x)))

    build.__doc__ = "Two branches merged by a tensor operator (a TFOpLambda layer)."
    return build


@_seeded
def reshape() -> tf.keras.Model:
    """Reshape between a convolution and the classifier."""
    x_in = tf.keras.Input((4, 4, 3))
    x = _qconv(8)(x_in)
    x = L.Reshape((16, 8))(x)
    x = L.Reshape((128,))(x)
    return tf.keras.Model(x_in, _qdense(5)(x))


def _activation_layer(make: Callable[[], L.Layer], what: str) -> Callable[[], tf.keras.Model]:
    @_seeded
    def build() -> tf.keras.Model:
        x_in = tf.keras.Input((6, 6, 3))
        x = make()(L.BatchNormalization()(_qconv(8)(x_in)))
        return tf.keras.Model(x_in, _classifier(_qconv(8)(x)))

    build.__doc__ = f"A {what} activation between two convolutions."
    return build


# ---------------------------------------------------------------------------- larq_zoo, apps
def _larq_zoo(name: str, size: int) -> Callable[[], tf.keras.Model]:
    @_seeded
    def build() -> tf.keras.Model:
        import larq_zoo

        family = larq_zoo.sota if hasattr(larq_zoo.sota, name) else larq_zoo.literature
        return getattr(family, name)(weights=None, input_shape=(size, size, 3), num_classes=10)

    build.__doc__ = f"larq_zoo {name} (weights=None) on {size}x{size} inputs."
    return build


@_seeded
def mobilenet_v2() -> tf.keras.Model:
    """tf.keras.applications.MobileNetV2, alpha 0.35, weights=None, 32x32 inputs."""
    return tf.keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10
    )


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in [
        ZooModel("mlp", mlp),
        ZooModel("conv_inputs", conv_inputs),
        ZooModel("pools", pools),
        ZooModel("activations", activations),
        ZooModel("depthwise", depthwise),
        ZooModel("separable", separable),
        ZooModel("zero_padding", zero_padding),
        ZooModel("concatenate", concatenate),
        ZooModel("multiply", _merge(L.Multiply)),
        ZooModel("subtract", _merge(L.Subtract)),
        ZooModel("tfop_add", _tfop(lambda a, b: a + b)),
        ZooModel(
            "tfop_multiply",
            _tfop(lambda a, b: a * b),
        ),
        ZooModel("reshape", reshape),
        ZooModel(
            "prelu",
            _activation_layer(L.PReLU, "PReLU"),
        ),
        ZooModel(
            "leaky_relu",
            _activation_layer(L.LeakyReLU, "LeakyReLU"),
        ),
        ZooModel(
            "binary_resnet_e18",
            _larq_zoo("BinaryResNetE18", 32),
            needs_larq_zoo=True,
            formats=(".h5",),
        ),
        ZooModel("birealnet", _larq_zoo("BiRealNet", 32), needs_larq_zoo=True, formats=(".keras",)),
        ZooModel(
            "quicknet_small",
            _larq_zoo("QuickNetSmall", 32),
            needs_larq_zoo=True,
        ),
        ZooModel(
            "binary_densenet28",
            _larq_zoo("BinaryDenseNet28", 32),
            needs_larq_zoo=True,
        ),
        ZooModel(
            "binary_alexnet",
            _larq_zoo("BinaryAlexNet", 96),
            needs_larq_zoo=True,
            formats=(".h5",),
        ),
        ZooModel(
            "real_to_binary_net",
            _larq_zoo("RealToBinaryNet", 32),
            {".tflite": "#15: export refuses its Lambda layers (Python code)"},
            needs_larq_zoo=True,
            # its Lambda layers (identities, ``lambda x: x``) hold Python code: refused in
            # safe mode; with safe_mode=False it loads, counts and emulates exactly
            # (tests/test_broadcast.py)
            refused="Lambda layer",
        ),
        ZooModel(
            "mobilenet_v2",
            mobilenet_v2,
            formats=(".h5",),
            refused="has no quantized layer",
        ),
    ]
}
