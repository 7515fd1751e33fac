"""Tests for nnfast.datasets: IDX parsing, download, cache and Fashion-MNIST.

Downloads go to an HTTP server that the tests start on 127.0.0.1. Every test
also points NNFAST_FASHION_MNIST_URL at a closed local port and NNFAST_HOME at
a temporary folder, so no test reaches the internet or the user's cache.
"""

import gzip
import hashlib
import http.server
import pathlib
import socket
import threading

import numpy as np
import pytest

from nnfast.datasets import DatasetError, DownloadError, _idx, fashion_mnist
from nnfast.utils.data_utils import get_file

SYSTEM_DIR = pathlib.Path(fashion_mnist.SYSTEM_DIR)
requires_system_files = pytest.mark.skipif(
    not all(
        (SYSTEM_DIR / entry.name).exists() for entry in fashion_mnist._FILES.values()
    ),
    reason=(
        f"the Debian package dataset-fashion-mnist is not installed "
        f"(no files in {SYSTEM_DIR})"
    ),
)


def _closed_port_url():
    """Return a URL on 127.0.0.1 whose port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NNFAST_HOME", str(tmp_path / "nnfast-home"))
    monkeypatch.setenv("NNFAST_FASHION_MNIST_URL", _closed_port_url())


# ---------------------------------------------------------------------------
# Helpers that write IDX files


def _idx_bytes(array, dtype_code=0x08):
    header = bytes([0, 0, dtype_code, array.ndim])
    header += b"".join(size.to_bytes(4, "big") for size in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write(path, data, compress=True):
    path = pathlib.Path(path)
    if compress:
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def _synthetic_arrays():
    """Return small arrays in the layout of Fashion-MNIST: 20 train, 10 test."""
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    y_train = (np.arange(20) % 10).astype(np.uint8)
    x_test = rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
    y_test = np.arange(10, dtype=np.uint8)[::-1].copy()
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.fixture
def synthetic(monkeypatch, tmp_path):
    """Write small gzip IDX files and make load_data expect their digests.

    Returns (folder, arrays), where folder contains the four .gz files.
    """
    folder = tmp_path / "synthetic"
    folder.mkdir()
    arrays = _synthetic_arrays()
    files = {}
    for key, entry in fashion_mnist._FILES.items():
        content = _idx_bytes(arrays[key])
        compressed = _write(folder / entry.name, content).read_bytes()
        files[key] = entry._replace(
            shape=arrays[key].shape,
            size=len(compressed),
            sha256=hashlib.sha256(compressed).hexdigest(),
            content_sha256=hashlib.sha256(content).hexdigest(),
        )
    monkeypatch.setattr(fashion_mnist, "_FILES", files)
    return folder, arrays


# ---------------------------------------------------------------------------
# Local HTTP server


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serve a folder and record request paths.

    ``server.modes`` maps a file name to "cut" (announce the full length,
    then send half the file) or "no-length" (send no Content-Length).
    """

    def do_GET(self):
        self.server.requests.append(self.path)
        name = self.path.lstrip("/")
        mode = self.server.modes.get(name)
        if mode is None:
            super().do_GET()
            return

        data = (pathlib.Path(self.directory) / name).read_bytes()
        self.send_response(200)
        if mode == "cut":
            self.send_header("Content-Length", str(len(data)))
            data = data[: len(data) // 2]
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass


class _Server:
    def __init__(self, folder):
        def make_handler(*args, **kwargs):
            return _Handler(*args, directory=str(folder), **kwargs)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler)
        self.httpd.requests = []
        self.httpd.modes = {}
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    @property
    def requests(self):
        return self.httpd.requests

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def serve():
    """Return a function that serves a folder over HTTP on 127.0.0.1."""
    servers = []

    def start(folder):
        server = _Server(folder)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.thread.is_alive():
            server.stop()


def _leftover_parts(folder):
    return sorted(path.name for path in pathlib.Path(folder).glob("*.part"))


def _cached_names(folder):
    return sorted(path.name for path in pathlib.Path(folder).iterdir())


# ---------------------------------------------------------------------------
# Installed Debian files


@pytest.fixture(scope="module")
def system_cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("system") / "cache"


@pytest.fixture(scope="module")
def system_data(system_cache_dir):
    # Module scope runs before the autouse fixture, so the URL is set here.
    return fashion_mnist.load_data(
        cache_dir=system_cache_dir, base_url=_closed_port_url()
    )


@requires_system_files
def test_system_files_shapes_and_dtypes(system_data):
    (x_train, y_train), (x_test, y_test) = system_data
    assert x_train.shape == (60000, 28, 28)
    assert y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28)
    assert y_test.shape == (10000,)
    for array in (x_train, y_train, x_test, y_test):
        assert array.dtype == np.uint8


@requires_system_files
def test_system_files_known_facts(system_data):
    (x_train, y_train), (x_test, y_test) = system_data
    assert y_train.max() == 9
    assert y_test.max() == 9
    np.testing.assert_array_equal(np.bincount(y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [1000] * 10)
    assert x_train.min() == 0
    assert x_train.max() == 255
    assert x_test.min() == 0
    assert x_test.max() == 255
    # The first image of each split is an ankle boot.
    assert fashion_mnist.CLASS_NAMES[y_train[0]] == "Ankle boot"
    assert fashion_mnist.CLASS_NAMES[y_test[0]] == "Ankle boot"


@requires_system_files
def test_system_files_need_no_cache(system_data, system_cache_dir):
    assert not system_cache_dir.exists()


# Debian's packaging rewrote the gzip headers: it cleared the FNAME flag,
# dropped the stored file name and set MTIME to the package date. Restoring
# the original header gives back the published files, byte for byte. The
# MTIME values were found by matching the MD5 digests in the Fashion-MNIST
# README, so this test ties the committed SHA-256 digests to those files.
_PUBLISHED_MTIMES = {
    "train-images-idx3-ubyte.gz": 1504176606,
    "train-labels-idx1-ubyte.gz": 1504176606,
    "t10k-images-idx3-ubyte.gz": 1504176627,
    "t10k-labels-idx1-ubyte.gz": 1504176627,
}
_PUBLISHED_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


def _published_file(name):
    debian = (SYSTEM_DIR / name).read_bytes()
    flags_fname = 0x08
    return (
        debian[:3]
        + bytes([flags_fname])
        + _PUBLISHED_MTIMES[name].to_bytes(4, "little")
        + debian[8:10]
        + name.removesuffix(".gz").encode()
        + b"\0"
        + debian[10:]
    )


@requires_system_files
@pytest.mark.parametrize("key", ["x_train", "y_train", "x_test", "y_test"])
def test_published_digests_match_debian_data(key):
    entry = fashion_mnist._FILES[key]
    published = _published_file(entry.name)
    assert hashlib.md5(published).hexdigest() == _PUBLISHED_MD5[entry.name]
    assert hashlib.sha256(published).hexdigest() == entry.sha256
    assert len(published) == entry.size


@requires_system_files
def test_download_of_published_file(tmp_path, serve):
    # The smallest real file goes through the full download path.
    entry = fashion_mnist._FILES["y_test"]
    folder = tmp_path / "published"
    folder.mkdir()
    (folder / entry.name).write_bytes(_published_file(entry.name))
    server = serve(folder)

    path = get_file(
        entry.name,
        server.url + entry.name,
        sha256=entry.sha256,
        cache_dir=tmp_path / "cache",
        size=entry.size,
    )

    labels = _idx.read_idx(path, dtype_code=0x08, shape=entry.shape)
    np.testing.assert_array_equal(np.bincount(labels), [1000] * 10)


# ---------------------------------------------------------------------------
# Download and cache


def test_download_then_cache(tmp_path, synthetic, serve):
    folder, expected = synthetic
    server = serve(folder)
    cache_dir = tmp_path / "cache"

    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(
        cache_dir=cache_dir, base_url=server.url, system_dir=None
    )
    np.testing.assert_array_equal(x_train, expected["x_train"])
    np.testing.assert_array_equal(y_train, expected["y_train"])
    np.testing.assert_array_equal(x_test, expected["x_test"])
    np.testing.assert_array_equal(y_test, expected["y_test"])
    names = sorted(entry.name for entry in fashion_mnist._FILES.values())
    assert sorted(request.lstrip("/") for request in server.requests) == names
    assert _cached_names(cache_dir) == names

    server.stop()
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(
        cache_dir=cache_dir, base_url=server.url, system_dir=None
    )
    np.testing.assert_array_equal(x_train, expected["x_train"])
    np.testing.assert_array_equal(y_test, expected["y_test"])
    assert len(server.requests) == 4


def test_download_uses_environment(tmp_path, monkeypatch, synthetic, serve):
    folder, expected = synthetic
    server = serve(folder)
    monkeypatch.setenv("NNFAST_FASHION_MNIST_URL", server.url)

    (_, y_train), _ = fashion_mnist.load_data(system_dir=None)

    np.testing.assert_array_equal(y_train, expected["y_train"])
    cache_dir = tmp_path / "nnfast-home" / "datasets" / "fashion-mnist"
    assert len(_cached_names(cache_dir)) == 4


def test_download_404(tmp_path, synthetic, serve):
    folder, _ = synthetic
    missing = fashion_mnist._FILES["x_test"].name
    (folder / missing).unlink()
    server = serve(folder)
    cache_dir = tmp_path / "cache"

    with pytest.raises(DownloadError, match="HTTP 404") as info:
        fashion_mnist.load_data(
            cache_dir=cache_dir, base_url=server.url, system_dir=None
        )

    assert missing in str(info.value)
    assert missing not in _cached_names(cache_dir)
    assert _leftover_parts(cache_dir) == []


def test_download_checksum_mismatch(tmp_path, synthetic, serve):
    folder, _ = synthetic
    entry = fashion_mnist._FILES["y_train"]
    data = (folder / entry.name).read_bytes()
    data = _flip_byte(data, len(data) // 2)
    (folder / entry.name).write_bytes(data)
    server = serve(folder)
    cache_dir = tmp_path / "cache"

    with pytest.raises(DatasetError, match="SHA-256 mismatch") as info:
        fashion_mnist.load_data(
            cache_dir=cache_dir, base_url=server.url, system_dir=None
        )

    message = str(info.value)
    assert entry.name in message
    assert entry.sha256 in message
    assert hashlib.sha256(data).hexdigest() in message
    assert entry.name not in _cached_names(cache_dir)
    assert _leftover_parts(cache_dir) == []


@pytest.mark.parametrize("mode", [None, "no-length"], ids=["length", "no-length"])
def test_download_truncated_file(tmp_path, synthetic, serve, mode):
    folder, _ = synthetic
    entry = fashion_mnist._FILES["x_train"]
    data = (folder / entry.name).read_bytes()
    (folder / entry.name).write_bytes(data[:-100])
    server = serve(folder)
    if mode is not None:
        server.httpd.modes[entry.name] = mode
    cache_dir = tmp_path / "cache"

    with pytest.raises(DatasetError, match=f"expected {entry.size}") as info:
        fashion_mnist.load_data(
            cache_dir=cache_dir, base_url=server.url, system_dir=None
        )

    assert entry.name in str(info.value)
    assert str(entry.size - 100) in str(info.value)
    assert _cached_names(cache_dir) == []


def test_download_cut_transfer(tmp_path, synthetic, serve):
    folder, _ = synthetic
    entry = fashion_mnist._FILES["x_train"]
    server = serve(folder)
    server.httpd.modes[entry.name] = "cut"
    cache_dir = tmp_path / "cache"

    with pytest.raises(DownloadError, match="failed to download") as info:
        fashion_mnist.load_data(
            cache_dir=cache_dir, base_url=server.url, system_dir=None
        )

    assert entry.name in str(info.value)
    assert _cached_names(cache_dir) == []


def test_download_unreachable_server(tmp_path, synthetic):
    with pytest.raises(DownloadError, match="install the Debian package"):
        fashion_mnist.load_data(
            cache_dir=tmp_path / "cache", base_url=_closed_port_url(), system_dir=None
        )
    assert _leftover_parts(tmp_path / "cache") == []


def test_corrupt_cached_file_is_reported(tmp_path, synthetic, serve):
    folder, _ = synthetic
    server = serve(folder)
    cache_dir = tmp_path / "cache"
    fashion_mnist.load_data(cache_dir=cache_dir, base_url=server.url, system_dir=None)
    entry = fashion_mnist._FILES["y_test"]
    cached = cache_dir / entry.name
    cached.write_bytes(cached.read_bytes()[:-1])

    with pytest.raises(DatasetError, match="Delete .* to download it again") as info:
        fashion_mnist.load_data(
            cache_dir=cache_dir, base_url=server.url, system_dir=None
        )

    assert str(cached) in str(info.value)
    assert len(server.requests) == 4


def test_cache_accepts_recompressed_copy(tmp_path, synthetic):
    # The cache is checked by decompressed data, so copies of the Debian
    # files, whose gzip headers differ from the published ones, load too.
    _, expected = synthetic
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    for key, entry in fashion_mnist._FILES.items():
        content = _idx_bytes(expected[key])
        (cache_dir / entry.name).write_bytes(gzip.compress(content, mtime=12345))

    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(
        cache_dir=cache_dir, system_dir=None
    )

    np.testing.assert_array_equal(x_train, expected["x_train"])
    np.testing.assert_array_equal(y_train, expected["y_train"])
    np.testing.assert_array_equal(x_test, expected["x_test"])
    np.testing.assert_array_equal(y_test, expected["y_test"])


def test_get_file_checks_cached_digest(tmp_path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    path = cache_dir / "data.bin"
    path.write_bytes(b"cached bytes")
    digest = hashlib.sha256(b"cached bytes").hexdigest()

    result = get_file(
        "data.bin", _closed_port_url(), sha256=digest, cache_dir=cache_dir
    )
    assert result == str(path)

    with pytest.raises(DatasetError, match="Delete it to download it again") as info:
        get_file("data.bin", _closed_port_url(), sha256="0" * 64, cache_dir=cache_dir)
    assert str(path) in str(info.value)
    assert path.exists()


# ---------------------------------------------------------------------------
# Local files in system_dir


def test_system_dir_comes_first(tmp_path, synthetic, serve):
    folder, expected = synthetic
    server = serve(folder)

    (x_train, _), _ = fashion_mnist.load_data(
        cache_dir=tmp_path / "cache", base_url=server.url, system_dir=folder
    )

    np.testing.assert_array_equal(x_train, expected["x_train"])
    assert server.requests == []
    assert not (tmp_path / "cache").exists()


def test_corrupt_system_file_is_reported(tmp_path, synthetic):
    folder, _ = synthetic
    entry = fashion_mnist._FILES["x_test"]
    path = folder / entry.name
    path.write_bytes(path.read_bytes()[:40])

    with pytest.raises(DatasetError, match="gzip") as info:
        fashion_mnist.load_data(cache_dir=tmp_path / "cache", system_dir=folder)

    assert str(path) in str(info.value)


def test_labels_out_of_range(tmp_path, monkeypatch, synthetic):
    folder, arrays = synthetic
    labels = arrays["y_test"].copy()
    labels[3] = 10
    entry = fashion_mnist._FILES["y_test"]
    content = _idx_bytes(labels)
    _write(folder / entry.name, content)
    files = dict(fashion_mnist._FILES)
    files["y_test"] = entry._replace(content_sha256=hashlib.sha256(content).hexdigest())
    monkeypatch.setattr(fashion_mnist, "_FILES", files)

    with pytest.raises(DatasetError, match="outside 0..9") as info:
        fashion_mnist.load_data(cache_dir=tmp_path / "cache", system_dir=folder)

    message = str(info.value)
    assert entry.name in message
    assert "the first is 10 at index 3" in message


def test_wrong_content_digest(tmp_path, monkeypatch, synthetic):
    folder, _ = synthetic
    files = dict(fashion_mnist._FILES)
    files["y_train"] = files["y_train"]._replace(content_sha256="0" * 64)
    monkeypatch.setattr(fashion_mnist, "_FILES", files)

    with pytest.raises(DatasetError, match="expected 0{64}, got [0-9a-f]{64}"):
        fashion_mnist.load_data(cache_dir=tmp_path / "cache", system_dir=folder)


# ---------------------------------------------------------------------------
# IDX parser


def test_read_idx_uint8_gzip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = _write(tmp_path / "a.gz", _idx_bytes(array))

    result = _idx.read_idx(path, dtype_code=0x08, shape=(None, 3, 4))

    np.testing.assert_array_equal(result, array)
    assert result.dtype == np.uint8


@pytest.mark.parametrize(
    "dtype, code",
    [("i1", 0x09), ("i2", 0x0B), ("i4", 0x0C), ("f4", 0x0D), ("f8", 0x0E)],
    ids=["int8", "int16", "int32", "float32", "float64"],
)
def test_read_idx_big_endian_dtypes(tmp_path, dtype, code):
    array = (np.arange(12) - 5).astype(dtype).reshape(3, 4)
    path = _write(tmp_path / "a.idx", _idx_bytes(array, code), compress=False)

    result = _idx.read_idx(path)

    np.testing.assert_array_equal(result, array)
    assert result.dtype == np.dtype(dtype)
    assert result.dtype.isnative


def test_read_idx_sha256(tmp_path):
    content = _idx_bytes(np.zeros(5, dtype=np.uint8))
    path = _write(tmp_path / "a.gz", content)
    digest = hashlib.sha256(content).hexdigest()

    _idx.read_idx(path, sha256=digest)
    with pytest.raises(DatasetError, match=f"expected {'f' * 64}, got {digest}"):
        _idx.read_idx(path, sha256="f" * 64)


def _flip_byte(data, index):
    data = bytearray(data)
    data[index] ^= 0xFF
    return bytes(data)


def _bad_idx_cases():
    good = _idx_bytes(np.zeros((2, 3), dtype=np.uint8))
    return [
        ("not-gzip", b"plain text, not gzip", False, "invalid or truncated gzip"),
        ("gzip-truncated", gzip.compress(good)[:-12], False, "gzip"),
        ("gzip-crc", _flip_byte(gzip.compress(good), -8), False, "CRC check failed"),
        ("short-magic", good[:2], True, "too short for an IDX magic number"),
        ("bad-magic", b"\x12\x34" + good[2:], True, "bad IDX magic number 0x12340802"),
        ("unknown-dtype", good[:2] + b"\x07" + good[3:], True, "unknown IDX dtype"),
        ("wrong-dtype", good[:2] + b"\x0d" + good[3:], True, r"0x0d \(float32\)"),
        ("wrong-ndim", good[:3] + b"\x03" + good[4:], True, "declares 3 dimensions"),
        ("zero-ndim", good[:3] + b"\x00", True, "declares 0 dimensions"),
        ("short-header", good[:6], True, "header is truncated"),
        ("wrong-shape", _idx_bytes(np.zeros((2, 4), np.uint8)), True, r"\(2, 4\)"),
        ("short-data", good[:-1], True, "need 6 bytes of data, got 5"),
        ("extra-data", good + b"\0\0", True, "2 bytes after"),
    ]


@pytest.mark.parametrize(
    "data, compress, message",
    [case[1:] for case in _bad_idx_cases()],
    ids=[case[0] for case in _bad_idx_cases()],
)
def test_read_idx_rejects(tmp_path, data, compress, message):
    path = _write(tmp_path / "bad.gz", data, compress=compress)

    with pytest.raises(DatasetError, match=message) as info:
        _idx.read_idx(path, dtype_code=0x08, shape=(2, 3))

    assert str(path) in str(info.value)


def test_read_idx_forged_header(tmp_path):
    # The header declares 2**96 bytes of data. The reader must fail on the
    # real length instead of allocating the declared size.
    header = bytes([0, 0, 0x08, 3]) + b"\xff\xff\xff\xff" * 3
    path = _write(tmp_path / "forged.gz", header + bytes(100))

    with pytest.raises(DatasetError, match="got 100"):
        _idx.read_idx(path)
    with pytest.raises(DatasetError, match="expected"):
        _idx.read_idx(path, shape=(60000, 28, 28))


def test_dataset_error_is_value_error():
    assert issubclass(DatasetError, ValueError)
    assert issubclass(DownloadError, OSError)
