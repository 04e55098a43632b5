"""The export ↔ hw_sim contract, free of TensorFlow.

What :mod:`keras_ternary.export` writes and :mod:`hw_sim` reads is defined here once:

* :mod:`.metadata` -- the versioned metadata a .tflite carries about its source model;
* :mod:`.tflite_reader` -- the one reader of .tflite flatbuffers (tensors, operators, metadata);
* :mod:`.geometry` -- convolution / pooling window arithmetic ('same' padding, output size, taps);
* :mod:`.affine` -- inference batch-norm as a per-channel ``y = scale·x + shift``;
* :mod:`.activations` -- the one table of element-wise activations;
* :mod:`.ternary` -- splitting a kernel into ``{-1, 0, +1}`` levels times a channel scale;
* :mod:`.entropy` -- empirical entropy of symbol counts;
* :mod:`.errors` -- :class:`ContractError`.

Only numpy (and LiteRT's generated flatbuffer schema, for .tflite) are imported here.
"""
