"""Read IDX files, the array format of the MNIST and Fashion-MNIST releases.

An IDX file is a header followed by the array data in C order. The header
starts with a 4-byte magic number: two zero bytes, a dtype code and the number
of dimensions. The size of each dimension follows as a big-endian uint32.
Multi-byte values in the data are big-endian too.
"""

import gzip
import hashlib
import math
import zlib

import numpy as np

from nnfast.utils.data_utils import DatasetError

# Dtype codes of the IDX format, mapped to big-endian NumPy dtypes.
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_CHUNK_SIZE = 1 << 20


def read_idx(path, *, dtype_code=None, shape=None, sha256=None):
    """Read an IDX file, gzip-compressed when ``path`` ends in ``.gz``.

    The header is checked against ``dtype_code`` and ``shape`` before any data
    is read. The data is then read in chunks, so a header that declares more
    data than the file contains fails with DatasetError rather than allocating
    the declared size.

    Args:
        path: The file to read.
        dtype_code: The expected IDX dtype code (0x08 for uint8), or None to
            accept any code in ``IDX_DTYPES``.
        shape: The expected shape, a tuple whose None entries match any size,
            or None to accept any shape.
        sha256: The expected hex SHA-256 digest of the decompressed file
            (header and data), or None to skip the check.

    Returns:
        An array with the shape from the header, in native byte order.

    Raises:
        DatasetError: The gzip stream is invalid or truncated, the magic
            number, dtype code or dimensions are wrong, the data is shorter or
            longer than the header declares, or the digest does not match.
    """
    path = str(path)
    hasher = hashlib.sha256()
    try:
        with _open(path) as file:
            dtype, dims = _read_header(file, path, hasher, dtype_code, shape)
            data = _read_data(file, path, hasher, dims, dtype)
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise DatasetError(f"{path}: invalid or truncated gzip data ({exc})") from exc

    actual = hasher.hexdigest()
    if sha256 is not None and actual != sha256:
        raise DatasetError(
            f"{path}: SHA-256 mismatch in the decompressed IDX data, expected "
            f"{sha256}, got {actual}. The file is corrupt or from another release."
        )

    array = np.frombuffer(data, dtype=dtype).reshape(dims)
    if dtype.byteorder == ">":
        array = array.astype(dtype.newbyteorder("="))
    return array


def _open(path):
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _read_header(file, path, hasher, dtype_code, shape):
    """Read and check the magic number and dimensions, returning (dtype, dims)."""
    magic_bytes = _read_exact(file, 4)
    hasher.update(magic_bytes)
    if len(magic_bytes) < 4:
        raise DatasetError(
            f"{path}: the file has {len(magic_bytes)} bytes, too short for an "
            "IDX magic number (4 bytes)"
        )

    magic = int.from_bytes(magic_bytes, "big")
    if magic_bytes[0] != 0 or magic_bytes[1] != 0:
        raise DatasetError(
            f"{path}: bad IDX magic number 0x{magic:08x}, expected two zero "
            "bytes, a dtype code and the number of dimensions"
        )

    code = magic_bytes[2]
    if code not in IDX_DTYPES:
        raise DatasetError(
            f"{path}: unknown IDX dtype code 0x{code:02x} in magic number "
            f"0x{magic:08x}. The known codes are "
            + ", ".join(f"0x{known:02x}" for known in IDX_DTYPES)
        )
    if dtype_code is not None and code != dtype_code:
        raise DatasetError(
            f"{path}: wrong IDX dtype code 0x{code:02x} "
            f"({IDX_DTYPES[code].name}), expected 0x{dtype_code:02x} "
            f"({IDX_DTYPES[dtype_code].name})"
        )

    ndim = magic_bytes[3]
    if ndim == 0:
        raise DatasetError(f"{path}: the IDX header declares 0 dimensions")
    if shape is not None and ndim != len(shape):
        raise DatasetError(
            f"{path}: the IDX header declares {ndim} dimensions, expected "
            f"{len(shape)} (magic number 0x{magic:08x})"
        )

    dims_bytes = _read_exact(file, 4 * ndim)
    hasher.update(dims_bytes)
    if len(dims_bytes) < 4 * ndim:
        raise DatasetError(
            f"{path}: the IDX header is truncated, {ndim} dimensions need "
            f"{4 * ndim} bytes after the magic number, got {len(dims_bytes)}"
        )
    dims = tuple(
        int.from_bytes(dims_bytes[i : i + 4], "big") for i in range(0, 4 * ndim, 4)
    )
    if shape is not None:
        matches = all(
            expected is None or expected == size for expected, size in zip(shape, dims)
        )
        if not matches:
            raise DatasetError(
                f"{path}: the IDX dimensions are {dims}, expected {tuple(shape)}"
            )
    return IDX_DTYPES[code], dims


def _read_data(file, path, hasher, dims, dtype):
    """Read exactly the data that ``dims`` declares, then check for extra bytes."""
    # Python ints, so a forged header cannot overflow the product.
    expected = math.prod(dims) * dtype.itemsize
    data = bytearray()
    while len(data) < expected:
        chunk = file.read(min(_CHUNK_SIZE, expected - len(data)))
        if not chunk:
            raise DatasetError(
                f"{path}: the file is truncated, the IDX dimensions {dims} of "
                f"{dtype.name} need {expected} bytes of data, got {len(data)}"
            )
        data += chunk
    hasher.update(data)

    # Reading to the end also makes gzip check the CRC-32 and length trailer.
    extra = 0
    for chunk in iter(lambda: file.read(_CHUNK_SIZE), b""):
        extra += len(chunk)
    if extra:
        raise DatasetError(
            f"{path}: the file has {extra} bytes after the {expected} bytes of "
            f"data that the IDX dimensions {dims} of {dtype.name} declare"
        )
    return data


def _read_exact(file, count):
    """Read up to ``count`` bytes, fewer only at the end of the file."""
    parts = []
    remaining = count
    while remaining > 0:
        chunk = file.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)
