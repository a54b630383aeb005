"""Image datasets: the IDX reader, MNIST / Fashion-MNIST, scikit-learn's digits, splits and downsampling."""

import gzip
import math
import os
import struct
import sys
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import delgrad_core as dg
from delgrad_core.datasets import (
    FASHION_MNIST_CLASS_NAMES,
    FASHION_MNIST_DEBIAN_DIR,
    MNIST_CLASS_NAMES,
    Dataset,
    DatasetFileError,
    DatasetFilesNotFoundError,
    available_datasets,
    digits,
    fashion_mnist,
    load_dataset,
    mnist,
    read_idx,
)
from delgrad_core.datasets._dataset import hand_over
from delgrad_core.datasets._resample import area_average, area_weights
from delgrad_core.datasets._splits import stratified_partition

TYPE_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}
FILE_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


# -- writing small IDX files ---------------------------------------------------------------------
def idx_header(code, shape):
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}i", *shape)


def idx_bytes(array):
    """The IDX encoding of `array`, written from the format's description."""
    array = np.asarray(array)
    code = TYPE_CODES[array.dtype.type]
    return idx_header(code, array.shape) + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, content, compress=False):
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


def sample_images(n_images, rng, first_id=0):
    """Random uint8 28x28 images whose pixels (0, 0) and (0, 1) encode an id (first_id + index)."""
    images = rng.integers(0, 256, size=(n_images, 28, 28), dtype=np.uint8)
    ids = first_id + np.arange(n_images)
    images[:, 0, 0], images[:, 0, 1] = ids % 256, ids // 256
    if n_images:
        images[0, 5, 5], images[-1, 6, 6] = 0, 255
    return images


def image_ids(features):
    grey = np.rint(features * 255).astype(np.int64)
    return grey[:, 0] + 256 * grey[:, 1]


def write_mnist_files(directory, rng, n_train=120, n_test=30, compress=True):
    """The four files of an MNIST-like set; returns {part: (images, labels)}."""
    content = {}
    for part, n_images in (("train", n_train), ("test", n_test)):
        images = sample_images(n_images, rng, first_id=0 if part == "train" else 10_000)
        labels = rng.permutation(np.arange(n_images) % 10).astype(np.uint8)
        suffix = ".gz" if compress else ""
        write(directory / f"{FILE_STEMS[part][0]}{suffix}", idx_bytes(images), compress)
        write(directory / f"{FILE_STEMS[part][1]}{suffix}", idx_bytes(labels), compress)
        content[part] = (images, labels)
    return content


@pytest.fixture()
def mnist_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("DELGRAD_FASHION_MNIST_DIR", raising=False)
    monkeypatch.delenv("DELGRAD_MNIST_DIR", raising=False)
    content = write_mnist_files(tmp_path, np.random.default_rng(1))
    return tmp_path, content


def peak_allocated_bytes(function):
    """Peak memory traced (numpy reports its buffers to tracemalloc) while `function` runs."""
    tracemalloc.start()
    try:
        try:
            function()
        except DatasetFileError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- the IDX reader ------------------------------------------------------------------------------
@pytest.mark.parametrize("compress", [False, True])
def test_idx_reads_uint8_images_and_labels(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    read_images = read_idx(write(tmp_path / "images", idx_bytes(images), compress))
    read_labels = read_idx(write(tmp_path / "labels", idx_bytes(labels), compress))
    assert read_images.dtype == np.uint8 and read_images.shape == (7, 28, 28)
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)


@pytest.mark.parametrize("dtype", list(TYPE_CODES))
def test_idx_reads_every_type_in_native_byte_order(tmp_path, dtype):
    steps = np.arange(24).reshape(2, 3, 4)
    if dtype is np.uint8:
        values = (steps * 11).astype(dtype)  # up to 253
    elif np.issubdtype(dtype, np.integer):
        values = (steps * 5 - 60).astype(dtype)  # negative too; fits int8
        if dtype is not np.int8:
            values *= 300  # needs the high bytes
    else:
        values = (steps / 7 - 1.5).astype(dtype)
    data = read_idx(write(tmp_path / "file.idx", idx_bytes(values)))
    assert data.dtype.isnative and data.dtype == np.dtype(dtype) and data.shape == (2, 3, 4)
    np.testing.assert_array_equal(data, values)


def test_idx_recognises_gzip_by_content_not_name(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "plain.gz", idx_bytes(labels))), labels)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "packed", idx_bytes(labels), compress=True)), labels)


def test_idx_reads_empty_arrays(tmp_path):
    data = read_idx(write(tmp_path / "empty", idx_header(0x08, (0, 28, 28))))
    assert data.shape == (0, 28, 28) and data.dtype == np.uint8


def idx_error(path, match):
    with pytest.raises(DatasetFileError, match=match) as caught:
        read_idx(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, dg.FileFormatError) and not isinstance(caught.value, dg.InvalidValueError)  # (data)
    return caught.value


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    ("cut_bytes", "what"), [(2, "ends inside the 4-byte magic number"), (3, "ends inside the 4-byte magic number"),
                            (4 + 6, "sizes of its 3 dimensions"), (16 + 100, "holds")]
)
def test_idx_rejects_truncated_files(tmp_path, compress, cut_bytes, what):
    content = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))[:cut_bytes]
    error = idx_error(write(tmp_path / "cut", content, compress), "truncated IDX file")  # (the path says "truncated")
    assert what in str(error)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_rejects_trailing_bytes(tmp_path, compress):
    content = idx_bytes(np.ones((3, 4), dtype=np.uint8)) + b"\x00"
    idx_error(write(tmp_path / "long", content, compress), "trailing data")


@pytest.mark.parametrize("compress", [False, True])
def test_idx_rejects_wrong_magic_and_type_code(tmp_path, compress):
    good = idx_bytes(np.ones((3, 4), dtype=np.uint8))
    idx_error(write(tmp_path / "magic", b"\x01" + good[1:], compress), r"not an IDX file: magic number 0x01000802")
    idx_error(write(tmp_path / "png", b"\x89PNG" + good[4:], compress), "not an IDX file")
    # the second byte must be zero too; a first byte 0x1f without 0x8b is no gzip file
    idx_error(write(tmp_path / "second", b"\x00\x01" + good[2:], compress), r"magic number 0x00010802 does not start")
    idx_error(write(tmp_path / "half_gzip", b"\x1f" + good[1:], compress), r"not an IDX file: magic number 0x1f000802")
    error = idx_error(write(tmp_path / "code", good[:2] + b"\x0a" + good[3:], compress),
                      "unsupported IDX data type code 0x0a")
    assert "0x08 (uint8)" in str(error)
    idx_error(write(tmp_path / "nodims", b"\x00\x00\x08\x00", compress), "0 dimensions")
    idx_error(write(tmp_path / "huge", idx_header(0x08, (-1, 4)), compress),  # (0xFFFFFFFF: read as -1 before)
              r"declares shape \(4294967295, 4\) of uint8 \(17179869180 bytes of data\), more than the limit")


def test_idx_rejects_corrupt_gzip(tmp_path):
    packed = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))
    idx_error(write(tmp_path / "cut.gz", packed[: len(packed) // 2]), "corrupt gzip data")
    corrupted = packed[:12] + bytes(b ^ 0xFF for b in packed[12:30]) + packed[30:]
    idx_error(write(tmp_path / "flipped.gz", corrupted), "corrupt gzip data")


def test_tracemalloc_sees_numpy_buffers(tmp_path):
    # positive control for the allocation tests below
    path = write(tmp_path / "big", idx_bytes(np.zeros((2, 1000, 1000), dtype=np.uint8)), compress=True)
    assert peak_allocated_bytes(lambda: read_idx(path)) > 2_000_000


@pytest.mark.parametrize("compress", [False, True])
def test_idx_holds_the_data_once_plain_or_gzipped(tmp_path, compress):
    # t10k-sized images; a whole-file read from gzip once held a second, temporary copy
    images = sample_images(10_000, np.random.default_rng(0))
    content = idx_bytes(images)
    path = tmp_path / "images"
    path.write_bytes(gzip.compress(content, compresslevel=1) if compress else content)  # (level 9: 10 s)
    assert peak_allocated_bytes(lambda: read_idx(path)) < images.nbytes + 2 * 2**20


@pytest.mark.parametrize("compress", [False, True])
def test_idx_rejects_absurd_sizes_without_allocating_them(tmp_path, compress):
    huge = write(tmp_path / "huge", idx_header(0x0E, (2**31 - 1, 2**31 - 1, 2**31 - 1)) + bytes(64), compress)
    idx_error(huge, "more than the limit of 1073741824 bytes")
    assert peak_allocated_bytes(lambda: read_idx(huge)) < 1_000_000
    # under the limit, but far more than the (small) file can hold
    big = write(tmp_path / "big", idx_header(0x08, (100_000, 28, 28)) + bytes(1000), compress)
    idx_error(big, "decompresses to at most" if compress else "truncated")
    assert peak_allocated_bytes(lambda: read_idx(big)) < 1_000_000


def test_idx_size_limit_is_adjustable(tmp_path):
    path = write(tmp_path / "labels", idx_bytes(np.zeros(100, dtype=np.uint8)))
    assert read_idx(path, max_data_bytes=100).shape == (100,)
    with pytest.raises(DatasetFileError, match="more than the limit of 99 bytes"):
        read_idx(path, max_data_bytes=99)


def test_idx_rejects_shapes_numpy_cannot_hold_naming_the_file_in_one_short_line(tmp_path):
    """(65 dimensions, or sizes beside a 0 too large to index, ended in numpy's ValueError naming
    no file; 255 dimensions gave a 6 KB message)"""
    many = write(tmp_path / "many", bytes([0, 0, 0x08, 65]) + struct.pack(">65I", *[1] * 65) + b"\x01")
    assert len(str(idx_error(many, "declares 65 dimensions; a file has 1 to 32"))) < 300
    empty = write(tmp_path / "empty", bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 0, 2**32 - 1, 2**32 - 1))
    idx_error(empty, r"shape \(0, 4294967295, 4294967295\), which numpy cannot hold")


def test_idx_reads_the_most_dimensions_it_allows(tmp_path):
    """32 dimensions (numpy 1's most) are read; 33 are refused."""
    most = write(tmp_path / "most", bytes([0, 0, 0x08, 32]) + struct.pack(">32I", *[1] * 32) + b"\x07")
    assert read_idx(most).shape == (1,) * 32 and read_idx(most).item() == 7
    idx_error(write(tmp_path / "more", bytes([0, 0, 0x08, 33]) + struct.pack(">33I", *[1] * 33) + b"\x07"),
              "declares 33 dimensions")


def test_idx_bounds_a_gzip_files_declared_size_by_deflates_largest_ratio(tmp_path):
    """Deflate expands at most 1032:1 (zlib's technical notes), so a gzip file of F bytes holds at most
    1032 * F bytes, header included: one byte more is refused before the data is read."""
    def gzipped_labels_header(n_labels):
        return write(tmp_path / "labels.gz", gzip.compress(idx_header(0x08, (n_labels,)), mtime=0))

    file_bytes = gzipped_labels_header(1).stat().st_size  # (8 header bytes: their gzip size does not vary with n)
    largest = 1032 * file_bytes - 8
    assert gzipped_labels_header(largest + 1).stat().st_size == file_bytes
    idx_error(gzipped_labels_header(largest + 1), f"decompresses to at most {1032 * file_bytes} bytes")
    idx_error(gzipped_labels_header(largest), "truncated IDX file")  # (allowed up front, then found short)


def test_idx_refuses_a_bad_size_limit_and_a_path_that_is_no_regular_file(tmp_path):
    path = write(tmp_path / "labels", idx_bytes(np.zeros(100, dtype=np.uint8)))
    for wrong in ("abc", None, -1, 0, True, 1.5):  # (a TypeError, or the file blamed for the limit)
        with pytest.raises(dg.InvalidValueError, match="^max_data_bytes: expected an integer number of bytes >= 1"):
            read_idx(path, max_data_bytes=wrong)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(dg.InvalidValueError, match="fifo is not a regular file"):  # (it waited for a writer)
        read_idx(fifo)


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"),
                    reason="needs Linux's /proc/self/mem (a file no read succeeds on)")
def test_idx_names_a_file_the_system_cannot_read(tmp_path):
    link = tmp_path / "t10k-images-idx3-ubyte"
    link.symlink_to("/proc/self/mem")
    with pytest.raises(OSError, match="t10k-images-idx3-ubyte"):
        read_idx(link)


def test_idx_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent")


# -- stratified partition ------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.data())
def test_partition_is_exact_disjoint_covering_and_stratified(data):
    labels = np.array(data.draw(st.lists(st.integers(0, 4), min_size=0, max_size=150)), dtype=np.int64)
    cuts = sorted(data.draw(st.lists(st.integers(0, labels.size), min_size=1, max_size=3)))
    sizes = np.diff([0, *cuts, labels.size])
    parts = stratified_partition(labels, sizes, seed=data.draw(st.integers(0, 2**31 - 1)))
    assert [part.size for part in parts] == sizes.tolist()
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(labels.size))
    for part, size in zip(parts, sizes):
        assert np.all(np.diff(part) > 0)
        for label in np.unique(labels):
            share = size * np.mean(labels == label)
            assert abs(np.sum(labels[part] == label) - share) < 1


def test_partition_is_reproducible_and_seeded():
    labels = np.random.default_rng(0).integers(0, 10, size=1000)
    first = stratified_partition(labels, (100, 900), seed=3)
    np.testing.assert_array_equal(first[0], stratified_partition(labels, (100, 900), seed=3)[0])
    assert not np.array_equal(first[0], stratified_partition(labels, (100, 900), seed=4)[0])
    assert not np.array_equal(first[0], np.arange(100))


def test_partition_stratifies_where_a_random_split_would_not():
    labels = np.repeat([0, 1], [990, 10])  # a rare class
    for seed in range(20):
        held_out, _ = stratified_partition(labels, (100, 900), seed)
        assert np.sum(labels[held_out] == 1) == 1


def test_partition_gives_an_exact_share_exactly():
    """Class 2 has 2 of 4 samples, so a part of 2 takes exactly 1 of them (2 * 2 / 4): only fractional shares may
    be rounded up (letting an exact one round up, too, put both in the first part and no class 0 or 1 sample)."""
    labels = np.array([0, 1, 2, 2])
    for seed in range(5):
        first, second, third = stratified_partition(labels, (2, 1, 1), seed)
        assert np.sum(labels[first] == 2) == 1


def test_partition_orders_each_class_by_numpys_legacy_permutation():
    """Sample i's random key is RandomState(seed).permutation(n)[i] (numpy's frozen generator, so splits do not
    change across numpy versions); a class is cut into parts in the order of its keys."""
    labels = np.array([0, 1] * 6)
    key = np.random.RandomState(11).permutation(12)
    expected = [i for c in (0, 1) for i in sorted(np.flatnonzero(labels == c), key=lambda i: key[i])[:2]]
    first, _ = stratified_partition(labels, (4, 8), seed=11)
    np.testing.assert_array_equal(first, sorted(expected))


def test_partition_rejects_bad_sizes():
    with pytest.raises(ValueError, match="adding up to 5"):
        stratified_partition(np.zeros(5), (2, 2), seed=0)
    with pytest.raises(ValueError, match="part_sizes"):
        stratified_partition(np.zeros(5), (6, -1), seed=0)
    with pytest.raises(dg.InvalidValueError, match=r"part_sizes: expected non-negative sizes adding up to 0, got \[\]"):
        stratified_partition(np.zeros(0), (), seed=0)
    with pytest.raises(dg.InvalidValueError, match=r"labels: expected a 1-d array, got shape \(2, 2\)"):
        stratified_partition(np.zeros((2, 2)), (1, 1), seed=0)


# -- downsampling --------------------------------------------------------------------------------
def block_means_by_upsampling(images, out_pixels):
    """Independent area average: repeat pixels up to a common multiple, then average equal blocks."""
    side = images.shape[1]
    common = math.lcm(side, out_pixels)
    up = np.repeat(np.repeat(images.astype(np.float64), common // side, axis=1), common // side, axis=2)
    block = common // out_pixels
    return up.reshape(len(images), out_pixels, block, out_pixels, block).mean(axis=(2, 4))


@pytest.mark.parametrize("out_pixels", [1, 7, 10, 14, 16, 27, 28])
def test_area_average_matches_upsample_and_block_mean(out_pixels):
    images = np.random.default_rng(out_pixels).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    np.testing.assert_allclose(area_average(images, out_pixels), block_means_by_upsampling(images, out_pixels),
                               rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(area_weights(28, out_pixels).sum(axis=1), 1.0, rtol=0, atol=1e-14)


def test_area_averages_stay_within_the_grey_levels_at_every_size():
    """(a white image came out above white at 12 of the 28 sizes, by a rounding error, and
    training refused such MNIST features as outside [0, 1])"""
    white, patch = np.full((1, 28, 28), 255, np.uint8), np.zeros((1, 28, 28), np.uint8)
    dark = np.full((1, 28, 28), 1, np.uint8)  # (came out below 1 at most sizes unclipped)
    patch[0, 10:12, 10:12] = 255
    for out_pixels in range(1, 29):
        assert (area_average(white, out_pixels) == 255.0).all(), out_pixels
        assert (area_average(dark, out_pixels) == 1.0).all(), out_pixels
        averaged = area_average(patch, out_pixels)
        assert averaged.min() >= 0.0 and averaged.max() <= 255.0, out_pixels


def test_area_average_in_several_blocks_of_images_is_that_of_one_block(monkeypatch):
    """Images are resampled a block of them at a time: with blocks of 2, 5 images make blocks of 2, 2 and 1."""
    from delgrad_core.datasets import _resample

    images = np.random.default_rng(3).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    images[4] = 9  # (a last block of one grey level: it is clipped to its own range)
    monkeypatch.setattr(_resample, "_BLOCK_IMAGES", 2)
    np.testing.assert_allclose(area_average(images, 10), block_means_by_upsampling(images, 10), rtol=1e-12, atol=1e-10)
    assert (area_average(images, 10)[4] == 9.0).all()


def test_area_average_to_14_is_2x2_mean_pooling():
    images = np.random.default_rng(2).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    pooled = np.array([[[images[n, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean() for j in range(14)]
                        for i in range(14)] for n in range(3)])
    np.testing.assert_array_equal(area_average(images, 14), pooled)


def test_area_average_rejects_bad_shapes():
    with pytest.raises(ValueError, match="out_pixels"):
        area_average(np.zeros((1, 4, 4)), 5)
    with pytest.raises(ValueError, match="out_pixels: expected 1 <= out_pixels <= 4, got 0"):
        area_average(np.zeros((1, 4, 4)), 0)
    with pytest.raises(ValueError, match="images"):
        area_average(np.zeros((1, 4, 5)), 2)


# -- MNIST and Fashion-MNIST from files ----------------------------------------------------------
@pytest.mark.parametrize("loader", [fashion_mnist, mnist])
def test_splits_shapes_and_scaling(mnist_dir, loader):
    directory, content = mnist_dir
    test_images, test_labels = content["test"]
    test = loader("test", directory=directory)
    assert test.name == loader.__name__ and test.split == "test"
    assert test.features.shape == (30, 784) and test.features.dtype == np.float64
    np.testing.assert_array_equal(test.features, test_images.reshape(30, 784) / 255.0)
    np.testing.assert_array_equal(test.labels, test_labels)
    assert test.features.min() == 0.0 and test.features.max() == 1.0
    assert test.class_names == (FASHION_MNIST_CLASS_NAMES if loader is fashion_mnist else MNIST_CLASS_NAMES)
    train, validation = loader("train", directory=directory), loader("validation", directory=directory)
    assert (len(train), len(validation)) == (110, 10)  # 120 // 12 held out


def test_train_and_validation_partition_the_training_file(mnist_dir):
    directory, content = mnist_dir
    images, labels = content["train"]
    train, validation = fashion_mnist("train", directory=directory), fashion_mnist("validation", directory=directory)
    train_ids, validation_ids = image_ids(train.features), image_ids(validation.features)
    assert np.all(np.diff(train_ids) > 0) and np.all(np.diff(validation_ids) > 0)  # file order kept
    np.testing.assert_array_equal(np.sort(np.concatenate([train_ids, validation_ids])), np.arange(120))
    np.testing.assert_array_equal(train.labels, labels[train_ids])
    np.testing.assert_array_equal(train.features, images[train_ids].reshape(-1, 784) / 255.0)
    assert validation.class_counts().tolist() == [1] * 10  # 12 of each class, 1 held out
    again = fashion_mnist("validation", directory=directory)
    np.testing.assert_array_equal(again.features, validation.features)


def test_validation_holds_out_the_first_image_of_each_class_in_seed_0s_legacy_permutation(mnist_dir):
    """120 training images, 12 of each class: the validation split is one image a class, the one whose key
    RandomState(0).permutation(120)[i] is the smallest of its class (the documented stratified_partition rule)."""
    directory, content = mnist_dir
    labels = content["train"][1]
    key = np.random.RandomState(0).permutation(120)
    expected = sorted(min(np.flatnonzero(labels == label), key=lambda i: key[i]) for label in range(10))
    np.testing.assert_array_equal(image_ids(mnist("validation", directory=directory).features), expected)


@pytest.mark.parametrize(("n_train", "n_validation"), [(12, 1), (23, 1), (24, 2)])
def test_validation_is_a_twelfth_of_the_training_file_rounded_down(tmp_path, n_train, n_validation):
    """From the fewest training images allowed (12) on; n_validation is n_train / 12 rounded down, by hand."""
    write_mnist_files(tmp_path, np.random.default_rng(4), n_train=n_train, n_test=3)
    assert len(mnist("validation", directory=tmp_path)) == n_validation
    assert len(mnist("train", directory=tmp_path)) == n_train - n_validation


def test_validation_split_depends_on_the_labels_only(tmp_path, mnist_dir):
    directory, content = mnist_dir
    # other images with the same labels: the same positions are held out
    other = sample_images(120, np.random.default_rng(9))
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    write(other_dir / "train-images-idx3-ubyte", idx_bytes(other))
    write(other_dir / "train-labels-idx1-ubyte", idx_bytes(content["train"][1]))
    first = image_ids(fashion_mnist("validation", directory=directory).features)
    second = image_ids(mnist("validation", directory=other_dir).features)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("size", [14, 16])
def test_downsampled_features(mnist_dir, size):
    directory, content = mnist_dir
    images = content["test"][0]
    test = fashion_mnist("test", directory=directory, size=size)
    assert test.features.shape == (30, size * size)
    expected = block_means_by_upsampling(images, size).reshape(30, -1) / 255.0
    np.testing.assert_allclose(test.features, expected, rtol=1e-12, atol=1e-15)
    assert test.features.min() >= 0.0 and test.features.max() <= 1.0


def test_environment_variable_and_directory_option(mnist_dir, tmp_path_factory, monkeypatch):
    directory, content = mnist_dir
    monkeypatch.setenv("DELGRAD_FASHION_MNIST_DIR", str(directory))
    np.testing.assert_array_equal(fashion_mnist("test").labels, content["test"][1])
    other = tmp_path_factory.mktemp("other")
    other_content = write_mnist_files(other, np.random.default_rng(5), n_train=24, n_test=12)
    np.testing.assert_array_equal(fashion_mnist("test", directory=other).labels, other_content["test"][1])
    monkeypatch.setenv("DELGRAD_MNIST_DIR", str(other))
    assert len(mnist("test")) == 12 and len(load_dataset("mnist", "train")) == 22
    monkeypatch.setenv("HOME", str(other.parent))
    monkeypatch.setenv("DELGRAD_MNIST_DIR", f"~/{other.name}")
    assert len(mnist("test")) == 12 and len(mnist("test", directory=f"~/{other.name}")) == 12


def test_plain_file_is_preferred_over_gzipped(mnist_dir):
    directory, _ = mnist_dir
    labels = np.full(30, 7, dtype=np.uint8)
    write(directory / "t10k-labels-idx1-ubyte", idx_bytes(labels))
    assert fashion_mnist("test", directory=directory).class_counts()[7] == 30


@pytest.mark.parametrize("compress", [False, True])
def test_missing_files_say_how_to_get_them(tmp_path, monkeypatch, compress):
    monkeypatch.delenv("DELGRAD_FASHION_MNIST_DIR", raising=False)
    monkeypatch.delenv("DELGRAD_MNIST_DIR", raising=False)
    with pytest.raises(DatasetFilesNotFoundError) as caught:
        fashion_mnist("train", directory=tmp_path)
    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError) and isinstance(caught.value, DatasetFileError)
    for text in ("train-images-idx3-ubyte[.gz]", "train-labels-idx1-ubyte[.gz]", str(tmp_path),
                 "apt-get install dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist",
                 "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", "t10k-images-idx3-ubyte.gz",
                 "DELGRAD_FASHION_MNIST_DIR", "--dataset-option directory=PATH", "directory=..."):
        assert text in message
    # only the test files present: the test split loads, the train split names what is missing
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    write(tmp_path / f"t10k-images-idx3-ubyte{suffix}", idx_bytes(sample_images(4, rng)), compress)
    write(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", idx_bytes(np.arange(4, dtype=np.uint8)), compress)
    assert len(fashion_mnist("test", directory=tmp_path)) == 4
    with pytest.raises(DatasetFilesNotFoundError, match="missing train-images-idx3-ubyte"):
        fashion_mnist("validation", directory=tmp_path)
    with pytest.raises(DatasetFilesNotFoundError) as caught:
        mnist("test")
    message = str(caught.value)
    for text in ("$DELGRAD_MNIST_DIR unset", "Debian has no MNIST package",
                 "from http://yann.lecun.com/exdb/mnist/ (or its mirror "
                 "https://ossci-datasets.s3.amazonaws.com/mnist/)"):
        assert text in message
    assert "apt-get" not in message
    monkeypatch.setenv("DELGRAD_MNIST_DIR", "")  # (it said "unset")
    with pytest.raises(DatasetFilesNotFoundError, match=r"\$DELGRAD_MNIST_DIR empty, and Debian has no MNIST"):
        mnist("test")
    with pytest.raises(DatasetFilesNotFoundError, match="given by the directory option; no such directory"):
        mnist("test", directory=tmp_path / "absent")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DatasetFilesNotFoundError, match="given by the directory option; not a directory"):
        mnist("test", directory=tmp_path / "afile")
    with pytest.raises(dg.InvalidValueError, match="directory: expected a folder path, got int"):
        mnist("test", directory=5)
    # (an empty one was read as the working directory; ~user of no user was "RuntimeError: Could not
    # determine home directory", blamed on the loader)
    with pytest.raises(dg.InvalidValueError, match="directory: expected a folder path, got an empty one"):
        mnist("test", directory="")
    with pytest.raises(dg.InvalidValueError, match=r"directory: cannot expand '~no-such-user-here/x'"):
        mnist("test", directory="~no-such-user-here/x")
    monkeypatch.setenv("DELGRAD_MNIST_DIR", "~no-such-user-here/x")
    with pytest.raises(dg.InvalidValueError, match=r"\$DELGRAD_MNIST_DIR: cannot expand '~no-such-user-here/x'"):
        mnist("test")
    monkeypatch.delenv("DELGRAD_MNIST_DIR")
    # (a folder, or a link to nothing, at a file's name was reported as plainly missing)
    (tmp_path / "train-images-idx3-ubyte").mkdir()
    (tmp_path / "train-labels-idx1-ubyte.gz").symlink_to(tmp_path / "gone")
    with pytest.raises(DatasetFilesNotFoundError, match=r"missing train-images-idx3-ubyte\[.gz\] \(train-images-idx3-"
                                                        r"ubyte is not a regular file\) and train-labels-idx1-ubyte"
                                                        r"\[.gz\] \(train-labels-idx1-ubyte.gz is a link to nothing\)"):
        fashion_mnist("train", directory=tmp_path)


@pytest.mark.skipif(FASHION_MNIST_DEBIAN_DIR.exists(), reason="Debian's dataset-fashion-mnist is installed")
def test_fashion_mnist_looks_where_debian_installs_it_by_default(monkeypatch):
    """Without a directory or $DELGRAD_FASHION_MNIST_DIR, Debian's package's folder is the one named."""
    monkeypatch.delenv("DELGRAD_FASHION_MNIST_DIR", raising=False)
    with pytest.raises(DatasetFilesNotFoundError, match=r"in /usr/share/datasets/fashion-mnist \(where Debian's "
                                                        r"package dataset-fashion-mnist installs them; no such "
                                                        r"directory\)"):
        fashion_mnist("test")


def test_a_link_to_a_folder_at_a_files_name_is_no_regular_file_not_a_link_to_nothing(tmp_path):
    """A link that leads somewhere is not called a link to nothing."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "t10k-images-idx3-ubyte").symlink_to(tmp_path / "folder")
    with pytest.raises(DatasetFilesNotFoundError, match=r"missing t10k-images-idx3-ubyte\[.gz\] \(t10k-images-"
                                                        r"idx3-ubyte is not a regular file\)"):
        mnist("test", directory=tmp_path)


def test_files_that_do_not_match(tmp_path):
    rng = np.random.default_rng(0)
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(sample_images(5, rng)))
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.arange(4, dtype=np.uint8)))
    with pytest.raises(DatasetFileError, match="holds 4 labels but .*t10k-images-idx3-ubyte holds 5 images"):
        fashion_mnist("test", directory=tmp_path)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.arange(6, dtype=np.uint8)))  # (more labels, too)
    with pytest.raises(DatasetFileError, match="holds 6 labels but .*t10k-images-idx3-ubyte holds 5 images"):
        fashion_mnist("test", directory=tmp_path)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.arange(5, dtype=np.int16)))  # (labels are uint8)
    with pytest.raises(DatasetFileError, match="expected a 1-d array of uint8 labels, got int16"):
        fashion_mnist("test", directory=tmp_path)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.array([0, 1, 2, 3, 10], dtype=np.uint8)))
    with pytest.raises(DatasetFileError, match="label 10 out of range 0..9"):
        fashion_mnist("test", directory=tmp_path)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.arange(5, dtype=np.uint8)))
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((5, 27, 27), dtype=np.uint8)))
    with pytest.raises(DatasetFileError, match=r"expected uint8 images of shape \(n, 28, 28\)"):
        fashion_mnist("test", directory=tmp_path)
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((5, 28, 28), dtype=np.int32)))
    with pytest.raises(DatasetFileError, match="int32"):
        fashion_mnist("test", directory=tmp_path)
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(sample_images(5, rng))[:-1])
    with pytest.raises(DatasetFileError, match="truncated"):
        fashion_mnist("test", directory=tmp_path)


@pytest.mark.parametrize("size", [0, 29, 14.0, True, "14"])
def test_bad_split_and_size(mnist_dir, size):
    directory, _ = mnist_dir
    with pytest.raises(ValueError, match="size"):
        fashion_mnist("test", directory=directory, size=size)
    with pytest.raises(ValueError, match="choose one of train, validation, test"):
        mnist("valid", directory=directory)
    with pytest.raises(ValueError, match="choose one of train, validation, test"):
        mnist(["train"], directory=directory)  # (a TypeError: unhashable type)
    with pytest.raises(ValueError, match="choose one of train, validation, test"):
        digits(["train"])


def test_handed_over_features_are_kept_without_copy():
    features = np.random.default_rng(0).random((4, 3))
    kept = Dataset("toy", "train", hand_over(features), [0, 1, 0, 1], ("a", "b"))
    assert np.shares_memory(kept.features, features) and not kept.features.flags.writeable
    copied = Dataset("toy", "train", features, [0, 1, 0, 1], ("a", "b"))
    assert not np.shares_memory(copied.features, features)


def test_registry_lists_the_image_datasets():
    datasets = available_datasets()
    for name in ("fashion_mnist", "mnist", "digits"):
        assert datasets[name] == ("train", "validation", "test")


# -- scikit-learn's digits -----------------------------------------------------------------------
def test_digits_without_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'delgrad\[sklearn\]'"):
        digits("train")


def test_digits_splits():
    datasets = pytest.importorskip("sklearn.datasets")
    bundle = datasets.load_digits()
    splits = {split: digits(split) for split in ("train", "validation", "test")}
    assert {split: len(data) for split, data in splits.items()} == {"train": 1258, "validation": 180, "test": 359}
    for data in splits.values():
        assert data.features.shape[1] == 64 and data.class_names == MNIST_CLASS_NAMES
        assert data.features.min() == 0.0 and data.features.max() == 1.0
        np.testing.assert_array_equal(data.features * 16, np.rint(data.features * 16))
        shares = len(data) * np.bincount(bundle.target, minlength=10) / len(bundle.target)
        assert np.all(np.abs(data.class_counts() - shares) < 1)
    # together the three splits are the bundled set (as multisets of labelled rows)
    rows = np.concatenate([np.column_stack([d.features * 16, d.labels]) for d in splits.values()])
    full = np.column_stack([bundle.data, bundle.target])
    np.testing.assert_array_equal(rows[np.lexsort(rows.T[::-1])], full[np.lexsort(full.T[::-1])])
    np.testing.assert_array_equal(load_dataset("digits", "test").features, splits["test"].features)
    with pytest.raises(ValueError, match="choose one of train, validation, test"):
        digits("holdout")


def bundle_of_numbered_digits(n_images):
    """A stand-in for scikit-learn's bundle: image i holds i in base 16 in its first three pixels (grey levels
    0..15), its label is i % 10."""
    from types import SimpleNamespace

    ids = np.arange(n_images)
    data = np.zeros((n_images, 64))
    data[:, 0], data[:, 1], data[:, 2] = ids % 16, ids // 16 % 16, ids // 256
    return SimpleNamespace(data=data, target=ids % 10)


def test_digits_splits_are_cut_test_validation_train_from_each_class_in_seed_0s_key_order(monkeypatch):
    """Image i's key is RandomState(0).permutation(1797)[i]; a class's images, by key, go to test, then
    validation, then train (grey levels are divided by 16)."""
    from delgrad_core.datasets import _digits

    monkeypatch.setattr(_digits, "_load_digits", lambda: bundle_of_numbered_digits(1797))
    key = np.random.RandomState(0).permutation(1797)
    ids = {}
    for split in ("test", "validation", "train"):
        grey = digits(split).features[:, :3] * 16
        ids[split] = (grey @ [1, 16, 256]).astype(np.int64)
    assert sorted(np.concatenate(list(ids.values())).tolist()) == list(range(1797))
    for label in range(10):
        test, validation, train = ([key[i] for i in ids[split] if i % 10 == label] for split in ids)
        assert max(test) < min(validation) and max(validation) < min(train)


def test_digits_refuses_a_bundle_of_another_size(monkeypatch):
    """The split sizes are for 1,797 images: another scikit-learn bundle is named, not split wrongly."""
    from delgrad_core.datasets import _digits

    monkeypatch.setattr(_digits, "_load_digits", lambda: bundle_of_numbered_digits(10))
    with pytest.raises(RuntimeError, match="digits: scikit-learn bundles 10 images, expected 1797"):
        digits("train")


# -- the real Fashion-MNIST, where Debian's package is installed ---------------------------------
@pytest.mark.skipif(not (FASHION_MNIST_DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv("DELGRAD_FASHION_MNIST_DIR", raising=False)
    assert read_idx(FASHION_MNIST_DEBIAN_DIR / "train-images-idx3-ubyte.gz").shape == (60_000, 28, 28)
    splits = {split: load_dataset("fashion_mnist", split) for split in ("train", "validation", "test")}
    assert {split: len(data) for split, data in splits.items()} == {"train": 55_000, "validation": 5_000,
                                                                   "test": 10_000}
    # 6,000 training and 1,000 test images of each class; the held-out twelfth is exactly balanced
    assert splits["test"].class_counts().tolist() == [1000] * 10
    assert splits["validation"].class_counts().tolist() == [500] * 10
    assert splits["train"].class_counts().tolist() == [5500] * 10
    for data in splits.values():
        assert data.features.shape[1] == 784
        assert data.features.min() == 0.0 and data.features.max() == 1.0
    small = fashion_mnist("test", size=14)
    assert small.features.shape == (10_000, 196)
    np.testing.assert_allclose(small.features.mean(), splits["test"].features.mean(), rtol=1e-12)


@pytest.mark.parametrize(("n_train", "n_test", "split", "message"), [
    (11, 30, "validation", r"train-images-idx3-ubyte.gz: holds 11 images; at least 12 are needed \(a twelfth"),
    (120, 0, "test", r"t10k-images-idx3-ubyte.gz: holds 0 images; at least 1 are needed"),
])
def test_too_few_images_are_a_clear_error(tmp_path, monkeypatch, n_train, n_test, split, message):
    write_mnist_files(tmp_path, np.random.default_rng(2), n_train=n_train, n_test=n_test)
    with pytest.raises(DatasetFileError, match=message):
        fashion_mnist(split, directory=tmp_path)


def test_a_flipped_byte_in_gzip_data_is_reported_as_corrupt_gzip(tmp_path):
    # labels compress well: damage in their stream can decompress to more bytes than the header declares
    labels = np.random.default_rng(3).integers(0, 10, 10_000).astype(np.uint8)
    good = gzip.compress(idx_bytes(labels))
    messages = set()
    for position in range(40, len(good) - 8, 37):  # inside the deflate stream
        damaged = bytearray(good)
        damaged[position] ^= 0x40
        (tmp_path / "x.gz").write_bytes(bytes(damaged))
        with pytest.raises(DatasetFileError) as info:
            read_idx(tmp_path / "x.gz")
        messages.add(str(info.value).split(": ", 1)[1][:18])
    assert messages == {"corrupt gzip data:"}, messages  # (not "trailing data" or "truncated")


def test_a_directory_that_cannot_be_looked_into_is_named_as_such(tmp_path):
    """(a name too long for the system ended in "loading 'train' failed: OSError", as if the
    loader were broken)"""
    too_long = tmp_path / ("a" * 5000)
    with pytest.raises(DatasetFileError,
                       match=r"MNIST: cannot look into .*aaaa \(given by the directory option\)") as caught:
        mnist("train", directory=too_long)
    assert not isinstance(caught.value, FileNotFoundError)  # (a sweep takes missing files as data kept elsewhere)


def test_a_directory_with_a_stray_space_is_shown_with_it(monkeypatch, tmp_path):
    monkeypatch.setenv("DELGRAD_FASHION_MNIST_DIR", f" {tmp_path}")
    with pytest.raises(DatasetFilesNotFoundError,
                       match=f"in ' {tmp_path}' \\(from \\$DELGRAD_FASHION_MNIST_DIR; no such"):
        fashion_mnist("train")


def test_a_bad_option_of_a_core_loader_stays_a_value_error_naming_it():
    """(not a PluginError: the core's loaders refuse their own options)"""
    with pytest.raises(dg.InvalidValueError, match="size: expected None or an integer side") as info:
        load_dataset("fashion_mnist", "train", size=0)
    assert not isinstance(info.value, dg.PluginError) and not isinstance(info.value, dg.FileFormatError)


def test_unknown_options_of_a_loader_are_named_with_the_allowed_ones():
    with pytest.raises(dg.InvalidValueError, match=r"dataset 'yin_yang': unknown option\(s\) foo; allowed: \(none\)"):
        load_dataset("yin_yang", "train", foo=1)
    with pytest.raises(dg.InvalidValueError, match=r"unknown option\(s\) zoom; allowed: directory, size"):
        load_dataset("fashion_mnist", "train", zoom=2)
    from delgrad_core.training import TrainingConfig

    with pytest.raises(dg.InvalidValueError, match=r"dataset_options: dataset 'fashion_mnist': unknown option\(s\) "
                                                   r"split; allowed: directory, size"):
        TrainingConfig(dataset="fashion_mnist", dataset_options={"split": "test"})  # (load_dataset's own)


def test_training_and_evaluation_take_dataset_options_from_the_command_line(mnist_dir, tmp_path, monkeypatch):
    """`--dataset-option size=7` trains on 7 x 7 images (49 inputs), is recorded, and evaluate
    repeats the recorded test accuracy with the run's own options."""
    import json

    from delgrad_core.cli import main
    from delgrad_core.testing import cli_runner

    directory, _ = mnist_dir
    monkeypatch.setenv("DELGRAD_FASHION_MNIST_DIR", str(directory))
    out = tmp_path / "run"
    args = ["train", "--dataset", "fashion_mnist", "--dataset-option", "size=7", "--hidden", "4", "--epochs", "1",
            "--batch-size", "55", "--delays", "none", "--out", str(out), "--no-progress"]
    result = cli_runner().invoke(main, args)
    assert result.exit_code == 0, result.output + str(result.exception)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["dataset_options"] == {"size": 7}
    assert dg.load_network(out / "network.npz").sizes[0] == 49
    evaluated = cli_runner().invoke(main, ["evaluate", str(out), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output)["accuracy"] == metrics["test_accuracy"]
    resumed = cli_runner().invoke(main, ["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output  # (with the run's own dataset options)
    assert json.loads((out / "metrics.json").read_text())["config"]["dataset_options"] == {"size": 7}
    changed = cli_runner().invoke(main, ["train", "--out", str(out), "--resume", "--epochs", "3", "--dataset-option",
                                         "size=8"])
    assert changed.exit_code != 0 and "dataset_options" in changed.output
    copied = tmp_path / "copy.npz"
    copied.write_bytes((out / "network.npz").read_bytes())
    (tmp_path / "images.toml").write_text('dataset = "fashion_mnist"\ndataset_options = {size = 7}\n')
    for extra in ([], ["--dataset", "fashion_mnist"]):  # (naming the file's own dataset dropped its options)
        alone = cli_runner().invoke(main, ["evaluate", str(copied), "--config", str(tmp_path / "images.toml"),
                                           "--json", *extra])
        assert alone.exit_code == 0, alone.output
        assert json.loads(alone.stdout)["accuracy"] == json.loads((out / "metrics.json").read_text())["test_accuracy"]
    other = cli_runner().invoke(main, ["evaluate", str(out), "--dataset-option", "size=8"])
    assert other.exit_code == 1 and "has 49 inputs but the encoded dataset has 64" in other.output
    bad = cli_runner().invoke(main, args[:3] + ["--dataset-option", "zoom=2", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "dataset_options: dataset 'fashion_mnist': unknown option(s) zoom; allowed: " \
                                  "directory, size" in bad.output
    assert not (tmp_path / "bad").exists()
    # an option value the loader refuses is a usage error too (it was status 1, like a data error) ...
    for value, message in (("0", "size: expected None or an integer side in pixels from 1 to 28, got 0"),
                           ('"7"', "size: expected None or an integer side in pixels from 1 to 28, got '7'")):
        refused = cli_runner().invoke(main, args[:3] + ["--dataset-option", f"size={value}", "--out",
                                                        str(tmp_path / "bad")])
        assert refused.exit_code == 2 and "Error: dataset_options: dataset 'fashion_mnist' (loading 'train'): " \
            + message in refused.output, refused.output
        assert not (tmp_path / "bad").exists()
        refused = cli_runner().invoke(main, ["evaluate", str(out), "--dataset-option", f"size={value}"])
        assert refused.exit_code == 2 and message in refused.output, refused.output
        # from a --config file, the file is named (as for a backend option), unless the command line gave it too
        (tmp_path / "bad.toml").write_text(f"dataset_options = {{size = {value}}}\n")
        for extra, named in (([], f"{tmp_path / 'bad.toml'}: "), (["--dataset-option", f"size={value}"], "")):
            refused = cli_runner().invoke(main, args[:3] + ["--config", str(tmp_path / "bad.toml"), *extra, "--out",
                                                            str(tmp_path / "bad")])
            assert refused.exit_code == 2 and f"Error: {named}dataset_options: dataset 'fashion_mnist' (loading " \
                f"'train'): {message}" in refused.output, refused.output
    # ... and a malformed file stays a data error (status 1), options or not
    (directory / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05")
    broken = cli_runner().invoke(main, ["evaluate", str(out)])
    assert broken.exit_code == 1 and "t10k-labels-idx1-ubyte: truncated IDX file" in broken.output, broken.output


def test_a_dataset_option_of_the_config_file_the_loader_refuses_names_the_file_beside_options_given_here(
        mnist_dir, tmp_path):
    """In an option table both the file and the command line gave, the option the loader's error is
    about decides: the file is named unless the command line gave that option (`with_its_file`;
    a dataset's error reads "dataset 'x' (loading 'train'): OPTION: ...")."""
    from delgrad_core.cli import main
    from delgrad_core.testing import cli_runner

    directory, _ = mnist_dir
    config = tmp_path / "bad.toml"
    config.write_text('dataset = "fashion_mnist"\ndataset_options = {size = 0}\n')
    result = cli_runner().invoke(main, ["train", "--config", str(config), "--dataset-option", f"directory={directory}",
                                        "--hidden", "3", "--epochs", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and f"Error: {config}: dataset_options: dataset 'fashion_mnist' (loading 'train'): " \
        "size: expected None or an integer side in pixels from 1 to 28, got 0" in result.output, result.output
    assert not (tmp_path / "run").exists()


def _trained_in_with_a_relative_directory(tmp_path, monkeypatch) -> None:
    """A one-epoch run `tmp_path/run` on Fashion-MNIST files in `tmp_path/data`, trained from
    `tmp_path` (the current folder afterwards) with `--dataset-option directory=data`."""
    from delgrad_core.cli import main
    from delgrad_core.testing import cli_runner

    monkeypatch.delenv("DELGRAD_FASHION_MNIST_DIR", raising=False)
    (tmp_path / "data").mkdir()
    write_mnist_files(tmp_path / "data", np.random.default_rng(5))
    monkeypatch.chdir(tmp_path)
    result = cli_runner().invoke(main, ["train", "--dataset", "fashion_mnist", "--dataset-option", "directory=data",
                                        "--dataset-option", "size=4", "--hidden", "3", "--epochs", "1", "--delays",
                                        "none", "--out", "run", "--no-progress"])
    assert result.exit_code == 0, result.output


def test_a_run_records_path_options_as_absolute_paths(tmp_path, monkeypatch):
    """(a relative path recorded as given broke evaluate and resume from another directory)"""
    import json

    from delgrad_core.cli import main
    from delgrad_core.testing import cli_runner

    _trained_in_with_a_relative_directory(tmp_path, monkeypatch)
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert recorded["config"]["dataset_options"] == {"directory": str(tmp_path / "data"), "size": 4}
    monkeypatch.chdir(tmp_path / "data")
    evaluated = cli_runner().invoke(main, ["evaluate", str(tmp_path / "run"), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["accuracy"] == recorded["test_accuracy"]


def test_a_relative_path_given_to_evaluate_is_the_runs_own_folder_when_it_names_it(tmp_path, monkeypatch):
    """Relative paths of options given on the command line are made absolute (docs/training.md), for
    evaluate too: `--dataset-option directory=data` naming the run's own folder keeps the run's own
    dataset settings, and so the comparison with the recorded test accuracy."""
    import json

    from delgrad_core.cli import main
    from delgrad_core.testing import cli_runner

    _trained_in_with_a_relative_directory(tmp_path, monkeypatch)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({**metrics, "test_accuracy": 0.125}))
    evaluated = cli_runner().invoke(main, ["evaluate", "run", "--dataset-option", "directory=data"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "note: the run recorded a test accuracy of 12.50 %" in evaluated.stderr, evaluated.stderr


def test_evaluate_with_other_dataset_options_does_not_compare_the_runs_data_digest(tmp_path, monkeypatch):
    """The run's recorded digest of a split is compared only with the run's own dataset settings
    (docs/training.md: "`delgrad evaluate` of the run with its own dataset settings warns"):
    other images of the same files are no changed files."""
    from delgrad_core.cli import main
    from delgrad_core.testing import cli_runner

    monkeypatch.delenv("DELGRAD_FASHION_MNIST_DIR", raising=False)
    write_mnist_files(tmp_path, np.random.default_rng(5))
    result = cli_runner().invoke(main, ["train", "--dataset", "fashion_mnist", "--dataset-option",
                                        f"directory={tmp_path}", "--dataset-option", "size=4", "--hidden", "3",
                                        "--epochs", "1", "--delays", "none", "--out", str(tmp_path / "run"),
                                        "--no-progress"])
    assert result.exit_code == 0, result.output
    other = cli_runner().invoke(main, ["evaluate", str(tmp_path / "run"), "--dataset-option", "size=5"])
    assert other.exit_code == 1 and "has 16 inputs but the encoded dataset has 25" in other.output, other.output
    assert "differs from the one" not in other.output, other.output


def test_the_command_line_shows_the_ways_to_get_missing_files_a_line_each(tmp_path, monkeypatch):
    from delgrad_core.cli import main
    from delgrad_core.testing import cli_runner

    monkeypatch.delenv("DELGRAD_FASHION_MNIST_DIR", raising=False)
    result = cli_runner().invoke(main, ["train", "--dataset", "fashion_mnist", "--epochs", "1", "--out",
                                        str(tmp_path / "run"), "--dataset-option", f"directory={tmp_path}"])
    lines = result.output.splitlines()
    assert result.exit_code == 1 and any(line.startswith("- on Debian: apt-get install") for line in lines) and \
        any(line.startswith("- download train-images-idx3-ubyte.gz") for line in lines), result.output


def test_train_with_missing_dataset_files_says_how_to_get_them_and_nothing_else(tmp_path, monkeypatch):
    """(the message ended '...; no epoch was saved: run the same command again once the cause is
    removed', as for a full disk: the files' error is a FileNotFoundError too)"""
    from delgrad_core.cli import main
    from delgrad_core.testing import cli_runner

    monkeypatch.setenv("DELGRAD_MNIST_DIR", str(tmp_path))
    result = cli_runner().invoke(main, ["train", "--dataset", "mnist", "--epochs", "1", "--no-progress", "--out",
                                        str(tmp_path / "run")])
    assert result.exit_code == 1 and "missing train-images-idx3-ubyte" in result.output
    assert "no epoch was saved" not in result.output and "Traceback" not in result.output
