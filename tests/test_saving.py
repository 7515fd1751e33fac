"""Saving and loading: the single-file format, its checks and ModelCheckpoint.

Hostile files are built by editing valid ones. Members are rewritten with
zipfile, and fields of a central directory record are patched at the offsets
of zipfile.structCentralDir ("<4s4B4HL2L5H2L"): flag bits at 8, compressed
size at 20, uncompressed size at 24 and name length at 28.
"""

import copy
import io
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import warnings
import zipfile
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import numpy as np
import pytest

import nnfast
from nnfast import _rng, layers, saving
from nnfast.callbacks import ModelCheckpoint
from nnfast.saving import FormatError
from nnfast.saving import format as file_format

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(nnfast.__file__).resolve().parent.parent

# The fuzz test stops after this many cases or this many seconds.
FUZZ_MAX_CASES = 3000
FUZZ_BUDGET_SECONDS = 3.0


# Helpers ---------------------------------------------------------------------


def make_model(seed=0, dropout_seed=None, compile=True):
    """Return a small classifier with dropout, compiled with Adam."""
    nnfast.utils.set_random_seed(seed)
    model = nnfast.Sequential([
        nnfast.Input(shape=(6,)),
        layers.Dense(8, activation="relu"),
        layers.Dropout(0.25, seed=dropout_seed),
        layers.Dense(3, activation="softmax"),
    ])
    if compile:
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    return model


def train_data():
    generator = np.random.default_rng(7)
    x = generator.normal(size=(60, 6)).astype("float32")
    y = generator.integers(0, 3, size=60)
    return x, y


def trained_model():
    model = make_model()
    x, y = train_data()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    return model


def assert_same_weights(expected, actual):
    expected_weights = expected.get_weights()
    actual_weights = actual.get_weights()
    assert len(expected_weights) == len(actual_weights)
    for want, got in zip(expected_weights, actual_weights):
        np.testing.assert_array_equal(got, want)


def read_members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def write_members(members, compression=zipfile.ZIP_STORED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, payload in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            archive.writestr(info, payload)
    return buffer.getvalue()


def edit_document(data, edit):
    """Return ``data`` with its JSON document passed through ``edit(document)``."""
    members = read_members(data)
    document = json.loads(members[0][1])
    edit(document)
    members[0] = (members[0][0], json.dumps(document).encode())
    return write_members(members)


def replace_member(data, name, payload):
    return write_members([(member, payload if member == name else content)
                          for member, content in read_members(data)])


def npy_bytes(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def npy_header_only(shape, descr="<f4"):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + b"\0" * 16


def patch_central_directory(data, name, offset, fmt, value):
    """Overwrite one field of ``name``'s central directory header in ``data``."""
    data = bytearray(data)
    start = 0
    while True:
        start = data.index(b"PK\x01\x02", start)
        name_length = struct.unpack_from("<H", data, start + 28)[0]
        if data[start + 46:start + 46 + name_length].decode() == name:
            struct.pack_into(fmt, data, start + offset, value)
            return bytes(data)
        start += 4


def tiny_model_bytes():
    nnfast.utils.set_random_seed(0)
    model = nnfast.Sequential([nnfast.Input(shape=(4,)),
                               layers.Dense(3, activation="relu"),
                               layers.Dropout(0.5, seed=1),
                               layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    model.fit(np.ones((4, 4), "float32"), np.zeros((4, 2)), epochs=1, verbose=0)
    return saving.model_to_bytes(model)


# Round trips -----------------------------------------------------------------


def test_load_model_predicts_bit_for_bit(tmp_path):
    model = trained_model()
    path = tmp_path / "model.nnf"
    model.save(path)
    loaded = nnfast.models.load_model(path)
    x, _ = train_data()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0),
                                  model.predict(x, verbose=0))
    assert_same_weights(model, loaded)
    assert loaded.name == model.name
    assert [layer.name for layer in loaded.layers] == [
        layer.name for layer in model.layers]


def test_load_model_restores_compile_and_optimizer(tmp_path):
    model = trained_model()
    path = tmp_path / "model.nnf"
    model.save(path)
    loaded = nnfast.models.load_model(path)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations == 8
    saved_state = model.optimizer.get_state()["slots"]
    loaded_state = loaded.optimizer.get_state()["slots"]
    assert sorted(loaded_state) == sorted(saved_state) == ["m", "v"]
    for name in saved_state:
        np.testing.assert_array_equal(loaded_state[name], saved_state[name])
    assert loaded.loss.get_config() == model.loss.get_config()
    x, y = train_data()
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


def test_keras_file_ending_accepted(tmp_path):
    model = trained_model()
    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert "nnfast.json" in archive.namelist()
    loaded = nnfast.models.load_model(str(path))
    assert_same_weights(model, loaded)


def test_saved_document_fields(tmp_path):
    model = trained_model()
    path = tmp_path / "model.nnf"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        document = json.loads(archive.read("nnfast.json"))
        infos = archive.infolist()
    assert document["format"] == "nnfast"
    assert document["format_version"] == saving.FORMAT_VERSION
    assert document["nnfast_version"] == nnfast.__version__
    assert document["kind"] == "model"
    assert document["architecture"]["class_name"] == "Sequential"
    assert document["training"] == {"step": 8}
    assert document["optimizer"]["iterations"] == 8
    assert document["compile"]["metrics"] == ["accuracy"]
    assert document["random_state"]["global"]["bit_generator"] == "PCG64"
    assert all(info.compress_type == zipfile.ZIP_STORED for info in infos)


def test_same_model_gives_same_bytes():
    model = trained_model()
    assert saving.model_to_bytes(model) == saving.model_to_bytes(model)


def test_uncompiled_model_round_trip(tmp_path):
    model = make_model(compile=False)
    path = tmp_path / "model.nnf"
    model.save(path)
    loaded = nnfast.models.load_model(path)
    assert loaded.optimizer is None
    assert_same_weights(model, loaded)


def test_load_model_compile_false(tmp_path):
    model = trained_model()
    path = tmp_path / "model.nnf"
    model.save(path)
    loaded = nnfast.models.load_model(path, compile=False)
    assert loaded.optimizer is None
    assert loaded.loss is None
    assert_same_weights(model, loaded)


def test_unbuilt_model_round_trip(tmp_path):
    model = nnfast.Sequential([layers.Dense(4), layers.Dense(2)])
    path = tmp_path / "model.nnf"
    model.save(path)
    loaded = nnfast.models.load_model(path)
    assert not loaded.built
    assert len(loaded.layers) == 2
    assert loaded.predict(np.ones((3, 5), "float32"), verbose=0).shape == (3, 2)


def test_float64_model_round_trip(tmp_path):
    nnfast.utils.set_random_seed(3)
    model = nnfast.Sequential([nnfast.Input(shape=(3,), dtype="float64"),
                               layers.Dense(2, dtype="float64")])
    path = tmp_path / "model.nnf"
    model.save(path)
    loaded = nnfast.models.load_model(path)
    assert loaded.dtype == "float64"
    assert_same_weights(model, loaded)


def test_overwrite_false_raises(tmp_path):
    model = make_model(compile=False)
    path = tmp_path / "model.nnf"
    model.save(path)
    with pytest.raises(FileExistsError, match="overwrite=False"):
        model.save(path, overwrite=False)


def test_save_leaves_no_temporary_files(tmp_path):
    model = trained_model()
    model.save(tmp_path / "model.nnf")
    model.save(tmp_path / "model.nnf")
    model.save_weights(tmp_path / "weights.nnf")
    assert sorted(os.listdir(tmp_path)) == ["model.nnf", "weights.nnf"]


def test_unserializable_config_raises():
    model = make_model()
    model.optimizer.learning_rate = lambda step: 0.01
    with pytest.raises(TypeError, match="JSON cannot store"):
        saving.model_to_bytes(model)


# Weights only ----------------------------------------------------------------


def test_save_weights_into_fresh_model(tmp_path):
    model = trained_model()
    path = tmp_path / "weights.nnf"
    model.save_weights(path)
    other = make_model(seed=1)
    other.load_weights(path)
    assert_same_weights(model, other)
    x, _ = train_data()
    np.testing.assert_array_equal(other.predict(x, verbose=0),
                                  model.predict(x, verbose=0))


def test_load_weights_builds_unbuilt_model(tmp_path):
    model = trained_model()
    path = tmp_path / "weights.nnf"
    model.save_weights(path)
    unbuilt = nnfast.Sequential([layers.Dense(8, activation="relu"),
                                 layers.Dropout(0.25),
                                 layers.Dense(3, activation="softmax")])
    unbuilt.load_weights(path)
    assert unbuilt.built
    assert_same_weights(model, unbuilt)


def test_load_weights_from_model_file(tmp_path):
    model = trained_model()
    path = tmp_path / "model.nnf"
    model.save(path)
    other = make_model(seed=5)
    other.load_weights(path)
    assert_same_weights(model, other)


def test_load_model_rejects_weights_file(tmp_path):
    path = tmp_path / "weights.nnf"
    trained_model().save_weights(path)
    with pytest.raises(FormatError, match="load_weights"):
        nnfast.models.load_model(path)


def test_load_weights_shape_mismatch_keeps_weights(tmp_path):
    path = tmp_path / "weights.nnf"
    trained_model().save_weights(path)
    other = nnfast.Sequential([nnfast.Input(shape=(6,)), layers.Dense(8),
                               layers.Dense(4)])
    before = other.get_weights()
    with pytest.raises(FormatError, match=r"shape \(8, 4\)"):
        other.load_weights(path)
    for want, got in zip(before, other.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_load_weights_corrupt_array_keeps_weights(tmp_path):
    data = saving.model_to_bytes(trained_model())
    members = read_members(data)
    last = [name for name, _ in members if name.startswith("weights/")][-1]
    payload = bytearray(dict(members)[last])
    payload[-1] ^= 0xFF
    path = tmp_path / "model.nnf"
    # Patch the data byte in place so that the stored CRC no longer matches.
    original = dict(members)[last]
    assert data.count(original) == 1
    path.write_bytes(data.replace(original, bytes(payload)))
    other = make_model(seed=9)
    before = other.get_weights()
    with pytest.raises(FormatError, match="CRC"):
        other.load_weights(path)
    for want, got in zip(before, other.get_weights()):
        np.testing.assert_array_equal(got, want)


# JSON ------------------------------------------------------------------------


def test_json_round_trip():
    model = make_model()
    text = model.to_json(indent=2)
    rebuilt = nnfast.models.model_from_json(text)
    assert rebuilt.optimizer is None
    assert rebuilt.get_config() == model.get_config()
    assert json.loads(text)["nnfast_version"] == nnfast.__version__


def test_model_from_json_rejects_bad_input():
    with pytest.raises(FormatError, match="not valid JSON"):
        nnfast.models.model_from_json("{not json")
    document = json.loads(make_model().to_json())
    document["config"]["layers"][1]["class_name"] = "Conv7D"
    with pytest.raises(FormatError, match="unknown layer class 'Conv7D'"):
        nnfast.models.model_from_json(json.dumps(document))


def test_model_from_json_rejects_huge_layer():
    document = json.loads(make_model().to_json())
    document["config"]["layers"][1]["config"]["units"] = 10**12
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="needs at least"):
            nnfast.models.model_from_json(json.dumps(document))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


# Pickle ----------------------------------------------------------------------


def test_pickle_round_trip():
    model = trained_model()
    state = _rng.get_state()
    clone = pickle.loads(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    assert _rng.get_state() == state
    x, _ = train_data()
    np.testing.assert_array_equal(clone.predict(x, verbose=0),
                                  model.predict(x, verbose=0))
    assert clone.optimizer.iterations == model.optimizer.iterations


def test_pickle_goes_through_format():
    found = []

    class RecordingUnpickler(pickle.Unpickler):
        def find_class(self, module, name):
            found.append((module, name))
            return super().find_class(module, name)

    payload = pickle.dumps(trained_model())
    RecordingUnpickler(io.BytesIO(payload)).load()
    assert found == [("nnfast.saving.api", "model_from_bytes")]


def test_multiprocessing_pickler_round_trip():
    # multiprocessing sends arguments with ForkingPickler and reads them with
    # pickle.loads.
    model = trained_model()
    payload = bytes(ForkingPickler.dumps(model))
    clone = pickle.loads(payload)
    assert_same_weights(model, clone)
    x, y = train_data()
    clone.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert clone.optimizer.iterations == model.optimizer.iterations + 4


def test_deepcopy_round_trip():
    model = trained_model()
    clone = copy.deepcopy(model)
    assert_same_weights(model, clone)
    assert clone._params is not model._params


# Resuming training -----------------------------------------------------------


@pytest.mark.parametrize("dropout_seed", [None, 5],
                         ids=["global-generator", "layer-generator"])
def test_resume_matches_uninterrupted(tmp_path, dropout_seed):
    x, y = train_data()
    straight = make_model(dropout_seed=dropout_seed)
    straight.fit(x, y, epochs=4, batch_size=16, verbose=0)

    first_half = make_model(dropout_seed=dropout_seed)
    first_half.fit(x, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "epoch2.nnf"
    first_half.save(path)
    del first_half
    # A new process would start from another generator state.
    nnfast.utils.set_random_seed(12345)

    resumed = nnfast.models.load_model(path)
    resumed.fit(x, y, epochs=4, initial_epoch=2, batch_size=16, verbose=0)
    assert_same_weights(straight, resumed)

    nnfast.utils.set_random_seed(12345)
    continued = nnfast.models.load_model(path)
    continued.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert_same_weights(straight, continued)


def test_resume_without_random_state_differs(tmp_path):
    x, y = train_data()
    straight = make_model()
    straight.fit(x, y, epochs=4, batch_size=16, verbose=0)
    first_half = make_model()
    first_half.fit(x, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "epoch2.nnf"
    first_half.save(path)
    nnfast.utils.set_random_seed(12345)
    resumed = saving.load_model(path, restore_random_state=False)
    resumed.fit(x, y, epochs=4, initial_epoch=2, batch_size=16, verbose=0)
    differs = [not np.array_equal(a, b)
               for a, b in zip(straight.get_weights(), resumed.get_weights())]
    assert any(differs)


def test_load_without_random_state_keeps_generator(tmp_path):
    path = tmp_path / "model.nnf"
    trained_model().save(path)
    nnfast.utils.set_random_seed(42)
    state = _rng.get_state()
    saving.load_model(path, restore_random_state=False)
    assert _rng.get_state() == state


def test_load_restores_generator_by_default(tmp_path):
    model = trained_model()
    saved_state = _rng.get_state()
    path = tmp_path / "model.nnf"
    model.save(path)
    nnfast.utils.set_random_seed(42)
    nnfast.models.load_model(path)
    assert _rng.get_state() == saved_state


# Registered and custom classes -----------------------------------------------


@saving.register_serializable(package="test_saving")
class Scale(layers.Layer):
    """Multiply the input by a constant factor (no weights)."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    def forward(self, x, training, cache):
        return x * x.dtype.type(self.factor)

    def backward(self, dy, cache, need_dx):
        return dy * dy.dtype.type(self.factor) if need_dx else None

    def get_config(self):
        config = super().get_config()
        config["factor"] = self.factor
        return config


class Shift(layers.Layer):
    """Add a constant to the input. This class is deliberately not registered."""

    def __init__(self, offset=1.0, **kwargs):
        super().__init__(**kwargs)
        self.offset = float(offset)

    def forward(self, x, training, cache):
        return x + x.dtype.type(self.offset)

    def backward(self, dy, cache, need_dx):
        return dy if need_dx else None

    def get_config(self):
        config = super().get_config()
        config["offset"] = self.offset
        return config


def test_registered_layer_round_trip(tmp_path):
    nnfast.utils.set_random_seed(0)
    model = nnfast.Sequential([nnfast.Input(shape=(3,)), layers.Dense(2),
                               Scale(3.0)])
    path = tmp_path / "model.nnf"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        document = json.loads(archive.read("nnfast.json"))
    entry = document["architecture"]["config"]["layers"][2]
    assert entry["registered_name"] == "test_saving>Scale"
    assert saving.get_registered_name(Scale) == "test_saving>Scale"
    assert saving.get_registered_object("test_saving>Scale") is Scale
    loaded = nnfast.models.load_model(path)
    assert type(loaded.layers[1]) is Scale
    x = np.ones((2, 3), "float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0),
                                  model.predict(x, verbose=0))


def test_unregistered_layer_needs_custom_objects(tmp_path):
    model = nnfast.Sequential([nnfast.Input(shape=(3,)), Shift(2.0)])
    path = tmp_path / "model.nnf"
    model.save(path)
    with pytest.raises(FormatError, match="unknown layer class 'Shift'") as info:
        nnfast.models.load_model(path)
    assert str(path) in str(info.value)
    loaded = nnfast.models.load_model(path, custom_objects={"Shift": Shift})
    assert type(loaded.layers[0]) is Shift


def test_custom_class_of_wrong_kind_rejected(tmp_path):
    model = nnfast.Sequential([nnfast.Input(shape=(3,)), Shift(2.0)])
    path = tmp_path / "model.nnf"
    model.save(path)
    with pytest.raises(FormatError, match="not a subclass of Layer"):
        nnfast.models.load_model(path, custom_objects={"Shift": nnfast.losses.Loss})


def test_register_serializable_checks():
    with pytest.raises(ValueError, match="package"):
        saving.register_serializable(package="a>b")
    with pytest.raises(TypeError, match="get_config"):
        saving.register_serializable(package="test_saving")(type("NoConfig", (), {}))

    @saving.register_serializable(package="test_saving", name="Taken")
    class First(layers.Layer):
        pass

    class Second(layers.Layer):
        pass

    with pytest.raises(ValueError, match="already registered"):
        saving.register_serializable(package="test_saving", name="Taken")(Second)


def test_unknown_class_never_imports(tmp_path):
    data = saving.model_to_bytes(make_model())

    def point_at_module(document):
        document["architecture"]["config"]["layers"][1]["class_name"] = (
            "nnfast_saving_probe.Layer")
        document["architecture"]["config"]["layers"][1]["registered_name"] = (
            "nnfast_saving_probe>Layer")

    with pytest.raises(FormatError, match="unknown layer class"):
        saving.model_from_bytes(edit_document(data, point_at_module))
    assert not any(name.startswith("nnfast_saving_probe") for name in sys.modules)


# Invalid files ---------------------------------------------------------------


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        nnfast.models.load_model(tmp_path / "absent.nnf")
    with pytest.raises(FileNotFoundError):
        make_model().load_weights(tmp_path / "absent.nnf")


def _not_zip(data):
    return b"this is a text file, not a model\n" * 4


def _empty(data):
    return b""


def _truncated(data):
    return data[:len(data) // 2]


def _truncated_by_one(data):
    return data[:-1]


def _missing_member(data):
    return write_members([(name, payload) for name, payload in read_members(data)
                          if name != "weights/1.npy"])


def _missing_document(data):
    return write_members([(name, payload) for name, payload in read_members(data)
                          if name != "nnfast.json"])


def _extra_member(data):
    return write_members(read_members(data) + [("payload.py", b"print('hi')\n")])


def _duplicate_member(data):
    members = read_members(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_members(members + [members[1]])


def _future_version(data):
    return edit_document(data, lambda document: document.update(format_version=2))


def _not_nnfast_document(data):
    return edit_document(data, lambda document: document.update(format="keras"))


def _unknown_class(data):
    def edit(document):
        document["architecture"]["config"]["layers"][1]["class_name"] = "EvilLayer"
    return edit_document(data, edit)


def _unknown_loss(data):
    def edit(document):
        document["compile"]["loss"]["class_name"] = "EvilLoss"
    return edit_document(data, edit)


def _architecture_shape_mismatch(data):
    def edit(document):
        document["architecture"]["config"]["layers"][1]["config"]["units"] = 7
    return edit_document(data, edit)


def _architecture_needs_more(data):
    def edit(document):
        document["architecture"]["config"]["layers"][1]["config"]["units"] = 10**9
    return edit_document(data, edit)


def _array_shape_mismatch(data):
    return replace_member(data, "weights/0.npy",
                          npy_bytes(np.zeros((6, 9), "float32")))


def _array_dtype_mismatch(data):
    return replace_member(data, "weights/0.npy",
                          npy_bytes(np.zeros((6, 8), "float64")))


def _architecture_dtype_mismatch(data):
    data = replace_member(data, "weights/1.npy", npy_bytes(np.zeros(8, "float64")))
    return edit_document(
        data, lambda document: document["weights"][1].update(dtype="float64"))


def _object_dtype(data):
    array = np.empty((6, 8), dtype=object)
    return replace_member(data, "weights/0.npy", npy_bytes(array, allow_pickle=True))


def _fortran_order(data):
    return replace_member(data, "weights/0.npy",
                          npy_bytes(np.asfortranarray(np.zeros((6, 8), "float32"))))


def _absurd_npy_shape(data):
    return replace_member(data, "weights/0.npy", npy_header_only((10**12, 10**12)))


def _absurd_declared_shape(data):
    data = replace_member(data, "weights/0.npy", npy_header_only((10**6, 10**6)))
    return edit_document(
        data, lambda document: document["weights"][0].update(shape=[10**6, 10**6]))


def _header_without_data(data):
    data = replace_member(data, "weights/0.npy", npy_header_only((6, 2**26)))
    return edit_document(
        data, lambda document: document["weights"][0].update(shape=[6, 2**26]))


def _compressed_member(data):
    # A deflated member of 16 MiB of zeros is a small decompression bomb.
    members = read_members(data)
    members.append(("weights/9.npy", b"\0" * 2**24))
    return write_members(members, compression=zipfile.ZIP_DEFLATED)


def _sizes_beyond_file(data):
    data = patch_central_directory(data, "weights/0.npy", 20, "<I", 2**30)
    return patch_central_directory(data, "weights/0.npy", 24, "<I", 2**30)


def _encrypted_member(data):
    return patch_central_directory(data, "weights/0.npy", 8, "<H", 0x1)


def _deep_json(data):
    return replace_member(data, "nnfast.json", b"[" * 100_000 + b"]" * 100_000)


def _document_not_object(data):
    return replace_member(data, "nnfast.json", b"[1, 2, 3]")


def _forged_generator_state(data):
    def edit(document):
        document["random_state"]["global"]["state"]["state"] = "0"
    return edit_document(data, edit)


def _slot_shape_mismatch(data):
    data = replace_member(data, "optimizer/0.npy", npy_bytes(np.zeros(5, "float32")))
    return edit_document(
        data, lambda document: document["optimizer"]["slots"][0].update(shape=[5]))


HOSTILE_FILES = [
    (_not_zip, "not a zip archive"),
    (_empty, "not a zip archive"),
    (_truncated, "not a zip archive, or truncated"),
    (_truncated_by_one, "not a zip archive, or truncated"),
    (_missing_member, "missing member 'weights/1.npy'"),
    (_missing_document, "missing member 'nnfast.json'"),
    (_extra_member, "unexpected member 'payload.py'"),
    (_duplicate_member, "appears twice"),
    (_future_version, "unsupported format version 2"),
    (_not_nnfast_document, "expected 'nnfast'"),
    (_unknown_class, "unknown layer class 'EvilLayer'"),
    (_unknown_loss, "unknown loss class 'EvilLoss'"),
    (_architecture_shape_mismatch, r"shape \(6, 7\), but the file stores shape"),
    (_architecture_needs_more, "needs at least"),
    (_array_shape_mismatch, r"has shape \(6, 9\), expected \(6, 8\)"),
    (_array_dtype_mismatch, "has dtype <f8, expected <f4"),
    (_architecture_dtype_mismatch, "has dtype float32, but the file stores float64"),
    (_object_dtype, "object dtype"),
    (_fortran_order, "Fortran order"),
    (_absurd_npy_shape, r"has shape \(1000000000000, 1000000000000\)"),
    (_absurd_declared_shape, "more than the limit"),
    (_header_without_data, "bytes of data, expected"),
    (_compressed_member, "is compressed"),
    (_sizes_beyond_file, "truncated or forged"),
    (_encrypted_member, "encrypted"),
    (_deep_json, "not valid JSON"),
    (_document_not_object, "must hold a JSON object"),
    (_forged_generator_state, "not a valid PCG64 state"),
    (_slot_shape_mismatch, "optimizer slot 'm' has shape"),
]


@pytest.mark.parametrize("forge,message", HOSTILE_FILES,
                         ids=[forge.__name__.strip("_") for forge, _ in HOSTILE_FILES])
def test_invalid_file_raises_format_error(tmp_path, forge, message):
    data = forge(saving.model_to_bytes(trained_model()))
    path = tmp_path / "hostile.nnf"
    path.write_bytes(data)
    state = _rng.get_state()
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=message) as info:
            nnfast.models.load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert info.value.reason in str(info.value)
    # A rejected file must not allocate more than a few times its own size.
    assert peak < 8 * 2**20 + 4 * len(data)
    assert _rng.get_state() == state


def test_array_over_limit_rejected(tmp_path, monkeypatch):
    path = tmp_path / "model.nnf"
    trained_model().save(path)
    monkeypatch.setattr(file_format, "MAX_ARRAY_BYTES", 64)
    with pytest.raises(FormatError, match="more than the limit of"):
        nnfast.models.load_model(path)
    with pytest.raises(ValueError, match="format's limit"):
        trained_model().save(tmp_path / "other.nnf")


def test_format_error_type_and_pickle():
    error = FormatError("file 'x.nnf'", "missing member 'nnfast.json'")
    assert isinstance(error, ValueError)
    clone = pickle.loads(pickle.dumps(error))
    assert str(clone) == str(error)
    assert clone.reason == error.reason


# Fuzzing ---------------------------------------------------------------------


def _random_json_value(generator):
    values = [None, True, -1, 0, 2**70, 1e308, "", "Dense", "float64", "object",
              [], {}, [3, 4], [10**9, 10**9], {"class_name": "Dense"}]
    return values[generator.integers(len(values))]


def _edit_random_node(document, generator):
    node = document
    for _ in range(8):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return
        key = keys[generator.integers(len(keys))]
        child = node[key]
        if generator.random() < 0.3 or not isinstance(child, (dict, list)) or not child:
            if generator.random() < 0.3:
                del node[key]
            else:
                node[key] = _random_json_value(generator)
            return
        node = child


def _mutate(data, members, document, generator):
    choice = generator.integers(6)
    if choice == 0:
        flipped = bytearray(data)
        for _ in range(generator.integers(1, 9)):
            flipped[generator.integers(len(flipped))] ^= 1 << generator.integers(8)
        return bytes(flipped)
    if choice == 1:
        return data[:generator.integers(len(data))]
    if choice == 2:
        first, second = generator.choice(len(members), 2, replace=False)
        swapped = list(members)
        swapped[first] = (members[first][0], members[second][1])
        swapped[second] = (members[second][0], members[first][1])
        return write_members(swapped)
    if choice == 3:
        inserted = bytearray(data)
        position = generator.integers(len(inserted))
        inserted[position:position] = generator.bytes(generator.integers(1, 32))
        return bytes(inserted)
    edited = json.loads(json.dumps(document))
    for _ in range(generator.integers(1, 3)):
        _edit_random_node(edited, generator)
    return write_members([(members[0][0], json.dumps(edited).encode())] + members[1:])


def test_fuzzed_files_fail_cleanly():
    data = tiny_model_bytes()
    members = read_members(data)
    document = json.loads(members[0][1])
    generator = np.random.default_rng(2024)
    outcomes = {"rejected": 0, "loaded": 0}
    deadline = time.perf_counter() + FUZZ_BUDGET_SECONDS
    for case in range(FUZZ_MAX_CASES):
        if time.perf_counter() > deadline:
            break
        mutated = _mutate(data, members, document, generator)
        try:
            model = saving.model_from_bytes(mutated)
        except FormatError:
            outcomes["rejected"] += 1
            continue
        outcomes["loaded"] += 1
        if model.built:
            x = np.zeros((3,) + tuple(model.input_shape[1:]), dtype=model.dtype)
            out = model.predict(x, verbose=0)
            assert out.shape == (3,) + tuple(model.output_shape), f"case {case}"
        else:
            assert model.weights == [], f"case {case}"
    assert outcomes["rejected"] > 0
    assert outcomes["loaded"] > 0


# Atomic saving ---------------------------------------------------------------


def test_failed_save_keeps_old_file(tmp_path, monkeypatch):
    old = make_model(seed=1, compile=False)
    path = tmp_path / "model.nnf"
    old.save(path)

    def fail_write(*args, **kwargs):
        raise OSError("simulated full disk")

    monkeypatch.setattr(np.lib.format, "write_array", fail_write)
    with pytest.raises(OSError, match="simulated full disk"):
        trained_model().save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.nnf"]
    assert_same_weights(old, nnfast.models.load_model(path))


_KILLED_CHILD = textwrap.dedent("""
    import sys

    import nnfast
    from nnfast import layers

    model = nnfast.Sequential([
        nnfast.Input(shape=(2048,)),
        layers.Dense(4096, kernel_initializer="zeros", bias_initializer="ones"),
    ])
    print("ready", flush=True)
    while True:
        model.save(sys.argv[1])
""")


def test_kill_during_save_keeps_old_file(tmp_path):
    old = make_model(seed=1, compile=False)
    path = tmp_path / "model.nnf"
    old.save(path)
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_CHILD, str(path)], cwd=REPO_ROOT,
        stdout=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert child.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 60
        while not any(name.endswith(file_format.TEMP_SUFFIX)
                      for name in os.listdir(tmp_path)):
            assert time.monotonic() < deadline, "the child never started a save"
            time.sleep(0.0005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    loaded = nnfast.models.load_model(path)
    if loaded.input_shape == (None, 6):
        assert_same_weights(old, loaded)
    else:
        # The kill came after a complete save, which replaced the file whole.
        assert loaded.input_shape == (None, 2048)
        np.testing.assert_array_equal(loaded.get_weights()[1], np.ones(4096))
    leftovers = [name for name in os.listdir(tmp_path) if name != "model.nnf"]
    assert all(name.startswith(".model.nnf.") and name.endswith(".nnfast-tmp")
               for name in leftovers)


# Fixtures of released format versions ----------------------------------------


FIXTURE_FILES = sorted(FIXTURES.glob("model_v*.nnf"))


def test_fixture_exists_for_current_version():
    assert FIXTURES / f"model_v{saving.FORMAT_VERSION}.nnf" in FIXTURE_FILES


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.stem for p in FIXTURE_FILES])
def test_fixture_loads_and_predicts(path):
    version = int(path.stem.split("_v")[1])
    assert version in saving.SUPPORTED_VERSIONS
    with zipfile.ZipFile(path) as archive:
        assert json.loads(archive.read("nnfast.json"))["format_version"] == version
    model = saving.load_model(path, restore_random_state=False)
    inputs = np.load(FIXTURES / f"{path.stem}_inputs.npy", allow_pickle=False)
    expected = np.load(FIXTURES / f"{path.stem}_predictions.npy", allow_pickle=False)
    # The expected outputs came from the compiled kernels of the machine that
    # made the fixture; other SIMD paths round differently in the last bits.
    np.testing.assert_allclose(model.predict(inputs, verbose=0), expected,
                               rtol=1e-5, atol=1e-6)
    assert model.optimizer is not None
    assert model.optimizer.iterations > 0
    # A file re-saved by this version loads to the same weights.
    assert_same_weights(model, saving.model_from_bytes(saving.model_to_bytes(model)))


# ModelCheckpoint -------------------------------------------------------------


def drive_checkpoint(callback, model, logs_per_epoch):
    callback.set_model(model)
    callback.set_params({"epochs": len(logs_per_epoch), "steps": 1, "verbose": 0})
    callback.on_train_begin({})
    for epoch, logs in enumerate(logs_per_epoch):
        callback.on_epoch_begin(epoch, {})
        callback.on_epoch_end(epoch, logs)
    callback.on_train_end({})


def test_checkpoint_every_epoch_formats_names(tmp_path):
    x, y = train_data()
    model = make_model()
    pattern = str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.2f}.nnf")
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, validation_split=0.25,
              callbacks=[ModelCheckpoint(pattern)])
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 3
    val_losses = model.history.history["val_loss"]
    expected = [f"ckpt-{epoch + 1:02d}-{loss:.2f}.nnf"
                for epoch, loss in enumerate(val_losses)]
    assert names == expected
    last = nnfast.models.load_model(tmp_path / names[-1])
    assert_same_weights(model, last)


def test_checkpoint_save_best_only(tmp_path):
    model = make_model()
    callback = ModelCheckpoint(str(tmp_path / "best-{epoch}.nnf"),
                               save_best_only=True)
    assert callback.mode == "min"
    drive_checkpoint(callback, model, [{"val_loss": 0.9}, {"val_loss": 0.7},
                                       {"val_loss": 0.8}, {"val_loss": 0.5},
                                       {"val_loss": 0.5}])
    assert sorted(os.listdir(tmp_path)) == ["best-1.nnf", "best-2.nnf", "best-4.nnf"]
    assert callback.best == 0.5


def test_checkpoint_best_only_keeps_best_model(tmp_path):
    model = make_model()
    path = tmp_path / "best.nnf"
    callback = ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True)
    assert callback.mode == "max"
    callback.set_model(model)
    callback.on_epoch_end(0, {"val_accuracy": 0.6})
    best_weights = model.get_weights()
    model.set_weights([w + 1.0 for w in best_weights])
    callback.on_epoch_end(1, {"val_accuracy": 0.4})
    loaded = nnfast.models.load_model(path)
    for want, got in zip(best_weights, loaded.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_checkpoint_initial_value_threshold(tmp_path):
    callback = ModelCheckpoint(str(tmp_path / "e{epoch}.nnf"), monitor="loss",
                               save_best_only=True, initial_value_threshold=0.5)
    drive_checkpoint(callback, make_model(), [{"loss": 0.6}, {"loss": 0.4}])
    assert os.listdir(tmp_path) == ["e2.nnf"]


def test_checkpoint_missing_monitor_warns(tmp_path):
    callback = ModelCheckpoint(str(tmp_path / "m.nnf"), save_best_only=True)
    with pytest.warns(UserWarning, match="val_loss"):
        drive_checkpoint(callback, make_model(), [{"loss": 0.3}])
    assert os.listdir(tmp_path) == []


def test_checkpoint_save_weights_only(tmp_path):
    model = trained_model()
    path = tmp_path / "weights.nnf"
    drive_checkpoint(ModelCheckpoint(path, save_weights_only=True), model,
                     [{"val_loss": 1.0}])
    with zipfile.ZipFile(path) as archive:
        document = json.loads(archive.read("nnfast.json"))
    assert document["kind"] == "weights"
    assert "optimizer" not in document
    other = make_model(seed=3)
    other.load_weights(path)
    assert_same_weights(model, other)
    with pytest.raises(FormatError, match="only weights"):
        nnfast.models.load_model(path)


def test_checkpoint_save_freq_batches(tmp_path):
    x, y = train_data()
    model = make_model()
    pattern = str(tmp_path / "e{epoch}-b{batch}.nnf")
    # 60 samples in batches of 16 give 4 batches per epoch; every 3rd batch
    # counted across epochs is epoch 1 batch 3, epoch 2 batch 2, epoch 3 batch 1.
    model.fit(x, y, epochs=3, batch_size=16, verbose=0,
              callbacks=[ModelCheckpoint(pattern, save_freq=3)])
    assert sorted(os.listdir(tmp_path)) == ["e1-b3.nnf", "e2-b2.nnf", "e3-b1.nnf",
                                           "e3-b4.nnf"]


def test_checkpoint_verbose_messages(tmp_path, capsys):
    callback = ModelCheckpoint(str(tmp_path / "v.nnf"), monitor="loss",
                               save_best_only=True, verbose=1)
    drive_checkpoint(callback, make_model(), [{"loss": 0.5}, {"loss": 0.7}])
    output = capsys.readouterr().out
    assert "Epoch 1: loss improved from inf to 0.50000, saving the model" in output
    assert "Epoch 2: loss = 0.70000 is no better than 0.50000, so no" in output


def test_checkpoint_resume_matches_uninterrupted(tmp_path):
    x, y = train_data()
    model = make_model()
    pattern = str(tmp_path / "epoch-{epoch}.nnf")
    model.fit(x, y, epochs=4, batch_size=16, verbose=0,
              callbacks=[ModelCheckpoint(pattern)])
    nnfast.utils.set_random_seed(777)
    resumed = nnfast.models.load_model(tmp_path / "epoch-2.nnf")
    resumed.fit(x, y, epochs=4, initial_epoch=2, batch_size=16, verbose=0)
    assert_same_weights(model, resumed)


def test_checkpoint_creates_folder(tmp_path):
    path = tmp_path / "runs" / "one" / "model.nnf"
    drive_checkpoint(ModelCheckpoint(path), make_model(), [{"val_loss": 1.0}])
    assert path.exists()


def test_checkpoint_argument_checks(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        ModelCheckpoint(tmp_path / "x.nnf", mode="best")
    with pytest.raises(ValueError, match="save_freq"):
        ModelCheckpoint(tmp_path / "x.nnf", save_freq=0)
    with pytest.raises(ValueError, match="save_freq"):
        ModelCheckpoint(tmp_path / "x.nnf", save_freq="batch")
    callback = ModelCheckpoint(str(tmp_path / "{missing}.nnf"))
    with pytest.raises(ValueError, match="missing"):
        drive_checkpoint(callback, make_model(), [{"val_loss": 1.0}])
