"""A functional Keras model as an editable graph of its config: nodes by name, edges, weights.

:class:`ConfigGraph` holds one config entry per layer (``class_name``, ``config``,
``inbound_nodes``) with its weights, and the model's outputs. The export rewrites
(:mod:`keras_ternary.export.transforms`) only ever edit it through :meth:`~ConfigGraph.replace`,
:meth:`~ConfigGraph.insert` and :meth:`~ConfigGraph.remove`; :meth:`~ConfigGraph.build` turns
it back into a model with every layer's weights set. Layer names are the node keys and never
change, so a rewritten model keeps the names of the source model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from keras_ternary.modelfile import is_inbound_ref

__all__ = ["ConfigGraph", "ExportError", "Node"]


class ExportError(ValueError):
    """The model cannot be exported as requested (the message says why)."""


@dataclass
class Node:
    """One layer: its config entry, its weights, and the source layer it came from (if any).

    Attributes:
        entry: the layer's functional-config entry (``name``, ``class_name``, ``config``,
            ``inbound_nodes``, ...); ``inbound_nodes`` holds one list of
            ``[layer, node_index, tensor_index, kwargs]`` arguments per call.
        weights: what :meth:`ConfigGraph.build` passes to ``set_weights`` (cast to the
            layer's dtype there).
        source: the layer of the source model, or None for a layer a rewrite added.
        rank: rank of the layer's output (batch axis included), None if unknown.
    """

    entry: dict
    weights: list[np.ndarray] = field(default_factory=list)
    source: tf.keras.layers.Layer | None = None
    rank: int | None = None

    @property
    def name(self) -> str:
        return self.entry["name"]

    @property
    def class_name(self) -> str:
        return self.entry["class_name"]

    @property
    def config(self) -> dict:
        return self.entry["config"]

    @property
    def calls(self) -> list[list[list]]:
        """The layer's inbound nodes: one list of arguments per call."""
        return self.entry.setdefault("inbound_nodes", [])

    @property
    def inputs(self) -> list[str]:
        """Names of the layers feeding the layer's only call ([] if called 0 or 2+ times)."""
        return [arg[0] for arg in _refs(self.calls[0])] if len(self.calls) == 1 else []


def _is_ref(value) -> bool:
    """A reference to a layer's output (:func:`~keras_ternary.modelfile.is_inbound_ref`) held
    in a list, which the graph rewires in place."""
    return isinstance(value, list) and is_inbound_ref(value)


def _nested_refs(value):
    if _is_ref(value):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _nested_refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _nested_refs(item)


def _refs(call: list) -> list[list]:
    """Every layer reference of one call, first positional first, as mutable lists.

    A call is a list of ``[layer, i, j, kwargs]`` arguments, or (a ``TFOpLambda``, e.g.
    ``x + y``) one such argument itself, whose kwargs refer to the other operands
    (``{"y": [layer, i, j]}``).
    """
    args = [call] if _is_ref(call) else call
    out = []
    for arg in args:
        out.append(arg)
        if len(arg) > 3:
            out.extend(_nested_refs(arg[3]))
    return out


def layer_entry(name: str, cls: type, config: dict, module: str = "keras.layers") -> dict:
    """A config entry (no inputs yet) for a layer of class ``cls``: Keras or registered."""
    registered = tf.keras.utils.get_registered_name(cls)
    custom = registered != cls.__name__
    return {
        "module": cls.__module__ if custom else module,
        "class_name": cls.__name__,
        "registered_name": registered if custom else None,
        "name": name,
        "config": {"name": name, **config},
        "inbound_nodes": [],
    }


class ConfigGraph:
    """The layers of a functional model's config, editable; see the module docs."""

    def __init__(self, config: dict, nodes: list[Node]):
        self._config = config
        self._nodes = {n.name: n for n in nodes}
        self.outputs: list[list] = config["output_layers"]

    @classmethod
    def from_model(cls, model: tf.keras.Model) -> ConfigGraph:
        """The graph of a functional model, with every layer's weights and output rank.

        Raises:
            ExportError: if an inbound node is not in the ``[[layer, i, j, kwargs], ...]`` form
                (or a ``TFOpLambda``'s ``[layer, i, j, kwargs]``), or for a ``Lambda`` layer.
        """
        config = copy.deepcopy(model.get_config())
        nodes = []
        for entry in config.pop("layers"):
            if entry["class_name"] == "Lambda":
                raise ExportError(
                    f"layer {entry['name']!r} (Lambda): holds Python code, which export does "
                    "not rebuild; use a Keras layer instead"
                )
            for call in entry.get("inbound_nodes", []):
                if not isinstance(call, list) or not (
                    _is_ref(call) or all(_is_ref(a) for a in call)
                ):
                    raise ExportError(f"unsupported inbound node format in layer {entry['name']!r}")
            layer = model.get_layer(entry["name"])
            shape = layer.output_shape
            rank = len(shape) if isinstance(shape, tuple) else None
            nodes.append(Node(entry, layer.get_weights(), layer, rank))
        return cls(config, nodes)

    def __contains__(self, name: str) -> bool:
        return name in self._nodes

    def __getitem__(self, name: str) -> Node:
        return self._nodes[name]

    def __iter__(self):
        return iter(list(self._nodes.values()))

    def get(self, name: str) -> Node | None:
        return self._nodes.get(name)

    def consumers(self, name: str) -> list[str]:
        """Layers that take ``name``'s output, once per argument (in graph order)."""
        return [
            n.name
            for n in self._nodes.values()
            for call in n.calls
            for a in _refs(call)
            if a[0] == name
        ]

    def is_output(self, name: str) -> bool:
        return any(o[0] == name for o in self.outputs)

    def _args(self):
        """Every argument of every call, then every model output, as mutable lists."""
        for node in self._nodes.values():
            for call in node.calls:
                yield from _refs(call)
        yield from self.outputs

    def replace(
        self, name: str, entry: dict | None = None, weights: list[np.ndarray] | None = None
    ) -> Node:
        """Give layer ``name`` a new class/config (``entry``, inputs kept) and/or new weights."""
        node = self._nodes[name]
        if entry is not None:
            config = {**entry["config"], "name": name}
            node.entry = {**entry, "name": name, "config": config, "inbound_nodes": node.calls}
        if weights is not None:
            node.weights = list(weights)
        return node

    def insert(
        self, entry: dict, consumer: str, index: int, weights: list[np.ndarray] | None = None
    ) -> Node:
        """Put a new single-input layer on argument ``index`` of ``consumer``'s only call.

        The new layer takes what that argument was; the argument then refers to the new
        layer. It goes right before ``consumer`` in the layer list. The new layer's output
        rank is taken from its input's.

        Raises:
            ExportError: if a layer of that name exists already.
        """
        name = entry["name"]
        if name in self._nodes:
            raise ExportError(f"cannot add layer {name!r}: a layer of that name exists already")
        (call,) = self._nodes[consumer].calls
        arg = _refs(call)[index]
        node = Node({**entry, "inbound_nodes": [[[*arg[:3], {}]]]}, list(weights or []))
        node.rank = self._nodes[arg[0]].rank if arg[0] in self._nodes else None
        arg[0], arg[1], arg[2] = name, 0, 0
        items = list(self._nodes.items())
        at = [k for k, _ in items].index(consumer)
        self._nodes = dict([*items[:at], (name, node), *items[at:]])
        return node

    def remove(self, name: str) -> None:
        """Drop single-input layer ``name``; what it fed (outputs included) takes its input."""
        (call,) = self._nodes[name].calls
        (source,) = _refs(call)
        del self._nodes[name]
        for arg in self._args():
            if arg[0] == name:
                arg[:3] = source[:3]

    def build(self, custom_objects: dict | None = None) -> tf.keras.Model:
        """The functional model of the graph, each layer's weights set from its node."""
        config = {**self._config, "layers": [n.entry for n in self._nodes.values()]}
        config["output_layers"] = self.outputs
        model = tf.keras.Model.from_config(copy.deepcopy(config), custom_objects=custom_objects)
        for layer in model.layers:
            if layer.weights:
                layer.set_weights(self._nodes[layer.name].weights)
        return model
