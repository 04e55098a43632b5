"""The metadata an exported .tflite carries about its source Keras model (versioned JSON).

:func:`keras_ternary.export.to_tflite` writes an :class:`ExportMetadata` into the
flatbuffer's ``Model.metadata`` under :data:`METADATA_NAME`; :mod:`hw_sim.loaders.tflite`
reads it back with :meth:`ExportMetadata.from_json` to unfold what the exporter folded.
A reader refuses a :data:`SCHEMA_VERSION` newer than its own with a clear error.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

import numpy as np

from keras_ternary.contract.errors import ContractError

__all__ = [
    "METADATA_NAME",
    "SCHEMA_VERSION",
    "ExportMetadata",
    "LayerEntry",
    "ResidualEntry",
    "decode_floats",
    "encode_floats",
]

#: Name of the flatbuffer metadata entry.
METADATA_NAME = "keras_ternary.export"
#: Version of the JSON layout written by this code.
SCHEMA_VERSION = 1


def encode_floats(values: np.ndarray) -> str:
    """A float vector as base64 of little-endian float32 (compact and exact for float32)."""
    return base64.b64encode(np.asarray(values, "<f4").tobytes()).decode("ascii")


def decode_floats(value) -> np.ndarray:
    """A float vector written by :func:`encode_floats`, or a JSON list; float64."""
    if isinstance(value, str):
        try:
            return np.frombuffer(base64.b64decode(value, validate=True), "<f4").astype(np.float64)
        except (ValueError, binascii.Error):
            raise ContractError("unreadable float vector in the export metadata") from None
    try:
        return np.asarray(value, np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ContractError("unreadable float vector in the export metadata") from None


@dataclass
class LayerEntry:
    """One kernel of a conv / dense layer of the source model (one entry per IR compute op).

    A layer with several kernels (a separable convolution) has an entry per kernel, in the
    order it applies them, named as hw_sim's ops: ``<layer>/depthwise``, then ``<layer>``
    (:func:`keras_ternary.layer_table.kernel_op_names`); only the last one holds the bias and
    the folded batch-norm. Files written before separable export have no such entries.

    Attributes:
        name: the layer name (for one part of a layer with several kernels: its op's name).
        quantizer: kernel quantizer kind (``"ternary"``, ``"binary"``, ...) or None.
        delta: the ternary quantizer's Δ, or None.
        use_bias: whether the source layer had a bias (None: not recorded).
        folded_bn: the batch-norm folded into it, or None.
        bn_epsilon: that batch-norm's ε.
        negative_channels: output channels whose folded scale is negative (the sign moved
            into the kernel), so that the ternary kernel ``t`` can be recovered.
        residual_bn: the residual batch-norm pushed back into this layer, or None.
        layer: the Keras layer an entry is one part of (a separable convolution's
            ``<layer>/depthwise``), else None (the entry is the whole layer ``name``).
    """

    name: str
    quantizer: str | None = None
    delta: float | None = None
    use_bias: bool | None = None
    folded_bn: str | None = None
    bn_epsilon: float | None = None
    negative_channels: list[int] = field(default_factory=list)
    residual_bn: str | None = None
    layer: str | None = None

    @property
    def keras_layer(self) -> str:
        """The name of the Keras layer (in the source model and the .tflite's tensor names)."""
        return self.layer or self.name

    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "quantizer": self.quantizer,
            "delta": self.delta,
            "use_bias": self.use_bias,
            "folded_bn": self.folded_bn,
            "bn_epsilon": self.bn_epsilon,
            "negative_channels": [int(c) for c in self.negative_channels],
            "residual_bn": self.residual_bn,
        }
        if self.layer is not None:  # optional key: readers of older files ignore it
            d["layer"] = self.layer
        return d

    @classmethod
    def from_dict(cls, d: dict) -> LayerEntry:
        return cls(
            name=str(d["name"]),
            quantizer=d.get("quantizer"),
            delta=None if d.get("delta") is None else float(d["delta"]),
            use_bias=None if d.get("use_bias") is None else bool(d["use_bias"]),
            folded_bn=d.get("folded_bn"),
            bn_epsilon=None if d.get("bn_epsilon") is None else float(d["bn_epsilon"]),
            negative_channels=[int(c) for c in d.get("negative_channels") or []],
            residual_bn=d.get("residual_bn"),
            layer=None if d.get("layer") is None else str(d["layer"]),
        )


@dataclass
class ResidualEntry:
    """A batch-norm after a residual ``Add`` that the exporter pushed back into its branches.

    Attributes:
        bn, add, via: the batch-norm, the ``Add`` and the global pooling between them (or None).
        scale, shift: the batch-norm as ``y = scale·x + shift`` per channel (float64).
        epsilon: the batch-norm's ε.
        branches: per input of the add, ``(layer, kind)``; kind ``"folded"`` (a convolution
            that took ``scale``) or ``"scaled"`` (a depthwise layer added to hold it).
        shift_branch: the layer that took ``shift`` into its bias.
        clips: range-clip layers the exporter added.
    """

    bn: str
    add: str
    via: str | None
    scale: np.ndarray
    shift: np.ndarray
    epsilon: float
    branches: list[tuple[str, str]]
    shift_branch: str
    clips: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready; ``scale`` and ``shift`` as base64 of little-endian float32."""
        return {
            "bn": self.bn,
            "add": self.add,
            "via": self.via,
            "scale": encode_floats(self.scale),
            "shift": encode_floats(self.shift),
            "epsilon": self.epsilon,
            "branches": [{"layer": n, "kind": k} for n, k in self.branches],
            "shift_branch": self.shift_branch,
            "clips": list(self.clips),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ResidualEntry:
        return cls(
            bn=str(d["bn"]),
            add=str(d.get("add") or ""),
            via=d.get("via"),
            scale=decode_floats(d["scale"]),
            shift=decode_floats(d["shift"]),
            epsilon=float(d.get("epsilon", 1e-3)),
            branches=[(str(b["layer"]), str(b["kind"])) for b in d["branches"]],
            shift_branch=str(d.get("shift_branch") or ""),
            clips=[str(c) for c in d.get("clips") or []],
        )


@dataclass
class ExportMetadata:
    """What a .tflite cannot say about its source model.

    Attributes:
        producer: ``"keras-ternary <version>"``.
        mode: export mode (``"int8"``, ``"int16x8"``, ``"float"``).
        model_name: the Keras model's name.
        input: the name of the model input.
        layers: per conv / dense layer of the source, in order (per kernel: see
            :class:`LayerEntry`).
        batchnorms: the batch-norms kept as such (not folded).
        residual: the batch-norms pushed back into residual branches.
        version: :data:`SCHEMA_VERSION` of the layout.
    """

    producer: str = ""
    mode: str = ""
    model_name: str | None = None
    input: str | None = None
    layers: list[LayerEntry] = field(default_factory=list)
    batchnorms: list[str] = field(default_factory=list)
    residual: list[ResidualEntry] = field(default_factory=list)
    version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "producer": self.producer,
            "mode": self.mode,
            "model_name": self.model_name,
            "input": self.input,
            "layers": [e.to_dict() for e in self.layers],
            "batchnorms": list(self.batchnorms),
            "residual": [r.to_dict() for r in self.residual],
        }

    def to_json(self) -> str:
        """Compact JSON, as stored in the .tflite."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> ExportMetadata:
        """Parse a decoded JSON object.

        Raises:
            ContractError: not an object, no / unknown / newer ``version``, or a malformed
                entry (the message names the part).
        """
        if not isinstance(d, dict):
            raise ContractError("export metadata is not a JSON object")
        version = d.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ContractError(f"export metadata has no valid version (got {version!r})")
        if version > SCHEMA_VERSION:
            raise ContractError(
                f"export metadata version {version} is newer than this reader understands "
                f"({SCHEMA_VERSION}); upgrade keras-ternary"
            )
        try:
            layers = [LayerEntry.from_dict(e) for e in d.get("layers") or []]
        except ContractError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ContractError("malformed 'layers' export metadata") from None
        try:
            residual = [ResidualEntry.from_dict(e) for e in d.get("residual") or []]
        except ContractError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ContractError("malformed 'residual' export metadata") from None
        batchnorms = d.get("batchnorms") or []
        if not isinstance(batchnorms, list):
            raise ContractError("malformed 'batchnorms' export metadata")
        return cls(
            producer=str(d.get("producer") or ""),
            mode=str(d.get("mode") or ""),
            model_name=d.get("model_name"),
            input=d.get("input"),
            layers=layers,
            batchnorms=[str(b) for b in batchnorms],
            residual=residual,
            version=version,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ExportMetadata:
        """Parse :meth:`to_json` output (see :meth:`from_dict` for the errors)."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError):  # UnicodeDecodeError and JSONDecodeError included
            raise ContractError(f"unreadable {METADATA_NAME} metadata (not JSON)") from None
        return cls.from_dict(data)
