"""The nnfast file container: a zip archive of one JSON document and .npy arrays.

A file contains these members, all stored uncompressed (ZIP_STORED):

    nnfast.json              the document (see ``nnfast.saving.serialization``)
    weights/<index>.npy      one array per model weight
    optimizer/<index>.npy    one array per optimizer state slot

Reading trusts nothing in the file. Every member must be stored, unencrypted
and inside the file, and their sizes together may not exceed the file's own
size, so a small file cannot expand into a large allocation. Arrays are read
from their .npy header and raw bytes only: the header is checked against the
expected shape and dtype before any memory is allocated for the data, and an
object dtype (which would need pickle) is rejected. Any problem raises
:class:`FormatError`.

Writing goes to a temporary file in the target's folder, which is flushed,
fsynced and then renamed over the target with ``os.replace``, so readers see
either the old file or the complete new one.
"""

import contextlib
import io
import json
import math
import os
import secrets
import struct
import zipfile

import numpy as np

FORMAT_NAME = "nnfast"
FORMAT_VERSION = 1
# Format versions that this release reads.
SUPPORTED_VERSIONS = (1,)

DOCUMENT_MEMBER = "nnfast.json"

# Upper bounds on what a reader accepts. Files above them are rejected before
# any allocation. They are limits of the format, so writers check them too.
MAX_DOCUMENT_BYTES = 16 * 2**20
MAX_ARRAY_BYTES = 4 * 2**30
MAX_MEMBERS = 100_000

# Leftover temporary files (after a crash or SIGKILL during a save) sit next
# to the target, start with a dot and end with this suffix.
TEMP_SUFFIX = ".nnfast-tmp"

_NPY_MAX_HEADER_BYTES = 10_000
_READ_CHUNK_BYTES = 16 * 2**20
# Zip timestamps are fixed so that saving the same model twice gives the same
# bytes.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
# The dtypes arrays may have in a file, always little-endian.
ARRAY_DTYPES = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}

# Errors that zipfile and struct raise on a damaged archive. OSError covers
# seeks to offsets that a forged directory points outside the file.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError,
               ValueError, struct.error, NotImplementedError, RuntimeError,
               OverflowError, IndexError, KeyError)


class FormatError(ValueError):
    """A model file (or model bytes, or model JSON) that nnfast cannot load.

    Raised for a file that is not a zip archive, is truncated or corrupted,
    lacks a member, has an unsupported format version, names an unknown
    class, or contains arrays whose shape or dtype do not match the
    architecture.

    Attributes:
        source: what was read, for example ``"file 'model.nnf'"``.
        reason: what is wrong with it.
    """

    def __init__(self, source, reason):
        self.source = source
        self.reason = reason
        super().__init__(f"invalid nnfast {source}: {reason}")

    def __reduce__(self):
        return (type(self), (self.source, self.reason))


def describe_path(filepath):
    """Return how error messages name the file ``filepath``."""
    return f"file {os.fspath(filepath)!r}"


# Writing ---------------------------------------------------------------------


def write_archive(destination, document, arrays, overwrite=True):
    """Write ``document`` and ``arrays`` as one archive.

    Args:
        destination: a path, written atomically, or a seekable binary file
            object, written in place.
        document: a JSON-serializable dict, stored as ``nnfast.json``.
        arrays: list of (member name, array) pairs. Arrays must be float32 or
            float64 and at most ``MAX_ARRAY_BYTES`` each.
        overwrite: when False, raise FileExistsError if the path exists.
    """
    try:
        text = json.dumps(document, allow_nan=False, sort_keys=True, indent=1)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"save: the model's configuration contains a value that JSON cannot "
            f"store ({err}). Every get_config() must return plain numbers, "
            "strings, lists and dicts"
        ) from None
    payload = text.encode("utf-8")
    if len(payload) > MAX_DOCUMENT_BYTES:
        raise ValueError(
            f"save: the model's JSON document has {len(payload)} bytes, more "
            f"than the format's limit of {MAX_DOCUMENT_BYTES}"
        )
    for name, array in arrays:
        _check_writable_array(name, array)

    if hasattr(destination, "write"):
        _write_zip(destination, payload, arrays)
        return
    path = os.fspath(destination)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(
            f"save: {path!r} exists and overwrite=False. Pass overwrite=True to "
            "replace it"
        )
    _write_atomically(path, lambda stream: _write_zip(stream, payload, arrays))


def _check_writable_array(name, array):
    if array.dtype.name not in ARRAY_DTYPES:
        raise TypeError(
            f"save: array {name!r} has dtype {array.dtype}, but the format stores "
            "float32 and float64 arrays only"
        )
    if array.nbytes > MAX_ARRAY_BYTES:
        raise ValueError(
            f"save: array {name!r} has {array.nbytes} bytes, more than the "
            f"format's limit of {MAX_ARRAY_BYTES} bytes per array"
        )


def _zip_info(name):
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _write_zip(stream, payload, arrays):
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(_zip_info(DOCUMENT_MEMBER), payload)
        for name, array in arrays:
            array = np.ascontiguousarray(array, dtype=ARRAY_DTYPES[array.dtype.name])
            # zipfile needs to know up front whether a member may pass the
            # 4 GiB limit of plain zip records.
            large = array.nbytes + _NPY_MAX_HEADER_BYTES > zipfile.ZIP64_LIMIT
            with archive.open(_zip_info(name), "w", force_zip64=large) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def _write_atomically(path, write):
    """Call ``write(stream)`` on a temporary file, then rename it over ``path``.

    On any exception the temporary file is removed. A process killed while
    writing leaves it behind, named ``.<name>.<random>.nnfast-tmp``, with the
    name cut to 50 characters.
    """
    directory, basename = os.path.split(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"cannot save to {os.fspath(path)!r}: the folder {directory!r} does not "
            "exist; create it first"
        )
    # Cut the name so that the temporary name stays under the usual 255-byte
    # limit of a file name, even with 4-byte UTF-8 characters.
    stem = basename[:50]
    while True:
        temp_path = os.path.join(
            directory, f".{stem}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            # 0o666 lets the process umask set the permissions, as for open().
            fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory):
    """Flush the folder entry so that the rename survives a power loss.

    Skipped where a folder cannot be opened as a file, as on Windows.
    """
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Reading ---------------------------------------------------------------------


class ArchiveReader:
    """Checked read access to one archive.

    Create one with :meth:`open_path` or :meth:`from_bytes`, and close it with
    :meth:`close` or a ``with`` block.
    """

    def __init__(self, stream, size, source):
        self.source = source
        self._stream = stream
        try:
            self._zip = zipfile.ZipFile(stream)
        except _ZIP_ERRORS as err:
            raise FormatError(
                source, f"not a zip archive, or truncated ({err})") from None
        try:
            self._members = self._check_members(size)
        except FormatError:
            self._zip.close()
            raise

    @classmethod
    def open_path(cls, filepath):
        """Open the file at ``filepath``.

        Errors of the operating system, such as FileNotFoundError, propagate.
        """
        path = os.fspath(filepath)
        # The reader owns the stream from here on and closes it in close().
        stream = open(path, "rb")  # noqa: SIM115
        try:
            size = os.fstat(stream.fileno()).st_size
            return cls(stream, size, describe_path(path))
        except BaseException:
            stream.close()
            raise

    @classmethod
    def from_bytes(cls, data, source="model bytes"):
        """Read an archive held in memory."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"model_from_bytes: expected bytes, got {type(data).__name__}"
            )
        data = bytes(data)
        return cls(io.BytesIO(data), len(data), source)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        self._zip.close()
        self._stream.close()

    def fail(self, reason):
        """Raise FormatError about this archive."""
        raise FormatError(self.source, reason)

    def _check_members(self, size):
        infos = self._zip.infolist()
        if len(infos) > MAX_MEMBERS:
            self.fail(f"{len(infos)} members, more than the limit of {MAX_MEMBERS}")
        members = {}
        total = 0
        for info in infos:
            name = info.filename
            if name in members:
                self.fail(f"member {name!r} appears twice")
            if info.flag_bits & 0x1:
                self.fail(f"member {name!r} is encrypted")
            if info.compress_type != zipfile.ZIP_STORED:
                self.fail(
                    f"member {name!r} is compressed (method {info.compress_type}), but "
                    "nnfast files store members uncompressed"
                )
            if info.file_size != info.compress_size:
                self.fail(
                    f"member {name!r} claims {info.file_size} bytes but stores "
                    f"{info.compress_size}"
                )
            limit = MAX_DOCUMENT_BYTES if name == DOCUMENT_MEMBER else (
                MAX_ARRAY_BYTES + _NPY_MAX_HEADER_BYTES)
            if info.file_size > limit:
                self.fail(
                    f"member {name!r} has {info.file_size} bytes, more than the "
                    f"limit of {limit}"
                )
            total += info.compress_size
            members[name] = info
        # In a valid file, stored members neither overlap nor extend past the
        # end, so their sizes sum to at most the file's size. This also
        # rejects archives whose entries all point at the same data.
        if total > size:
            self.fail(
                f"members claim {total} bytes in total but the archive has only "
                f"{size} bytes, so it is truncated or forged"
            )
        if DOCUMENT_MEMBER not in members:
            self.fail(f"missing member {DOCUMENT_MEMBER!r}")
        return members

    @property
    def member_names(self):
        return set(self._members)

    def _open_member(self, name):
        info = self._members.get(name)
        if info is None:
            self.fail(f"missing member {name!r}")
        return self._zip.open(info)

    @contextlib.contextmanager
    def _reading(self, name):
        """Turn errors of zipfile while reading member ``name`` into FormatError."""
        try:
            yield
        except FormatError:
            raise
        except _ZIP_ERRORS as err:
            self.fail(f"cannot read member {name!r} ({type(err).__name__}: {err})")

    def read_document(self):
        """Return the parsed JSON document, which must be a dict."""
        with self._reading(DOCUMENT_MEMBER), self._open_member(
                DOCUMENT_MEMBER) as member:
            payload = member.read(MAX_DOCUMENT_BYTES + 1)
        if len(payload) > MAX_DOCUMENT_BYTES:
            self.fail(f"member {DOCUMENT_MEMBER!r} is larger than "
                      f"{MAX_DOCUMENT_BYTES} bytes")
        try:
            document = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            self.fail(f"member {DOCUMENT_MEMBER!r} is not valid JSON ({err})")
        if not isinstance(document, dict):
            self.fail(f"member {DOCUMENT_MEMBER!r} must hold a JSON object, got "
                      f"{type(document).__name__}")
        return document

    def check_array_header(self, name, shape, dtype_name):
        """Check that member ``name`` is a .npy array of ``shape`` and dtype.

        Reads only the header, so nothing of the array's size is allocated.
        """
        with self._reading(name), self._open_member(name) as member:
            self._read_npy_header(member, name, shape, dtype_name)

    def read_array(self, name, shape, dtype_name, out=None):
        """Read member ``name`` into ``out`` (or a new array) and return it.

        ``out`` must be C-contiguous with ``shape``. On an error ``out`` may
        hold part of the data, so pass a staging array when that matters.
        """
        file_dtype = ARRAY_DTYPES[dtype_name]
        if out is None or out.dtype != file_dtype:
            target = np.empty(shape, dtype=file_dtype)
        else:
            target = out
        with self._reading(name), self._open_member(name) as member:
            self._read_npy_header(member, name, shape, dtype_name)
            self._read_exact(member, name, target)
        if out is not None and target is not out:
            out[...] = target
            return out
        return target

    def _read_npy_header(self, member, name, shape, dtype_name):
        """Read the .npy header of ``member`` and check it against the expectation."""
        info = self._members[name]
        readers = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}
        try:
            version = np.lib.format.read_magic(member)
            read_header = readers.get(version)
            if read_header is not None:
                header = read_header(member, max_header_size=_NPY_MAX_HEADER_BYTES)
        except (ValueError, TypeError, SyntaxError, RecursionError) as err:
            self.fail(f"member {name!r} is not a valid .npy array ({err})")
        if read_header is None:
            self.fail(f"member {name!r} has unsupported .npy version {version}")

        file_shape, fortran_order, dtype = header
        if dtype.hasobject:
            self.fail(f"member {name!r} has an object dtype, which would need "
                      "pickle. nnfast files contain float arrays only")
        expected_dtype = ARRAY_DTYPES[dtype_name]
        if dtype != expected_dtype:
            self.fail(f"member {name!r} has dtype {dtype.str}, expected "
                      f"{expected_dtype.str} ({dtype_name})")
        if tuple(file_shape) != tuple(shape):
            self.fail(f"member {name!r} has shape {tuple(file_shape)}, expected "
                      f"{tuple(shape)}")
        if fortran_order:
            self.fail(f"member {name!r} is in Fortran order, but nnfast files store "
                      "C order")

        # The data must fill the rest of the member exactly.
        data_bytes = math.prod(shape) * expected_dtype.itemsize
        header_bytes = member.tell()
        if header_bytes + data_bytes != info.file_size:
            self.fail(
                f"member {name!r} has {info.file_size - header_bytes} bytes of "
                f"data, expected {data_bytes} for shape {tuple(shape)}"
            )

    def _read_exact(self, member, name, target):
        view = memoryview(target.reshape(-1)).cast("B")
        filled = 0
        while filled < len(view):
            chunk = member.read(min(_READ_CHUNK_BYTES, len(view) - filled))
            if not chunk:
                self.fail(f"member {name!r} ends after {filled} of "
                          f"{len(view)} data bytes")
            view[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
        # Reading past the end makes zipfile verify the member's CRC-32.
        if member.read(1):
            self.fail(f"member {name!r} has data after its array")
