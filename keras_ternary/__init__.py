"""keras-ternary: sparse ternary neural networks in Keras.

Implements Dordoni et al., *Sparsification of Deep Neural Networks via Ternary
Quantization* (MLSP 2024): the ternary quantizer of Eq. 5 with the saturating
straight-through estimator of Eq. 2, Δ growth regimes (Eq. 6–7) as a Keras callback,
sparsity/entropy/training-speed metrics, and the paper's ResNet-20*.

Importing this package selects Keras 2 (tf-keras) for ``tf.keras`` when TensorFlow has not
been imported yet (larq needs it), and raises an ImportError explaining the fix otherwise.
"""

from keras_ternary._compat import ensure_legacy_keras

ensure_legacy_keras()

from keras_ternary import regimes, stats  # noqa: E402
from keras_ternary.callbacks import DeltaGrowth  # noqa: E402
from keras_ternary.models import resnet20_star  # noqa: E402
from keras_ternary.quantizers import Binary, Ternary  # noqa: E402

__version__ = "0.1.0"

__all__ = ["Binary", "DeltaGrowth", "Ternary", "__version__", "regimes", "resnet20_star", "stats"]
