"""save_network / load_network: bit-identical round trips, no pickle, clear errors."""

import io
import json
import pickle
import re

import numpy as np
import pytest
from _network_checks import assert_same_network

import delgrad_core as dg
from delgrad_core._serialization import MAX_POPULATION_SIZE, network_arrays

KINDS = ["none", "axonal", "dendritic", "synaptic"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per-neuron"])
def test_round_trip_is_bit_identical(tmp_path, helpers, kind, per_neuron):
    network = helpers.build_network([4, 7, 5, 3], kind, 1.7, seed=3, per_neuron=per_neuron)
    # awkward values: negative zero, subnormal, many significant digits
    network.layers[0].projection.weights[0, :3] = [-0.0, 5e-324, np.nextafter(1.0, 2.0)]
    path = dg.save_network(network, tmp_path / "net.npz")
    loaded = dg.load_network(path)
    assert_same_network(loaded, network)
    x = np.random.default_rng(0).uniform(0.1, 2.0, size=(6, 4))
    for a, b in zip(dg.forward(loaded, x), dg.forward(network, x)):
        np.testing.assert_array_equal(a, b)


def test_neuron_parameters_are_stored_as_float64_and_scalars_load_as_floats(tmp_path):
    """(the file holds one float64 array per parameter, integer per-neuron values included; a value
    given once for all neurons loads as the float it was, not a 0-d array)"""
    network = dg.Network.feedforward([3, 2], seed=0)
    network.layers[0].population.neuron = dg.NeuronParameters(threshold=np.array([1, 2]), tau_m=2.0, tau_s=1.0)
    with np.load(dg.save_network(network, tmp_path / "net.npz")) as arrays:
        assert {arrays[name].dtype for name in arrays.files if name != "network.json"} == {np.dtype(np.float64)}
    neuron = dg.load_network(tmp_path / "net.npz").layers[0].population.neuron
    assert type(neuron.tau_m) is float and type(neuron.tau_s) is float and neuron.threshold.tolist() == [1.0, 2.0]

def test_saving_twice_gives_the_same_arrays(tmp_path):
    network = dg.Network.feedforward([4, 6, 3], delay_kind="synaptic", delay_value=0.25, seed=1)
    first = dg.load_network(dg.save_network(network, tmp_path / "a.npz"))
    second = dg.load_network(dg.save_network(first, tmp_path / "b.npz"))
    assert_same_network(second, network)


def test_file_contains_no_pickle(tmp_path):
    network = dg.Network.feedforward([3, 4, 2], delay_kind="axonal")
    path = dg.save_network(network, tmp_path / "net.npz")
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    assert all(array.dtype != object for array in arrays.values())
    meta = json.loads(str(arrays["network.json"]))
    assert meta["format"] == "delgrad-network"
    assert [layer["delay_kind"] for layer in meta["layers"]] == ["axonal", "axonal"]


@pytest.mark.parametrize("target", [b"/tmp/net.npz", 5, None, __import__("io").StringIO()])
def test_save_refuses_what_is_neither_a_path_nor_a_file_object(target):
    with pytest.raises(dg.InvalidValueError, match=f"target: expected a file path or a writable binary file object "
                                                   f"for the network, got {type(target).__name__}"):
        dg.save_network(dg.Network.feedforward([2, 2]), target)


def test_save_refuses_a_closed_or_read_only_file_object_naming_why(tmp_path):
    """(io.UnsupportedOperation: write, or "I/O operation on closed file", from inside the writer)"""
    network = dg.Network.feedforward([2, 2])
    dg.save_network(network, tmp_path / "net.npz")
    closed = io.BytesIO()
    closed.close()
    with open(tmp_path / "net.npz", "rb") as reading:
        for target, why in ((reading, "BufferedReader (open for reading only)"), (closed, "BytesIO (closed)")):
            with pytest.raises(dg.InvalidValueError, match=re.escape(f"binary file object for the network, got {why}")):
                dg.save_network(network, target)


def test_save_creates_parent_directories(tmp_path):
    path = dg.save_network(dg.Network.feedforward([2, 2]), tmp_path / "deep" / "er" / "net.npz")
    assert path.exists()


def test_non_delgrad_npz_gives_a_clear_error(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"not a delgrad network file \(no 'network.json' entry\)"):
        dg.load_network(path)


def test_a_folder_is_named_as_a_folder(tmp_path):
    """(it was "not an npz archive: [Errno 21] Is a directory: 3", the 3 a file descriptor)"""
    with pytest.raises(dg.FileFormatError, match=rf"^{tmp_path}: a folder, not a delgrad network file$"):
        dg.load_network(tmp_path)
    with pytest.raises(dg.FileFormatError, match=rf"^{tmp_path}: a folder, not a delgrad calibration$"):
        dg.Calibration.load(tmp_path)


def test_unsupported_format_version_is_named(tmp_path):
    path = tmp_path / "future.npz"
    np.savez(path, **{"network.json": np.array(json.dumps({"format": "delgrad-network", "version": 99}))})
    with pytest.raises(ValueError, match=r"unsupported network format 'delgrad-network' version 99"):
        dg.load_network(path)


def _edited_file(tmp_path, edit):
    """The file of a 3-2 network whose description and arrays `edit(meta, arrays)` changed."""
    arrays = network_arrays(dg.Network.feedforward([3, 2], seed=0))
    meta = json.loads(arrays["network.json"][()])
    edit(meta, arrays)
    arrays["network.json"] = np.array(json.dumps(meta))
    path = tmp_path / "edited.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(("edit", "message"), [
    (lambda meta, arrays: meta["input"].update(size=0), r"input.size: expected an integer in \[1, 4194304\], got 0"),
    # (the largest size allowed passes its own check: what is wrong is the weights' shape)
    (lambda meta, arrays: meta["input"].update(size=MAX_POPULATION_SIZE),
     r"layers.0.weights: shape \(3, 2\) does not match the description \(expected \(4194304, 2\)"),
    (lambda meta, arrays: arrays.update({"layers.0.extra": np.ones(1)}),
     "entries not described by network.json: layers.0.extra"),
    # (named once, as read: not wrapped in "invalid network: <file>: ..."; an empty name was taken)
    (lambda meta, arrays: meta["layers"][0].update(projection=""),
     r"^{path}: layers.0.projection: expected a non-empty string, got ''$"),
    # (a JSON true is no size; another format of version 1 is not ours; a description of no layers, an input
    # or layer that is no object, and an empty input name are named as such, not as an invalid network)
    (lambda meta, arrays: meta["layers"][0].update(size=True),
     r"^{path}: layers\[0\].size: expected an integer in \[1, 4194304\], got True$"),
    (lambda meta, arrays: meta.update(format="delgrad-dataset"),
     r"unsupported network format 'delgrad-dataset' version 1 \(this delgrad reads version 1\)$"),
    (lambda meta, arrays: meta.update(layers=[]),
     r"network.json: needs an 'input' object and a non-empty 'layers' list$"),
    (lambda meta, arrays: meta.update(input=3),
     r"network.json: needs an 'input' object and a non-empty 'layers' list$"),
    (lambda meta, arrays: meta.update(layers=[3]), r"^{path}: layers\[0\]: expected an object$"),
    (lambda meta, arrays: meta["input"].update(name=""), r"^{path}: input.name: expected a non-empty string, got ''$"),
    # (a per-neuron parameter of as many values as the layer has inputs, not neurons)
    (lambda meta, arrays: arrays.update({"layers.0.neuron.threshold": np.ones(3)}),
     r"^{path}: layers.0.neuron.threshold: shape \(3,\) does not fit population size 2$"),
], ids=["size-0", "largest-size", "surplus-entry", "empty-name", "size-true", "other-format", "no-layers",
        "input-no-object", "layer-no-object", "empty-input-name", "neuron-values-per-input"])
def test_a_description_that_disagrees_with_the_rules_is_named(tmp_path, edit, message):
    path = _edited_file(tmp_path, edit)
    with pytest.raises(dg.FileFormatError, match=message.replace("{path}", re.escape(str(path)))):
        dg.load_network(path)


def test_a_snapshot_read_from_an_archive_cannot_be_changed_in_place(tmp_path):
    """`read_only` (how a request's network is read): its arrays are read-only and cannot be made writeable again;
    without it they are the caller's to change."""
    from delgrad_core._npz import NpzArchive
    from delgrad_core._serialization import network_from_archive

    path = tmp_path / "net.npz"
    dg.save_network(dg.Network.feedforward([3, 2], delay_kind="axonal", seed=0), path)
    with NpzArchive(path) as archive:
        snapshot, own = network_from_archive(archive, read_only=True), network_from_archive(archive)
    for array in (snapshot.layers[0].projection.weights, snapshot.layers[0].projection.delays):
        with pytest.raises(ValueError):
            array.flags.writeable = True
    assert own.layers[0].projection.weights.flags.writeable


def test_json_with_an_integer_too_long_to_convert_is_a_file_format_error(tmp_path):
    """(Python refuses integers of more than 4300 digits with a plain ValueError)"""
    path = tmp_path / "huge.npz"
    np.savez(path, **{"network.json": np.array('{"format": "delgrad-network", "version": ' + "9" * 5000 + "}")})
    with pytest.raises(dg.FileFormatError, match=r"entry 'network.json' is not valid JSON \(Exceeds the limit"):
        dg.load_network(path)
    from delgrad_core._options import parse_key_values

    assert parse_key_values(["n=" + "9" * 5000]) == {"n": "9" * 5000}  # (kept as a string, as other non-JSON)
    assert parse_key_values(["host=a=b", "x=[1]"]) == {"host": "a=b", "x": [1]}  # (KEY ends at the first =)


UNPICKLED = []


def _record(tag):
    UNPICKLED.append(tag)


class _Payload:
    """Unpickling this calls _record: it would show that arbitrary code ran."""

    def __reduce__(self):
        return (_record, ("unpickled",))


def test_loading_never_unpickles(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"network.json": np.array([_Payload()], dtype=object)}, allow_pickle=True)
    with pytest.raises(ValueError, match="has dtype object, which delgrad never reads"):
        dg.load_network(path)
    assert UNPICKLED == []
    pickle.loads(pickle.dumps(_Payload()))  # control: the payload does run when unpickled
    assert UNPICKLED == ["unpickled"]
    UNPICKLED.clear()


def test_failed_save_leaves_the_old_file_intact(tmp_path):
    path = dg.save_network(dg.Network.feedforward([3, 2], seed=0), tmp_path / "net.npz")
    before = path.read_bytes()
    broken = dg.Network.feedforward([3, 2], seed=1)
    broken.layers[0].projection.weights[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"output\.projection\.weights: contains NaN or inf"):
        dg.save_network(broken, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["net.npz"]  # no temporary files left behind


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_archive_members_read_exactly_as_numpy_reads_them(version):
    """The header numpy writes is read without evaluating it; other headers (versions, orders,
    byte orders, a header numpy's writer would not make) through numpy's reader: same arrays."""
    import io
    import zipfile

    from delgrad_core._npz import NpzArchive

    arrays = {"c_order": np.arange(6.0).reshape(2, 3), "fortran": np.asfortranarray(np.arange(12).reshape(3, 4)),
              "empty": np.zeros((0, 4)), "scalar": np.array(True), "big_endian": np.arange(5, dtype=">i4"),
              "text": np.array('{"a": 1}'), "bytes": np.ones(3, dtype=np.uint8)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array, version=version)
        with archive.open("spaced.npy", "w") as member:  # a valid header in another layout
            header = "{ 'shape': (2,),'descr': '<f8', 'fortran_order': False }"
            header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
            member.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() +
                         np.array([1.5, 2.5]).tobytes())
    arrays["spaced"] = np.array([1.5, 2.5])
    for _ in range(2):  # (the second time, every header has been met before)
        with NpzArchive(buffer.getvalue()) as archive:
            for name, expected in arrays.items():
                array = archive.array(name)
                assert array.dtype == expected.dtype and array.shape == expected.shape, name
                np.testing.assert_array_equal(array, expected)
                assert array.flags.writeable


def test_archive_members_are_written_as_numpy_writes_them():
    """Every member is byte for byte what numpy's own writer makes of the (C-ordered) array,
    also when its header comes from the writer's cache; arrays that differ only in byte order,
    item size or shape get their own headers."""
    import io
    import zipfile

    from delgrad_core._npz import _npy_header, npz_bytes

    arrays = {"matrix": np.arange(6.0).reshape(2, 3), "fortran": np.asfortranarray(np.arange(12).reshape(3, 4)),
              "empty": np.zeros((0, 4)), "scalar": np.array(True), "text": np.array('{"a": 1}'),
              "bytes": np.ones(3, dtype=np.uint8), "deep": np.zeros((1,) * 12),
              "little": np.arange(5, dtype="<i4"), "big": np.arange(5, dtype=">i4"),
              "single": np.ones((2, 3), dtype=np.float32), "transposed": np.ones((3, 2)), "flat": np.ones(6)}
    _npy_header.cache_clear()
    for _ in range(2):
        with zipfile.ZipFile(io.BytesIO(npz_bytes(arrays))) as archive:
            for name, array in arrays.items():
                expected = io.BytesIO()
                np.lib.format.write_array(expected, np.array(array, order="C"), version=(1, 0))
                assert archive.read(f"{name}.npy") == expected.getvalue(), name
    assert _npy_header.cache_info().hits >= len(arrays)


def test_a_negative_length_in_a_header_is_refused():
    import io
    import zipfile

    from delgrad_core import FileFormatError
    from delgrad_core._npz import NpzArchive

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        header = "{'descr': '<f8', 'fortran_order': False, 'shape': (-1, -1), }"
        header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
        archive.writestr("weights.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
                         + np.ones(1).tobytes())
    with NpzArchive(buffer.getvalue()) as archive, pytest.raises(FileFormatError, match="negative"):
        archive.array("weights")


def test_a_header_numpy_cannot_read_is_named_without_the_parsers_objects():
    """(a shape holding a call was "malformed node or string on line 1: <ast.Call object at 0x7f...>")"""
    import io
    import zipfile

    from delgrad_core import FileFormatError
    from delgrad_core._npz import NpzArchive

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        header = "{'descr': '<f8', 'fortran_order': False, 'shape': (__import__('os').getpid(), 4), }"
        header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
        archive.writestr("weights.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
    with NpzArchive(buffer.getvalue()) as archive, pytest.raises(FileFormatError) as info:
        archive.array("weights")
    assert "entry 'weights' has a corrupt header (not a .npy header numpy reads: \"{'descr': '<f8', " \
           "'fortran_order': False, 'shape': (__import__('os').getpid(), 4)\" ...)" in str(info.value), str(info.value)
    assert " object at 0x" not in str(info.value)


def test_save_names_a_file_in_the_way_of_its_folders(tmp_path):
    """(a file or a link to nothing where a folder of the path should be gave FileExistsError
    "[Errno 17] File exists", a traceback from Python)"""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    network = dg.Network.feedforward([2, 2], seed=0)
    for folder, what in (("afile", "a file"), ("afile/deeper", "a file"), ("dangling", "a link to nothing")):
        first = folder.split("/")[0]
        with pytest.raises(dg.InvalidValueError, match=rf"{first} is not a folder but {what}; choose a path whose "):
            dg.save_network(network, tmp_path / folder / "net.npz")
    assert (tmp_path / "afile").read_text() == "x" and not (tmp_path / "nowhere").exists()
    dg.save_network(network, tmp_path / "new" / "deeper" / "net.npz")  # (missing folders are made)


def test_a_large_file_that_is_no_archive_is_refused_without_reading_it(tmp_path):
    """(it was read whole, and copied once more, before anything looked at it: a 8 GB file of
    zeros in the bss2 calibration cache took 16.8 GB of memory)"""
    import tracemalloc

    junk = tmp_path / "junk.npz"
    with open(junk, "wb") as handle:
        handle.truncate(400 * 2**20)  # (sparse: 400 MB of zeros on no disk)
    tracemalloc.start()
    try:
        with pytest.raises(dg.FileFormatError, match="not a readable delgrad network file \\(not an npz archive: "
                                                     "File is not a zip file\\)"):
            dg.load_network(junk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MB allocated at the peak"


def _archive_declaring(shape, dtype="<f8", data=b""):
    """An uncompressed npz archive of one member "a" whose .npy header declares `shape` (and
    holds `data` after the header)."""
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("a.npy", header.getvalue() + data)
    return buffer.getvalue()


def test_an_array_of_1_gib_of_float64_is_within_the_limit_and_one_element_more_is_not():
    """The reader's limit is an array of 1 GiB of float64 (2**30 / 8 = 2**27 elements): a header
    declaring exactly that many passes the size limit (and is then refused for its missing data),
    one declaring one element more is refused by the limit, before anything is allocated."""
    from delgrad_core._npz import NpzArchive

    with NpzArchive(_archive_declaring((2**27,))) as archive:
        with pytest.raises(dg.FileFormatError, match="is truncated or padded: shape \\(134217728,\\)"):
            archive.header("a")
    with NpzArchive(_archive_declaring((2**27 + 1,))) as archive:
        with pytest.raises(dg.FileFormatError, match="declares shape \\(134217729,\\) \\(134217729 elements; at most "
                                                     "134217728 are read\\)"):
            archive.header("a")


def test_archives_list_their_members_sorted_so_equal_content_gives_equal_bytes():
    """delgrad_core/_npz.py: "Writing is deterministic (sorted members, fixed timestamps, no
    compression), so equal content gives equal bytes": the order the arrays come in does not matter."""
    import zipfile

    from delgrad_core._npz import npz_bytes

    arrays = {"b": np.arange(3.0), "a": np.array([True, False]), "c.d": np.zeros((2, 2), np.int32)}
    forward, backward = npz_bytes(arrays), npz_bytes(dict(reversed(list(arrays.items()))))
    assert forward == backward
    with zipfile.ZipFile(io.BytesIO(forward)) as archive:
        assert archive.namelist() == ["a.npy", "b.npy", "c.d.npy"]
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}


def test_an_npy_header_of_numpys_largest_size_is_read():
    """numpy reads .npy headers of up to 10,000 bytes (`max_header_size`, by default 10000) and so
    does delgrad's reader; one byte more is refused."""
    import struct
    import zipfile

    from delgrad_core._npz import NpzArchive

    def archive(header_length):
        text = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }"
        text += " " * (header_length - len(text) - 1) + "\n"
        member = b"\x93NUMPY\x01\x00" + struct.pack("<H", header_length) + text.encode("latin1")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zipped:
            zipped.writestr("a.npy", member + np.array([1.5, -2.0]).tobytes())
        return buffer.getvalue()

    np.testing.assert_array_equal(np.load(io.BytesIO(archive(10_000)))["a"], [1.5, -2.0])  # (numpy's own bound)
    with NpzArchive(archive(10_000)) as stored:
        np.testing.assert_array_equal(stored.array("a"), [1.5, -2.0])
    with NpzArchive(archive(10_001)) as stored, pytest.raises(dg.FileFormatError, match="header of 10001 bytes"):
        stored.array("a")


def test_a_member_holding_more_bytes_than_its_header_declares_is_refused():
    """delgrad_core/_npz.py: every member's header is "checked against the member's stored length":
    data after the declared array is refused, as is data missing from it."""
    from delgrad_core._npz import NpzArchive

    values = np.array([1.5, -2.0]).tobytes()
    with NpzArchive(_archive_declaring((2,), data=values)) as archive:
        np.testing.assert_array_equal(archive.array("a"), [1.5, -2.0])
    for data, holds in ((values + b"\0" * 8, 24), (values[:8], 8)):
        with NpzArchive(_archive_declaring((2,), data=data)) as archive:
            with pytest.raises(dg.FileFormatError, match=f"entry 'a' is truncated or padded: shape \\(2,\\) of float64 "
                                                         f"needs 16 data bytes, the entry holds {holds}"):
                archive.array("a")


def test_a_member_whose_bytes_do_not_match_its_crc_is_refused():
    """delgrad_core/_npz.py reads uncompressed archives from memory, "CRC-checked": one flipped
    bit in an array's data is a FileFormatError, not other numbers (the zip format's CRC-32 of
    each member, as zipfile checks it)."""
    import zipfile
    import zlib

    from delgrad_core._npz import NpzArchive, npz_bytes

    data = bytearray(npz_bytes({"a": np.array([1.5, -2.0])}))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("a.npy")
        assert info.CRC == zlib.crc32(archive.read("a.npy"))
    data[data.rindex(np.array([-2.0]).tobytes())] ^= 0x01  # (the last value's lowest byte)
    with pytest.raises(zipfile.BadZipFile, match="Bad CRC-32"):
        zipfile.ZipFile(io.BytesIO(bytes(data))).read("a.npy")
    with pytest.raises(dg.FileFormatError, match="bad CRC-32 for entry 'a.npy'"):
        NpzArchive(bytes(data))


def test_a_member_of_another_dtype_kind_than_asked_is_refused_naming_both():
    """`NpzArchive.array(name, kind=...)` checks the member's dtype kind before loading it: a JSON
    document stored as a number, or numbers stored as text, are refused naming the entry, its dtype
    and the kind expected."""
    from delgrad_core._npz import NpzArchive, npz_bytes

    data = npz_bytes({"document": np.array(1.5), "times": np.array(["0.5", "1.0"])})
    with NpzArchive(data) as archive:
        with pytest.raises(dg.FileFormatError, match="entry 'document' has dtype float64, expected kind 'U'"):
            archive.json("document")
        with pytest.raises(dg.FileFormatError, match="entry 'times' has dtype <U3, expected kind 'f'"):
            archive.array("times", kind="f")
        assert archive.array("times", kind="U").tolist() == ["0.5", "1.0"]


def test_a_member_marked_encrypted_is_refused_as_zipfile_refuses_it():
    """delgrad_core/_npz.py reads from memory only archives without "encryption"; any other goes to
    zipfile: a member whose flags say encrypted (bit 0) is refused, not read as plain numbers."""
    import zipfile

    from delgrad_core._npz import NpzArchive, npz_bytes

    data = bytearray(npz_bytes({"a": np.array([1.5, -2.0])}))
    data[data.index(b"PK\x03\x04") + 6] |= 1  # (the flags of the local header, then of the central one)
    data[data.index(b"PK\x01\x02") + 8] |= 1
    with pytest.raises(RuntimeError, match="encrypted"):
        zipfile.ZipFile(io.BytesIO(bytes(data))).read("a.npy")
    with NpzArchive(bytes(data)) as archive, pytest.raises(dg.FileFormatError, match="'a.npy' is encrypted"):
        archive.array("a")


def test_the_digest_of_members_counts_their_names_as_well_as_their_bytes():
    """`NpzArchive.digest`: "SHA-256 (hex) of the names and stored bytes of the members under
    `prefix`": equal for equal content, another for the same bytes under another name."""
    from delgrad_core._npz import NpzArchive, npz_bytes

    def digest(arrays):
        with NpzArchive(npz_bytes(arrays)) as archive:
            return archive.digest("net.")

    values = np.array([1.5, -2.0])
    assert digest({"net.a": values, "other": values}) == digest({"net.a": values.copy()})
    assert digest({"net.a": values}) != digest({"net.b": values})
