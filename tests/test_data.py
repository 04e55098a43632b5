"""Data sources and the tf.data pipeline on tiny generated data (never /work/data)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_ternary import data as D


def cifar_dir(root, n_train_per_file=4, n_test=6, seed=0):
    """Write a tiny CIFAR-10 binary directory; returns (dir, train images, train labels)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    images, labels = [], []
    for name in (*D.TRAIN_FILES, D.TEST_FILE):
        n = n_test if name == D.TEST_FILE else n_train_per_file
        x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        D.write_cifar10_binary(folder / name, x, y)
        if name != D.TEST_FILE:
            images.append(x)
            labels.append(y)
    return root, np.concatenate(images), np.concatenate(labels)


def test_record_layout_is_label_then_rgb_planes():
    raw = bytearray(D.RECORD_BYTES)
    raw[0] = 7
    raw[1 + 0 * 1024 + 2 * 32 + 5] = 11  # R plane, row 2, column 5
    raw[1 + 1 * 1024 + 2 * 32 + 5] = 22  # G
    raw[1 + 2 * 1024 + 31 * 32 + 0] = 33  # B, row 31, column 0
    images, labels = D.decode_cifar10_records(bytes(raw))
    assert images.shape == (1, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [7]
    assert images[0, 2, 5].tolist() == [11, 22, 0]
    assert images[0, 31, 0, 2] == 33
    assert int(images.sum()) == 66


def test_binary_directory_round_trip(tmp_path):
    root, x, y = cifar_dir(tmp_path)
    for path in (root, root / "cifar-10-batches-bin"):
        data = D.load_cifar10_binary(path)
        np.testing.assert_array_equal(data.x_train, x)
        np.testing.assert_array_equal(data.y_train, y)
        assert data.x_test.shape == (6, 32, 32, 3) and data.num_classes == 10
        assert data.mean == D.CIFAR10_MEAN and data.std == D.CIFAR10_STD
    sub = D.load_data("auto", data_dir=str(root), train_size=5, test_size=2)
    assert sub.x_train.shape[0] == 5 and sub.x_test.shape[0] == 2


def test_binary_errors_say_how_to_provide_data(tmp_path):
    root, _, _ = cifar_dir(tmp_path)
    (root / "cifar-10-batches-bin" / D.TEST_FILE).unlink()
    with pytest.raises(D.DataError, match="test_batch.bin.*two ways"):
        D.load_cifar10_binary(root)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / D.TRAIN_FILES[0]).write_bytes(b"\x00" * 100)
    for f in (*D.TRAIN_FILES[1:], D.TEST_FILE):
        (bad / f).write_bytes(b"\x00" * D.RECORD_BYTES)
    with pytest.raises(D.DataError, match="multiple of the CIFAR-10 record size"):
        D.load_cifar10_binary(bad)
    with pytest.raises(D.DataError, match="unknown data source"):
        D.load_data("mnist")


def test_auto_without_data_names_both_ways(tmp_path, monkeypatch):
    monkeypatch.delenv(D.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(D, "_default_binary_dirs", lambda: [tmp_path])
    monkeypatch.setattr(D, "tfds_cifar10_prepared", lambda data_dir=None: False)
    with pytest.raises(D.DataError) as info:
        D.load_data("auto")
    message = str(info.value)
    assert "--data-dir" in message and "--data tfds" in message and "\n" not in message


def test_tfds_path_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        data = D.load_cifar10_tfds(download=True)
    assert data.x_train.shape == (12, 32, 32, 3) and data.x_train.dtype == np.uint8
    assert data.y_train.dtype == np.int32 and set(data.y_train) <= set(range(10))
    assert data.name == "cifar10" and data.x_test.shape == (12, 32, 32, 3)
    batch = next(iter(D.make_train_dataset(data, batch_size=8)))
    assert batch[0].shape == (8, 32, 32, 3)


def test_shapes10_is_deterministic_balanced_and_not_cifar():
    a = D.generate_shapes10(40, 20, seed=3)
    b = D.generate_shapes10(40, 20, seed=3)
    c = D.generate_shapes10(40, 20, seed=4)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    assert np.bincount(a.y_train, minlength=10).tolist() == [4] * 10
    assert a.name == "shapes10" and a.class_names == D.SHAPES10_CLASSES
    assert not np.array_equal(a.x_train[:20], a.x_test)  # separate test images
    # each class has a distinctive mask: stripes are periodic along one axis only
    rng = np.random.default_rng(0)
    horizontal = D._shape_mask(0, rng)
    assert (horizontal == horizontal[:, :1]).all() and not (horizontal == horizontal[:1]).all()
    for label in range(10):  # all classes are left-right symmetric up to position (flip-safe)
        mask = D._shape_mask(label, np.random.default_rng(label))
        assert 0 < mask.mean() < 1


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_pipeline_normalises_batches_and_is_seeded_per_epoch():
    data = D.generate_shapes10(10, 6, seed=0)
    steps = D.steps_per_epoch(10, 4)
    assert steps == 3  # last partial batch kept
    full = _batches(D.make_train_dataset(data, 4, seed=5, first_epoch=0, last_epoch=2))
    assert [len(y) for _, y in full] == [4, 4, 2, 4, 4, 2]
    resumed = _batches(D.make_train_dataset(data, 4, seed=5, first_epoch=1, last_epoch=2))
    for (xa, ya), (xb, yb) in zip(full[3:], resumed, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    epoch0 = np.concatenate([x for x, _ in full[:3]])
    epoch1 = np.concatenate([x for x, _ in full[3:]])
    assert not np.allclose(epoch0, epoch1)  # reshuffled and re-augmented
    other_seed = _batches(D.make_train_dataset(data, 4, seed=6, first_epoch=0, last_epoch=1))
    assert not np.allclose(epoch0, np.concatenate([x for x, _ in other_seed]))

    plain = _batches(D.make_train_dataset(data, 10, seed=5, augment=False))
    expected = (data.x_train / 255.0 - np.array(data.mean)) / np.array(data.std)
    order = [int(np.argmin(((expected - img) ** 2).sum(axis=(1, 2, 3)))) for img in plain[0][0]]
    assert sorted(order) == list(range(10))  # a permutation of the normalised images
    np.testing.assert_allclose(plain[0][0], expected[order], atol=1e-5)
    np.testing.assert_array_equal(plain[0][1], data.y_train[order])

    evaluation = _batches(D.make_eval_dataset(data, 4))
    np.testing.assert_allclose(
        np.concatenate([x for x, _ in evaluation]),
        (data.x_test / 255.0 - np.array(data.mean)) / np.array(data.std),
        atol=1e-5,
    )


def test_random_crop_flip_is_a_shifted_window_of_the_padded_image():
    image = tf.constant(np.arange(32 * 32 * 3, dtype=np.int32).reshape(32, 32, 3) % 251 + 1)
    seen = set()
    for s in range(8):
        out = D.random_crop_flip(image, tf.constant([s, 0], tf.int64)).numpy()
        again = D.random_crop_flip(image, tf.constant([s, 0], tf.int64)).numpy()
        np.testing.assert_array_equal(out, again)
        padded = np.pad(image.numpy(), ((4, 4), (4, 4), (0, 0)))
        matches = [
            (dy, dx, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
            if np.array_equal(
                out,
                padded[dy : dy + 32, dx : dx + 32][:, ::-1]
                if flip
                else padded[dy : dy + 32, dx : dx + 32],
            )
        ]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 1 and any(m[2] for m in seen)
