"""Fashion-MNIST: 28x28 grayscale images of clothing in 10 classes.

The data set has 60,000 training and 10,000 test images, released by Zalando
Research at https://github.com/zalandoresearch/fashion-mnist.
"""

import collections
import logging
import os

import numpy as np

from nnfast.datasets import _idx
from nnfast.utils.data_utils import DatasetError, DownloadError, download_file

logger = logging.getLogger(__name__)

# Install folder of the four files in the Debian package dataset-fashion-mnist.
SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"

# The S3 website endpoint that the Fashion-MNIST README links to. It serves
# plain HTTP only, and the SHA-256 check below is what protects the download.
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# Label i of the data set names CLASS_NAMES[i], as the README lists them.
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_NUM_CLASSES = len(CLASS_NAMES)

_IdxFile = collections.namedtuple(
    "_IdxFile", ["name", "shape", "size", "sha256", "content_sha256"]
)

# `size` and `sha256` describe the .gz files at BASE_URL. Their MD5 digests
# match the ones that the Fashion-MNIST README publishes, and the SHA-256
# digests match tensorflow_datasets/url_checksums/fashion_mnist.txt in
# TensorFlow Datasets.
# `content_sha256` is the digest of the decompressed IDX file. It is the check
# for local copies, because the Debian package (0.0~git20200523.55506a9-1)
# rewrites the gzip headers, dropping the stored file name and time stamp. Its
# .gz files therefore have other digests, but the same compressed data.
# tests/test_datasets.py rebuilds the published files from the Debian copies
# and checks them against both published digests.
_FILES = {
    "x_train": _IdxFile(
        name="train-images-idx3-ubyte.gz",
        shape=(60000, 28, 28),
        size=26421880,
        sha256="3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        content_sha256=(
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
        ),
    ),
    "y_train": _IdxFile(
        name="train-labels-idx1-ubyte.gz",
        shape=(60000,),
        size=29515,
        sha256="a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        content_sha256=(
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
        ),
    ),
    "x_test": _IdxFile(
        name="t10k-images-idx3-ubyte.gz",
        shape=(10000, 28, 28),
        size=4422102,
        sha256="346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        content_sha256=(
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
        ),
    ),
    "y_test": _IdxFile(
        name="t10k-labels-idx1-ubyte.gz",
        shape=(10000,),
        size=5148,
        sha256="67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        content_sha256=(
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
        ),
    ),
}


def load_data(*, cache_dir=None, base_url=None, system_dir=SYSTEM_DIR):
    """Load the Fashion-MNIST training and test sets.

    Each of the four files is taken from the first place that has it:

    1. ``system_dir``, where the Debian package ``dataset-fashion-mnist``
       installs them;
    2. ``cache_dir``;
    3. ``base_url``, downloaded into ``cache_dir`` after its size and SHA-256
       match the published file.

    Every file is checked before use: the SHA-256 of its decompressed data,
    its IDX header (uint8 data of the expected shape) and, for labels, the
    range 0..9. Local copies may be compressed differently from the
    published files, as the Debian ones are.

    Args:
        cache_dir: The folder for downloaded files. Defaults to
            ``$NNFAST_HOME/datasets/fashion-mnist``, where ``NNFAST_HOME``
            defaults to ``~/.nnfast``.
        base_url: The URL of the folder that serves the four ``.gz`` files.
            Defaults to the ``NNFAST_FASHION_MNIST_URL`` environment variable,
            then to ``BASE_URL``.
        system_dir: The folder to read installed files from, or None to skip
            it. Defaults to ``SYSTEM_DIR``.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``, uint8 arrays of shapes
        (60000, 28, 28), (60000,), (10000, 28, 28) and (10000,). Labels are
        0..9 and index ``CLASS_NAMES``.

    Raises:
        DatasetError: A file is corrupt, truncated, wrongly sized or fails its
            checksum. A bad local file is reported, never replaced.
        DownloadError: A download failed. Installing the Debian package or
            copying the files into ``cache_dir`` avoids the download.
    """
    if cache_dir is None:
        cache_dir = _default_cache_dir()
    if base_url is None:
        base_url = os.environ.get("NNFAST_FASHION_MNIST_URL") or BASE_URL

    arrays = {}
    for key, entry in _FILES.items():
        path, cached = _locate(entry, cache_dir, base_url, system_dir)
        try:
            arrays[key] = _idx.read_idx(
                path, dtype_code=0x08, shape=entry.shape, sha256=entry.content_sha256
            )
            if key.startswith("y_"):
                _check_labels(arrays[key], path)
        except DatasetError as exc:
            if not cached:
                raise
            raise DatasetError(f"{exc} Delete {path} to download it again.") from exc

    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _default_cache_dir():
    home = os.environ.get("NNFAST_HOME") or os.path.join("~", ".nnfast")
    return os.path.join(os.path.expanduser(home), "datasets", "fashion-mnist")


def _locate(entry, cache_dir, base_url, system_dir):
    """Find or download the file of ``entry``, returning (path, cached).

    ``cached`` is True for a file found in ``cache_dir``, which the caller
    checks by its decompressed data only, so a cache may also contain copies of
    the Debian files.
    """
    if system_dir is not None:
        system_path = os.path.join(system_dir, entry.name)
        if os.path.exists(system_path):
            logger.debug("using installed %s", system_path)
            return system_path, False

    path = os.path.join(cache_dir, entry.name)
    if os.path.exists(path):
        logger.debug("using cached %s", path)
        return path, True

    origin = base_url.rstrip("/") + "/" + entry.name
    try:
        download_file(origin, path, sha256=entry.sha256, size=entry.size)
    except DownloadError as exc:
        raise DownloadError(
            f"{exc}. To load Fashion-MNIST without a download, install the Debian "
            f"package dataset-fashion-mnist or copy the four .gz files into "
            f"{cache_dir}"
        ) from exc
    return path, False


def _check_labels(labels, path):
    out_of_range = np.flatnonzero(labels >= _NUM_CLASSES)
    if out_of_range.size:
        first = out_of_range[0]
        raise DatasetError(
            f"{path}: {out_of_range.size} of {labels.size} labels are outside "
            f"0..{_NUM_CLASSES - 1}, the first is {labels[first]} at index {first}"
        )
