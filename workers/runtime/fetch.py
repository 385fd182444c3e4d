"""The video a job analyses, as a local file: its upload, or what its source URL serves.

An upload in the local storage is read in place; one in object storage is streamed down to this worker's scratch
space and checked against the SHA-256 the API computed (:meth:`vad.storage.Storage.fetch`). A source URL
(:mod:`vad.net.rules`) is fetched like an upload is received: at most ``max_upload_mb``, hashed as it arrives, its
first bytes sniffed so a non-video is refused before the rest is read, with a connect timeout and a stall timeout
(``source_timeout_s``). An https source is fetched like a callback is sent (:mod:`vad.net.pinned`): to
the addresses the policy checked, never a second resolution of the name, the host name in ``Host`` and TLS; each
redirect is checked like the first URL before it is followed, at most :data:`vad.net.rules.MAX_REDIRECTS`. Fetched
files are removed when the job ends.
"""

from __future__ import annotations

import hashlib
import http.client
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

from vad.exceptions import ContentRefused, SourceRefused, SourceUnavailable, StorageError, StorageUnavailable
from vad.net.pinned import pinned_connection
from vad.net.redact import redact_url
from vad.net.rules import MAX_REDIRECTS, check_s3_source, check_source, resolve_source
from vad.settings import QueueSettings
from vad.storage import READ_CHUNK, CheckedStream, Scratch, make_s3_client, s3_errors

REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class FetchedVideo:
    """A fetched source: where it lies, and what an upload of the same bytes would have recorded."""

    path: Path
    size: int
    sha256: str
    container: str


def _copy(read: Callable[[int], bytes], path: Path, max_bytes: int, name: str) -> FetchedVideo:
    """Write a source to ``path`` through the checked byte stream, as an upload is received."""
    check = CheckedStream(max_bytes, f"the source {name}")
    try:
        with open(path, "wb") as out:
            while chunk := read(READ_CHUNK):
                out.write(check.feed(chunk))
            out.write(check.finish())
    except ContentRefused as exc:  # too large, not a video, empty: fetching again cannot help
        raise SourceRefused(str(exc)) from exc
    assert check.container is not None
    return FetchedVideo(path, check.size, check.sha256, check.container)


@contextmanager
def fetch_source(url: str, settings: QueueSettings, scratch: Scratch,
                 tls: ssl.SSLContext | None = None) -> Iterator[FetchedVideo]:
    """Fetch the source ``url`` into ``scratch`` under the deployment's policy; the file is removed afterwards.

    Raises:
        SourceRefused: The URL, a redirect or what it serves is refused (permanent).
        SourceUnavailable: A timeout, a connection error or a 5xx answer (retried).
        StorageUnavailable: An s3 source's store does not answer, or scratch space is short (retried).
    """
    check_source(url, settings, resolve=False)
    name = f"source-{hashlib.sha256(url.encode()).hexdigest()[:16]}"
    with scratch.file(name) as path:
        if url.lower().startswith("s3://"):
            yield _fetch_s3(url, settings, path)
        else:
            yield _fetch_https(url, settings, path, tls)


def _fetch_s3(url: str, settings: QueueSettings, path: Path) -> FetchedVideo:
    bucket, key = check_s3_source(url, settings.source_buckets)
    endpoint = settings.storage_endpoint_url or "AWS S3"
    client = make_s3_client(settings.storage_endpoint_url, settings.source_timeout_s, settings.storage_retries)
    try:
        with s3_errors("read the source", endpoint):
            answer = client.get_object(Bucket=bucket, Key=key)
            body = answer["Body"]
            try:
                if int(answer.get("ContentLength") or 0) > settings.max_upload_bytes:
                    raise SourceRefused(f"the source {redact_url(url)} is {answer['ContentLength']} bytes, more than "
                                        f"the limit of {settings.max_upload_bytes}")
                return _copy(body.read, path, settings.max_upload_bytes, redact_url(url))
            finally:
                body.close()
    except StorageUnavailable:
        raise
    except StorageError as exc:  # no such object, access denied: asking again cannot help
        raise SourceRefused(f"the source {redact_url(url)} cannot be read: {exc}") from exc


def _fetch_https(url: str, settings: QueueSettings, path: Path, tls: ssl.SSLContext | None) -> FetchedVideo:
    connection, response = _open(url, settings, tls)
    try:
        length = response.getheader("Content-Length")
        if length and length.isdigit() and int(length) > settings.max_upload_bytes:
            raise SourceRefused(f"the source {redact_url(url)} is {length} bytes, more than the limit of "
                                f"{settings.max_upload_bytes}")
        try:
            return _copy(response.read1, path, settings.max_upload_bytes, redact_url(url))  # what has arrived
        except (OSError, http.client.HTTPException) as exc:  # a stall past the timeout, a connection cut
            raise SourceUnavailable(f"reading the source {redact_url(url)} failed: {type(exc).__name__}: {exc}") \
                from exc
    finally:
        connection.close()


def _open(url: str, settings: QueueSettings,
          tls: ssl.SSLContext | None) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """GET ``url``, following redirects each checked like the first URL; the connection and its 2xx answer."""
    for _ in range(MAX_REDIRECTS + 1):
        target = resolve_source(url, settings)
        connection = pinned_connection(target, settings.source_timeout_s, tls)
        try:
            connection.request("GET", target.target, headers={"User-Agent": "dsanet-vad",
                                                               "Accept-Encoding": "identity"})
            response = connection.getresponse()
        except ssl.SSLCertVerificationError as exc:
            connection.close()
            raise SourceRefused(f"the source {redact_url(url)}: certificate refused ({exc.verify_message})") from exc
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise SourceUnavailable(f"the source {redact_url(url)} could not be fetched: {type(exc).__name__}: "
                                    f"{exc}") from exc
        if 200 <= response.status < 300:
            return connection, response
        location = response.getheader("Location")
        connection.close()
        if response.status in REDIRECTS and location:
            url = urljoin(url, location)  # checked at the top of the loop, like the first URL
            continue
        if response.status >= 500 or response.status == 429:
            raise SourceUnavailable(f"the source {redact_url(url)} answered {response.status}; retrying later")
        raise SourceRefused(f"the source {redact_url(url)} answered {response.status} {response.reason}")
    raise SourceRefused(f"the source {redact_url(url)} redirects more than {MAX_REDIRECTS} times")
