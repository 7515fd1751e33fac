"""Download data files into a local cache and verify them by SHA-256."""

import contextlib
import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
import uuid

logger = logging.getLogger(__name__)

_CHUNK_SIZE = 1 << 20


class DatasetError(ValueError):
    """A data file that is corrupt, truncated, wrongly sized or fails its checksum.

    The message names the file or URL and states what is wrong with it.
    """


class DownloadError(OSError):
    """A download that failed: HTTP error status, network error or cut transfer."""


def sha256_file(path):
    """Return the hex SHA-256 digest of the bytes of the file at ``path``."""
    hasher = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK_SIZE), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def download_file(url, path, *, sha256, size=None, timeout=60.0):
    """Download ``url`` to ``path``, keeping the file only if its SHA-256 matches.

    The data goes to a temporary file in the folder of ``path``. That file is
    renamed to ``path`` only after its size and digest match, so ``path`` never
    contains a partial or unverified file. On any error the temporary file is
    removed and ``path`` is left as it was.

    Args:
        url: The URL to fetch (``http``, ``https`` or ``file``).
        path: The destination file. Its folder is created if missing.
        sha256: The expected hex SHA-256 digest of the file.
        size: The expected size in bytes, or None to skip the size check. A
            wrong size is reported as soon as the server announces it.
        timeout: The timeout in seconds for connecting and for each read.

    Returns:
        ``path``.

    Raises:
        DownloadError: The server returned an error status, the network
            failed, or the connection closed before the announced length.
        DatasetError: The file has the wrong size or the wrong SHA-256.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary_path = os.path.join(
        folder, f"{os.path.basename(path)}.{uuid.uuid4().hex}.part"
    )
    # Unlike tempfile.mkstemp (mode 0o600), mode 0o666 lets the umask set the
    # permissions, as for any file the user creates.
    fd = os.open(temporary_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    logger.info("downloading %s to %s", url, path)
    try:
        hasher = hashlib.sha256()
        received = 0
        chunks = _iter_response(url, size, timeout)
        with os.fdopen(fd, "wb") as file, contextlib.closing(chunks):
            for chunk in chunks:
                received += len(chunk)
                if size is not None and received > size:
                    raise DatasetError(
                        f"{url}: received more than the expected {size} bytes, "
                        "so the server sends a different file"
                    )
                hasher.update(chunk)
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())

        if size is not None and received != size:
            raise DatasetError(
                f"{url}: received {received} bytes, expected {size}. "
                "The server sends a truncated or different file."
            )
        actual = hasher.hexdigest()
        if actual != sha256:
            raise DatasetError(
                f"{url}: SHA-256 mismatch, expected {sha256}, got {actual}. "
                "The server sends a corrupt or different file."
            )
        os.replace(temporary_path, path)
    except BaseException:
        _remove_if_present(temporary_path)
        raise
    logger.info("downloaded and verified %s (%d bytes)", path, received)
    return path


def get_file(fname, origin, *, sha256, cache_dir, size=None, timeout=60.0):
    """Return the path of ``fname`` in ``cache_dir``, downloading it if absent.

    A file already in the cache is used without network access, after its
    SHA-256 is checked. A missing file is fetched from ``origin`` with
    :func:`download_file`.

    Args:
        fname: The file name inside ``cache_dir``.
        origin: The URL to download the file from.
        sha256: The expected hex SHA-256 digest of the file.
        cache_dir: The folder that contains the file. It is created if missing.
        size: The expected size in bytes, or None to skip the size check.
        timeout: The timeout in seconds for connecting and for each read.

    Returns:
        The path of the verified file.

    Raises:
        DatasetError: The cached or downloaded file fails its checks. A
            corrupt cached file is kept, and the message tells the user to
            delete it.
        DownloadError: The download failed.
    """
    path = os.path.join(cache_dir, fname)
    if not os.path.exists(path):
        return download_file(origin, path, sha256=sha256, size=size, timeout=timeout)

    actual = sha256_file(path)
    if actual != sha256:
        raise DatasetError(
            f"{path}: SHA-256 mismatch, expected {sha256}, got {actual}. "
            "The cached file is corrupt. Delete it to download it again."
        )
    logger.debug("using cached %s", path)
    return path


def _iter_response(url, size, timeout):
    """Yield the body of a GET request on ``url`` in chunks.

    Network errors become DownloadError. A Content-Length that differs from
    ``size`` raises DatasetError before the body is read.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            announced = _content_length(response)
            if announced is not None and size is not None and announced != size:
                raise DatasetError(
                    f"{url}: the server announces {announced} bytes, expected "
                    f"{size}, so it sends a different file"
                )

            received = 0
            while True:
                chunk = response.read(_CHUNK_SIZE)
                if not chunk:
                    break
                received += len(chunk)
                yield chunk
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"failed to download {url}: HTTP {exc.code} {exc.reason}"
        ) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"failed to download {url}: {exc}") from exc

    # HTTPResponse.read(amt) in CPython 3.11 returns b"" without error when the
    # connection closes before Content-Length bytes, so the length is checked here.
    if announced is not None and received != announced:
        raise DownloadError(
            f"failed to download {url}: the connection closed after "
            f"{received} of {announced} bytes. Try again."
        )


def _content_length(response):
    """Return the Content-Length of a response as an int, or None if absent."""
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _remove_if_present(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
