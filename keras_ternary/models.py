"""The paper's ResNet-20* for CIFAR-10 (ternary, binary or float).

The paper builds on the BinaryNet ResNet for CIFAR-10 (itayhubara/BinaryNet.pytorch,
``resnet_binary.py`` with ``depth=18``, i.e. 2 basic blocks per stage) with inflation k:

* stem: conv3×3 (3 → 16k), BN, hardtanh;
* three stages of 2 basic blocks with 16k, 32k, 64k channels, stride 2 entering stages 2
  and 3; a block is conv3×3 – BN – hardtanh – conv3×3, plus the shortcut (identity, or
  1×1 conv + BN where the shape changes), then BN + hardtanh — except after the
  network's last block, which ends at the addition;
* global 8×8 average pooling, BN, hardtanh, Dense(10) with bias, BN on the logits.

Trainable parameters: **175,278** (k = 1) and **4,337,390** (k = 5). The paper reports
175,406 and 4,338,030 because its reference implementation also creates a batch-norm
(2·64k parameters) in the last block that it never applies, and counts it. We build
the network as it computes, without that unused layer.

The model outputs logits (the paper applies log-softmax in the loss); train it with
``SparseCategoricalCrossentropy(from_logits=True)``.
"""

from __future__ import annotations

import larq as lq
import tensorflow as tf

from keras_ternary.activations import HardTanh
from keras_ternary.quantizers import Binary, Ternary

__all__ = ["conv_init", "resnet20_star"]

BN_MOMENTUM = 0.9  # PyTorch momentum 0.1
BN_EPSILON = 1e-5


def conv_init(seed: int | None = None) -> tf.keras.initializers.Initializer:
    """N(0, sqrt(2/n)) with n = k_h·k_w·out_channels (the paper's Sec. 4.1 init)."""
    return tf.keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal", seed=seed
    )


def dense_init(seed: int | None = None) -> tf.keras.initializers.Initializer:
    """U(±1/sqrt(fan_in)), PyTorch's default for ``nn.Linear`` (the reference's classifier)."""
    return tf.keras.initializers.VarianceScaling(
        scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=seed
    )


def _make_quantizer(spec, delta: float):
    """A fresh quantizer for one layer from a name, an instance (cloned) or None."""
    if spec is None:
        return None
    if isinstance(spec, str):
        name = spec.lower()
        if name == "ternary":
            return Ternary(delta=delta)
        if name == "binary":
            return Binary()
        try:
            return lq.quantizers.get(spec)
        except ValueError:
            raise ValueError(
                f"unknown quantizer {spec!r}: use 'ternary', 'binary', None (float) or the "
                "name of a registered larq quantizer"
            ) from None
    if isinstance(spec, tf.keras.layers.Layer):
        return spec.__class__.from_config(spec.get_config())
    if callable(spec):
        return spec
    raise ValueError(f"cannot interpret quantizer {spec!r}: use 'ternary', 'binary' or None")


class _Builder:
    """Creates the layers of one ResNet-20* with consistent quantizers and initialisers."""

    def __init__(self, quantizer, input_quantizer, delta, quantize_first_last, seed):
        self.quantizer = quantizer
        self.input_quantizer = input_quantizer
        self.delta = delta
        self.quantize_first_last = quantize_first_last
        self.seed = seed
        self._n = 0

    def _seed(self) -> int | None:
        self._n += 1
        return None if self.seed is None else self.seed + self._n

    def conv(self, x, filters, kernel_size, strides=1, name=None, first=False):
        quantized = self.quantizer is not None and (self.quantize_first_last or not first)
        if not quantized:
            return tf.keras.layers.Conv2D(
                filters,
                kernel_size,
                strides,
                padding="same",
                use_bias=False,
                kernel_initializer=conv_init(self._seed()),
                name=name,
            )(x)
        return lq.layers.QuantConv2D(
            filters,
            kernel_size,
            strides,
            padding="same",
            use_bias=False,
            input_quantizer=None if first else _make_quantizer(self.input_quantizer, self.delta),
            kernel_quantizer=_make_quantizer(self.quantizer, self.delta),
            kernel_constraint=lq.constraints.WeightClip(1.0),
            kernel_initializer=conv_init(self._seed()),
            name=name,
        )(x)

    def dense(self, x, units, name=None):
        quantized = self.quantizer is not None and self.quantize_first_last
        if not quantized:
            return tf.keras.layers.Dense(
                units,
                kernel_initializer=dense_init(self._seed()),
                bias_initializer=dense_init(self._seed()),
                name=name,
            )(x)
        return lq.layers.QuantDense(
            units,
            input_quantizer=_make_quantizer(self.input_quantizer, self.delta),
            kernel_quantizer=_make_quantizer(self.quantizer, self.delta),
            kernel_constraint=lq.constraints.WeightClip(1.0),
            kernel_initializer=dense_init(self._seed()),
            bias_initializer=dense_init(self._seed()),
            name=name,
        )(x)


def _bn(x, name):
    return tf.keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)(
        x
    )


def _hardtanh(x, name):
    return HardTanh(name=name)(x)


def resnet20_star(
    inflation: int = 5,
    quantizer: str | tf.keras.layers.Layer | None = "ternary",
    input_quantizer: str | tf.keras.layers.Layer | None = None,
    quantize_first_last: bool = True,
    delta: float = 0.1,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    blocks_per_stage: int = 2,
    seed: int | None = None,
    name: str | None = None,
) -> tf.keras.Model:
    """Build the paper's ResNet-20* (see the module docstring for the architecture).

    Args:
        inflation: width multiplier k (paper: 5; ResNet-20 is 1).
        quantizer: kernel quantizer of every conv and dense layer: ``"ternary"``
            (:class:`Ternary` with threshold ``delta``), ``"binary"`` (:class:`Binary`), a
            quantizer instance (cloned per layer), or ``None`` for the float baseline (plain
            ``Conv2D``/``Dense``). Quantized kernels get ``WeightClip(1.0)``.
        input_quantizer: optional activation quantizer for the inputs of every quantized
            layer except the first convolution (which sees the image).
        quantize_first_last: if False the first convolution and the classifier stay float.
        delta: initial Δ of the ternary quantizers.
        num_classes: classifier width.
        input_shape: image shape (global average pooling makes other sizes work too).
        blocks_per_stage: basic blocks per stage (2 gives the paper's network).
        seed: base seed of the initialisers (None: Keras' global seed).
        name: model name (default ``resnet20_star_<quantizer>_k<inflation>``).

    Returns:
        A functional ``tf.keras.Model`` mapping images to logits.
    """
    if int(inflation) != inflation or inflation < 1:
        raise ValueError(f"inflation must be a positive integer, got {inflation}")
    if blocks_per_stage < 1:
        raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}")
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes}")
    if len(tuple(input_shape)) != 3 or any(d is not None and d < 1 for d in input_shape):
        raise ValueError(
            f"input_shape must be (height, width, channels) with positive sizes, got {input_shape}"
        )
    if isinstance(quantizer, str) and quantizer.lower() in ("none", "float"):
        quantizer = None
    for spec in (quantizer, input_quantizer):
        _make_quantizer(spec, delta)  # fail early with a clear message on an unknown name
    b = _Builder(quantizer, input_quantizer, delta, quantize_first_last, seed)
    k = int(inflation)
    inputs = tf.keras.Input(shape=input_shape, name="image")
    x = b.conv(inputs, 16 * k, 3, name="conv1", first=True)
    x = _bn(x, "bn1")
    x = _hardtanh(x, "tanh1")
    in_channels = 16 * k
    stages = (16 * k, 32 * k, 64 * k)
    for s, channels in enumerate(stages, start=1):
        for i in range(1, blocks_per_stage + 1):
            stride = 2 if (s > 1 and i == 1) else 1
            last_block = s == len(stages) and i == blocks_per_stage
            p = f"stage{s}_block{i}"
            shortcut = x
            y = b.conv(x, channels, 3, stride, name=f"{p}_conv1")
            y = _bn(y, f"{p}_bn1")
            y = _hardtanh(y, f"{p}_tanh1")
            y = b.conv(y, channels, 3, name=f"{p}_conv2")
            if stride != 1 or in_channels != channels:
                shortcut = b.conv(x, channels, 1, stride, name=f"{p}_down_conv")
                shortcut = _bn(shortcut, f"{p}_down_bn")
            x = tf.keras.layers.Add(name=f"{p}_add")([y, shortcut])
            if not last_block:
                x = _bn(x, f"{p}_bn2")
                x = _hardtanh(x, f"{p}_tanh2")
            in_channels = channels
    x = tf.keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    x = _bn(x, "bn2")
    x = _hardtanh(x, "tanh2")
    x = b.dense(x, num_classes, name="fc")
    logits = _bn(x, "bn3")
    qname = "float" if quantizer is None else str(getattr(quantizer, "name", quantizer))
    return tf.keras.Model(inputs, logits, name=name or f"resnet20_star_{qname}_k{k}")
