"""Image-classification data for training: CIFAR-10 (TFDS or official binaries) and SHAPES-10.

Sources
    ``cifar10_dir``  the official CIFAR-10 *binary* distribution (``cifar-10-batches-bin/``:
                     ``data_batch_1..5.bin``, ``test_batch.bin``; each record is 1 label byte and
                     3072 bytes of R, G, B planes of 32x32 pixels, row-major).
    ``tfds``         ``tensorflow_datasets`` ``cifar10`` (downloads when allowed and needed).
    ``shapes10``     SHAPES-10, a small 10-class 32x32x3 data set *generated procedurally* and
                     deterministically from a seed (stripes, checkerboards, discs, rings, ...).
                     It is **not CIFAR-10**: it only exists so that the quick start and the tests
                     run offline in minutes.
    ``auto``         ``cifar10_dir`` if a directory is given or found, else a TFDS copy that is
                     already prepared; otherwise a :class:`DataError` that says how to provide it.

Every source yields uint8 arrays; :func:`make_train_dataset` and :func:`make_eval_dataset`
build the one ``tf.data`` pipeline used for all of them: per-channel normalisation
``(x/255 - mean) / std``, and for training a pad-4 (zeros) random 32x32 crop and a random
horizontal flip (the BinaryNet/ResNet CIFAR recipe), batching (last partial batch kept),
images held in memory, test batches cached, prefetching. Shuffling and augmentation are
seeded per epoch with stateless ops, so epoch ``e`` sees the same batches whether or not the
run was interrupted and resumed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from keras_ternary import _compat

_compat.ensure_legacy_keras()

import tensorflow as tf  # noqa: E402

#: Per-channel mean and standard deviation of the CIFAR-10 training images in [0, 1]
#: (computed over all 50,000 x 32 x 32 pixels of each channel).
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
SHAPES10_CLASSES: tuple[str, ...] = (
    "horizontal_stripes",
    "vertical_stripes",
    "checkerboard",
    "disc",
    "ring",
    "square",
    "plus",
    "x_cross",
    "triangle_up",
    "triangle_down",
)
SOURCES: tuple[str, ...] = ("auto", "cifar10_dir", "tfds", "shapes10")

IMAGE_SIZE = 32
RECORD_BYTES = 1 + 3 * IMAGE_SIZE * IMAGE_SIZE
TRAIN_FILES: tuple[str, ...] = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
BATCHES_DIR = "cifar-10-batches-bin"
#: Environment variable naming a directory that holds (or whose ``cifar-10-batches-bin``
#: subdirectory holds) the official binary files; consulted by ``source="auto"``.
DATA_DIR_ENV = "KERAS_TERNARY_CIFAR10_DIR"

HOW_TO_PROVIDE = (
    "CIFAR-10 was not found. Provide it in one of two ways: "
    "(1) a directory with the official binary files (data_batch_1.bin ... data_batch_5.bin, "
    "test_batch.bin, from cifar-10-binary.tar.gz) passed as --data-dir DIR (DIR itself or "
    f"DIR/{BATCHES_DIR}) or set in ${DATA_DIR_ENV}; or "
    "(2) --data tfds to let tensorflow-datasets download and prepare 'cifar10' (needs internet; "
    "--tfds-dir chooses where). For an offline smoke test use --data shapes10 "
    "(generated shapes, not CIFAR-10)."
)


class DataError(RuntimeError):
    """The requested data cannot be found or read; the message says what to do."""


@dataclass(frozen=True)
class ArrayData:
    """A train/test split held in memory as uint8 images (N, 32, 32, 3) and int32 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> str:
        return (
            f"{self.name}: {len(self.y_train)} training / {len(self.y_test)} test images, "
            f"{self.num_classes} classes"
        )


# --------------------------------------------------------------------------- CIFAR-10 binaries
def find_cifar10_binary_dir(path: str | os.PathLike) -> Path | None:
    """The directory holding ``data_batch_1.bin``: ``path`` or ``path/cifar-10-batches-bin``."""
    root = Path(path).expanduser()
    for candidate in (root, root / BATCHES_DIR):
        if (candidate / TRAIN_FILES[0]).is_file():
            return candidate
    return None


def decode_cifar10_records(raw: bytes, source: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Decode CIFAR-10 binary records into images (N, 32, 32, 3) uint8 and labels (N,) int32.

    Each record is one label byte followed by the 1024 red, 1024 green and 1024 blue bytes of
    a 32x32 image in row-major order.
    """
    if len(raw) == 0 or len(raw) % RECORD_BYTES:
        raise DataError(
            f"{source}: size {len(raw)} bytes is not a positive multiple of the CIFAR-10 "
            f"record size {RECORD_BYTES}; is this an official cifar-10-binary file?"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int32)
    if labels.max() >= len(CIFAR10_CLASSES):
        raise DataError(f"{source}: label {labels.max()} out of range 0..9")
    planes = records[:, 1:].reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE)
    return np.ascontiguousarray(planes.transpose(0, 2, 3, 1)), labels


def load_cifar10_binary(path: str | os.PathLike) -> ArrayData:
    """Load the official CIFAR-10 binary files from ``path`` (or ``path/cifar-10-batches-bin``)."""
    folder = find_cifar10_binary_dir(path)
    if folder is None:
        raise DataError(
            f"no {TRAIN_FILES[0]} in {path} or {Path(path) / BATCHES_DIR}. " + HOW_TO_PROVIDE
        )
    missing = [f for f in (*TRAIN_FILES, TEST_FILE) if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)}; " + HOW_TO_PROVIDE)
    parts = [
        decode_cifar10_records((folder / f).read_bytes(), str(folder / f)) for f in TRAIN_FILES
    ]
    x_test, y_test = decode_cifar10_records(
        (folder / TEST_FILE).read_bytes(), str(folder / TEST_FILE)
    )
    return ArrayData(
        name="cifar10",
        x_train=np.concatenate([p[0] for p in parts]),
        y_train=np.concatenate([p[1] for p in parts]),
        x_test=x_test,
        y_test=y_test,
        class_names=CIFAR10_CLASSES,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    )


def write_cifar10_binary(folder: str | os.PathLike, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images (N, 32, 32, 3) uint8 and labels as one CIFAR-10 binary file ``folder``."""
    planes = np.asarray(images, np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1)
    records = np.concatenate([np.asarray(labels, np.uint8)[:, None], planes], axis=1)
    Path(folder).write_bytes(records.tobytes())


# --------------------------------------------------------------------------- TFDS
def load_cifar10_tfds(data_dir: str | None = None, download: bool = True) -> ArrayData:
    """Load ``cifar10`` through tensorflow-datasets (preparing it first when ``download``)."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder("cifar10", data_dir=data_dir)
        if download:
            builder.download_and_prepare()
        elif not builder.is_prepared():
            raise DataError(f"tensorflow-datasets has no prepared cifar10 in {builder.data_dir}")
        arrays = {}
        for split in ("train", "test"):
            ds = builder.as_dataset(split=split, as_supervised=True).batch(4096)
            batches = list(tfds.as_numpy(ds))
            arrays[split] = (
                np.concatenate([b[0] for b in batches]).astype(np.uint8),
                np.concatenate([b[1] for b in batches]).astype(np.int32),
            )
    except DataError:
        raise
    except Exception as exc:  # network, disk or format errors from TFDS
        raise DataError(
            f"tensorflow-datasets could not provide cifar10 ({exc}). {HOW_TO_PROVIDE}"
        ) from exc
    return ArrayData(
        name="cifar10",
        x_train=arrays["train"][0],
        y_train=arrays["train"][1],
        x_test=arrays["test"][0],
        y_test=arrays["test"][1],
        class_names=CIFAR10_CLASSES,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    )


def tfds_cifar10_prepared(data_dir: str | None = None) -> bool:
    """Whether tensorflow-datasets already holds a prepared ``cifar10`` (no download needed).

    A local data directory without ``cifar10/*/dataset_info.json`` is answered without asking
    tensorflow-datasets (which would warn about the missing or empty folder).
    """
    root = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    if "://" not in root and not any(Path(root).expanduser().glob("cifar10/*/dataset_info.json")):
        return False
    try:
        import tensorflow_datasets as tfds

        return bool(tfds.builder("cifar10", data_dir=data_dir).is_prepared())
    except Exception:
        return False


# --------------------------------------------------------------------------- SHAPES-10
_GRID = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)


def _shape_mask(label: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean 32x32 foreground mask of one random instance of SHAPES-10 class ``label``."""
    yy, xx = _GRID
    cy, cx = rng.uniform(11.0, 21.0, size=2)
    dy, dx = yy - cy, xx - cx
    r = rng.uniform(6.5, 10.5)
    t = rng.uniform(1.2, 2.2)  # stroke half-width
    period = rng.uniform(4.0, 9.0)
    phase = rng.uniform(0.0, 2 * np.pi)
    if label == 0:
        return np.sin(2 * np.pi * yy / period + phase) > 0
    if label == 1:
        return np.sin(2 * np.pi * xx / period + phase) > 0
    if label == 2:
        cell = int(rng.integers(3, 8))
        oy, ox = rng.integers(0, cell, size=2)
        return ((yy + oy) // cell + (xx + ox) // cell) % 2 == 0
    if label == 3:
        return dx**2 + dy**2 <= r**2
    if label == 4:
        return np.abs(np.sqrt(dx**2 + dy**2) - r) <= t
    if label == 5:
        return (np.abs(dx) <= 0.8 * r) & (np.abs(dy) <= 0.8 * r)
    if label == 6:
        return ((np.abs(dx) <= t) & (np.abs(dy) <= r)) | ((np.abs(dy) <= t) & (np.abs(dx) <= r))
    if label == 7:
        box = (np.abs(dx) <= r) & (np.abs(dy) <= r)
        return box & ((np.abs(dx - dy) <= 1.4 * t) | (np.abs(dx + dy) <= 1.4 * t))
    if label == 8:
        return (np.abs(dy) <= r) & (np.abs(dx) <= (dy + r) / 2)
    if label == 9:
        return (np.abs(dy) <= r) & (np.abs(dx) <= (r - dy) / 2)
    raise ValueError(f"SHAPES-10 has labels 0..9, not {label}")


def _shapes_split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` SHAPES-10 images (balanced classes, shuffled) from ``rng``."""
    labels = rng.permutation(np.arange(n) % len(SHAPES10_CLASSES)).astype(np.int32)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for i, label in enumerate(labels):
        mask = _shape_mask(int(label), rng)[..., None]
        # Foreground lighter than background in every channel: with free colours a disc on a
        # dark ground and a hole in a light one are the same mask, and ResNet-20 stays near
        # chance for hundreds of steps (float 41%, ternary 12% after 375 steps, measured).
        background = rng.uniform(0.0, 0.4, size=3)
        foreground = rng.uniform(0.6, 1.0, size=3)
        image = np.where(mask, foreground, background)
        image = image + rng.normal(0.0, 0.06, size=image.shape)
        images[i] = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return images, labels


def generate_shapes10(n_train: int = 5000, n_test: int = 1000, seed: int = 0) -> ArrayData:
    """SHAPES-10: a deterministic, procedurally generated 10-class 32x32 RGB data set.

    Classes: horizontal / vertical stripes, checkerboard, disc, ring, square, plus, x-cross,
    upward / downward triangle, each with random position, size, stripe period, a random
    light foreground colour on a random dark background and Gaussian pixel noise. Every class
    is invariant under horizontal flips, so the CIFAR augmentation applies unchanged. It is
    NOT CIFAR-10. Normalisation statistics are computed from its training images.
    """
    if n_train < 1 or n_test < 1:
        raise DataError("SHAPES-10 needs at least one training and one test image")
    x_train, y_train = _shapes_split(n_train, np.random.default_rng([seed, 0]))
    x_test, y_test = _shapes_split(n_test, np.random.default_rng([seed, 1]))
    pixels = x_train.reshape(-1, 3).astype(np.float64) / 255.0
    mean = tuple(float(v) for v in pixels.mean(axis=0))
    std = tuple(float(v) for v in pixels.std(axis=0))
    return ArrayData("shapes10", x_train, y_train, x_test, y_test, SHAPES10_CLASSES, mean, std)


# --------------------------------------------------------------------------- selection
def _default_binary_dirs() -> list[Path]:
    dirs = [Path(os.environ[DATA_DIR_ENV])] if os.environ.get(DATA_DIR_ENV) else []
    return [*dirs, Path.home() / ".keras" / "datasets", Path("data")]


def load_data(
    source: str = "auto",
    data_dir: str | None = None,
    tfds_dir: str | None = None,
    download: bool = True,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
) -> ArrayData:
    """Load the data named by ``source`` (see the module docstring), optionally subsampled.

    ``train_size``/``test_size`` keep the first N images of each split (for SHAPES-10 they are
    the numbers generated; defaults 5000/1000).
    """
    if source not in SOURCES:
        raise DataError(f"unknown data source {source!r}; choose one of {', '.join(SOURCES)}")
    if source == "shapes10":
        return generate_shapes10(train_size or 5000, test_size or 1000, seed=seed)
    if source == "cifar10_dir":
        if not data_dir:
            raise DataError("data source 'cifar10_dir' needs --data-dir DIR. " + HOW_TO_PROVIDE)
        data = load_cifar10_binary(data_dir)
    elif source == "tfds":
        data = load_cifar10_tfds(tfds_dir, download=download)
    elif data_dir:  # auto with an explicit directory
        data = load_cifar10_binary(data_dir)
    else:
        found = next((d for d in _default_binary_dirs() if find_cifar10_binary_dir(d)), None)
        if found is not None:
            data = load_cifar10_binary(found)
        elif tfds_cifar10_prepared(tfds_dir):
            data = load_cifar10_tfds(tfds_dir, download=False)
        else:
            raise DataError(HOW_TO_PROVIDE)
    return take_subset(data, train_size, test_size)


def take_subset(data: ArrayData, train_size: int | None, test_size: int | None) -> ArrayData:
    """Keep the first ``train_size`` training and ``test_size`` test images (None: all)."""
    for n in (train_size, test_size):
        if n is not None and n < 1:
            raise DataError("train_size/test_size must be positive")
    return replace(
        data,
        x_train=data.x_train[:train_size],
        y_train=data.y_train[:train_size],
        x_test=data.x_test[:test_size],
        y_test=data.y_test[:test_size],
    )


# --------------------------------------------------------------------------- tf.data pipeline
def normalize(images: tf.Tensor, mean: Sequence[float], std: Sequence[float]) -> tf.Tensor:
    """Per-channel normalisation ``(x / 255 - mean) / std`` of uint8 images (any leading dims)."""
    x = tf.cast(images, tf.float32) / 255.0
    return (x - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def random_crop_flip(image: tf.Tensor, seed: tf.Tensor, pad: int = 4) -> tf.Tensor:
    """Zero-pad by ``pad`` pixels, crop a random 32x32 window, flip left-right with p = 1/2.

    ``seed`` is a shape-(2,) int tensor; the result is a pure function of (image, seed).
    """
    size = tf.shape(image)
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    crop = tf.image.stateless_random_crop(padded, size, seed=seed)
    return tf.image.stateless_random_flip_left_right(
        crop, seed=seed + tf.constant([0, 1], seed.dtype)
    )


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Number of batches per epoch (the last, partial batch is kept)."""
    return -(-n_examples // batch_size)


def make_train_dataset(
    data: ArrayData,
    batch_size: int = 256,
    seed: int = 0,
    first_epoch: int = 0,
    last_epoch: int = 1,
    augment: bool = True,
) -> tf.data.Dataset:
    """Training batches for epochs ``first_epoch .. last_epoch - 1`` (0-based), concatenated.

    Epoch ``e`` is shuffled and augmented with seeds derived from ``(seed, e)`` only, so a
    resumed run sees the same batches as an uninterrupted one. Use with
    ``model.fit(..., steps_per_epoch=steps_per_epoch(n, batch_size), initial_epoch=first_epoch)``.
    """
    n = len(data.y_train)
    images = tf.constant(data.x_train)
    labels = tf.constant(data.y_train)
    mean, std = data.mean, data.std

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=epoch_seed
        )

        def prepare(position: tf.Tensor, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            image = tf.gather(images, index)
            if augment:
                aug_seed = tf.stack([epoch_seed[0] * 1_000_003 + epoch_seed[1], position])
                image = random_crop_flip(image, aug_seed)
            return normalize(image, mean, std), tf.gather(labels, index)

        batches = tf.data.Dataset.from_tensor_slices(order).enumerate()
        return batches.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(
            batch_size
        )

    epochs = tf.data.Dataset.range(first_epoch, last_epoch)
    return epochs.flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)


def make_eval_dataset(data: ArrayData, batch_size: int = 256) -> tf.data.Dataset:
    """Normalised test batches in file order (cached after the first pass)."""
    ds = tf.data.Dataset.from_tensor_slices((data.x_test, data.y_test))
    ds = ds.batch(batch_size).map(
        lambda x, y: (normalize(x, data.mean, data.std), y), num_parallel_calls=tf.data.AUTOTUNE
    )
    return ds.cache().prefetch(tf.data.AUTOTUNE)
