"""Fetching a file from a Hugging Face–style hub: resumable, hashed while it is written.
The HTTP client only: the download's states, progress and install are the downloads
service's (``models_hub/services/downloads.py``).

The hub answers ``HEAD /<repo>/resolve/<revision>/<file>`` with the file's metadata: a
redirect to its storage whose ``X-Linked-Etag`` is the sha256 of the content and whose
``X-Linked-Size`` is its size, plus ``X-Repo-Commit``. A mirror that does not send them
is asked through the tree API (``/api/models/<repo>/tree/<revision>``, ``lfs.oid``).

The bytes go to ``<file>.partial`` and through sha256 as they arrive, so no second pass
over the file is needed. A resumed download hashes the partial prefix once before it
asks for the rest with ``Range``: hashlib's state cannot be saved, and the file on disk
is the only record that is certainly consistent with itself after a crash. Reading the
prefix back runs at disk speed, far faster than fetching it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

from django.conf import settings
from django.template.defaultfilters import filesizeformat

from .gguf import looks_like_gguf, not_gguf_message
from .machine import disk_free

CHUNK = 4 * 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_OID = re.compile(r"^[0-9a-f]{40}$")
_MAX_REDIRECTS = 5
USER_AGENT = "LocalAI-model-hub/1"


class DownloadError(Exception):
    """Why a download cannot go on, in words for the admin."""


class DownloadCancelled(Exception):
    pass


@dataclass(frozen=True, slots=True)
class RemoteFile:
    url: str  # the resolve URL; its redirect is followed anew by each request
    size: int
    sha256: str
    commit: str
    # A small file kept in git itself, not in LFS (a config.json): the hub knows no sha256 of
    # it, only its git blob id, which ``git_blob_id`` checks instead. Then ``sha256`` is "".
    git_oid: str = ""


def git_blob_id(path: Path) -> str:
    """The id git gives the file's content (sha1 of ``blob <size>\\0`` and the bytes)."""
    content = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def resolve_url(repo: str, revision: str, file: str) -> str:
    return f"{settings.HF_ENDPOINT}/{quote(repo)}/resolve/{quote(revision, safe='')}/{quote(file)}"


def _connection(url: str) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise DownloadError(f"The hub sent the download to an unsupported address ({parts.scheme}:).")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.netloc, timeout=settings.HUB_TIMEOUT_S)
    path = parts.path or "/"
    return conn, f"{path}?{parts.query}" if parts.query else path


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    return (
        parts.scheme,
        (parts.hostname or "").lower(),
        parts.port or (443 if parts.scheme == "https" else 80),
    )


def token_allowed(url: str) -> bool:
    """Whether a request to ``url`` may carry the hub token: only to the hub's own scheme,
    host and port. Storage the hub redirects to gets signed URLs, and must not see it."""
    try:
        return _origin(url) == _origin(settings.HF_ENDPOINT)
    except ValueError:  # a port that is not a number
        return False


def redirect_target(current: str, location: str) -> str:
    """Where a redirect from ``current`` leads; one from https to http is refused, since
    whatever it fetched could be read and changed on the way."""
    target = urljoin(current, location)
    if urlsplit(current).scheme == "https" and urlsplit(target).scheme != "https":
        raise DownloadError(
            f"The hub redirected the download from https to an unencrypted address "
            f"({urlsplit(target).scheme}://{urlsplit(target).netloc}); it is not followed."
        )
    return target


def _request(
    method: str, url: str, *, token: str, headers: dict[str, str] | None = None, follow: bool = True
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, str]:
    """``method url``, following redirects when asked; the token only where ``token_allowed``."""
    for _ in range(_MAX_REDIRECTS + 1):
        conn, path = _connection(url)
        sent = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **(headers or {})}
        if token and token_allowed(url):
            sent["Authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, headers=sent)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ConnectionError(f"Could not reach {urlsplit(url).netloc}: {exc}") from exc
        if follow and response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
            # A redirect's body says nothing we need, and may never end: it is not read.
            conn.close()
            url = redirect_target(url, response.getheader("Location", ""))
            continue
        return conn, response, url
    raise DownloadError("The hub redirected the download too many times.")


def _explain_status(status: int, what: str, token: str) -> DownloadError:
    if status == 404:
        return DownloadError(
            f"{what} was not found on the hub (HTTP 404). Check the repository and file name."
        )
    if status in (401, 403):
        if token:
            return DownloadError(
                f"The hub refused access to {what} (HTTP {status}): the access token does not grant it. "
                "Accept the model's licence on the hub with the token's account, or use another token."
            )
        return DownloadError(
            f"{what} is gated or private (HTTP {status}): "
            "add a Hugging Face access token in the hub settings."
        )
    return DownloadError(f"The hub answered HTTP {status} for {what}.")


def _etag_sha256(value: str | None) -> str:
    tag = (value or "").removeprefix("W/").strip('"').lower()
    return tag if _SHA256.match(tag) else ""


def remote_file_inspect(
    *, repo: str, file: str, revision: str, token: str = "", git_ok: bool = False
) -> RemoteFile:
    """The file's size, sha256 and commit, from the hub's metadata (no content is fetched).
    ``git_ok``: a file kept in git rather than LFS may come with its git blob id instead."""
    url = resolve_url(repo, revision, file)
    what = f"{repo}/{file}"
    try:
        conn, response, _ = _request("HEAD", url, token=token, follow=False)
    except ConnectionError as exc:
        raise DownloadError(str(exc)) from exc
    with contextlib.closing(conn):
        response.read()
        if response.status >= 400:
            raise _explain_status(response.status, what, token)
        sha256 = _etag_sha256(response.getheader("X-Linked-Etag"))
        header_size = response.getheader("X-Linked-Size") or (
            response.getheader("Content-Length") if response.status < 300 else None
        )
        commit = response.getheader("X-Repo-Commit") or ""
    if sha256 and header_size:
        size, git_oid = int(header_size), ""
    else:
        sha256, size, git_oid = _tree_lookup(
            repo=repo, file=file, revision=commit or revision, token=token, git_ok=git_ok
        )
    return RemoteFile(url=url, size=size, sha256=sha256, commit=commit, git_oid=git_oid)


def _tree_lookup(*, repo: str, file: str, revision: str, token: str, git_ok: bool) -> tuple[str, int, str]:
    folder = file.rpartition("/")[0]
    url = f"{settings.HF_ENDPOINT}/api/models/{quote(repo)}/tree/{quote(revision, safe='')}/{quote(folder)}"
    try:
        conn, response, _ = _request("GET", url.rstrip("/"), token=token)
    except ConnectionError as exc:
        raise DownloadError(str(exc)) from exc
    with contextlib.closing(conn):
        body = response.read(16 * 1024 * 1024)
    if response.status >= 400:
        raise DownloadError(
            f"The hub gave no sha256 for {repo}/{file} (no X-Linked-Etag, tree API HTTP {response.status}): "
            "it cannot be verified, so it is not downloaded."
        )
    try:
        entries = json.loads(body)
        entry = next(e for e in entries if e.get("path") == file)
        lfs = entry.get("lfs") or {}
        sha256, size = (
            str(lfs.get("oid") or lfs.get("sha256") or "").lower(),
            int(lfs.get("size") or entry["size"]),
        )
        git_oid = str(entry.get("oid") or "").lower() if not lfs else ""
    except (ValueError, TypeError, KeyError, StopIteration, AttributeError):
        raise DownloadError(f"The hub's file list does not describe {repo}/{file}.") from None
    if git_ok and not lfs and _GIT_OID.match(git_oid):
        return "", size, git_oid
    if not _SHA256.match(sha256):
        raise DownloadError(
            f"The hub gave no sha256 for {repo}/{file}: it cannot be verified, so it is not downloaded."
        )
    return sha256, size, ""


def disk_space_check(*, folder: Path, needed: int) -> None:
    free = disk_free(folder)
    reserve = settings.HUB_DISK_RESERVE_MB * 1024 * 1024
    if needed + reserve > free:
        raise DownloadError(
            f"Not enough disk space: the model needs {filesizeformat(needed)} more and "
            f"{filesizeformat(free)} is free in {folder} ({filesizeformat(reserve)} is kept free, "
            "HUB_DISK_RESERVE_MB). Free some space or delete a model, then resume."
        )


class _Partial:
    """The partial file and the sha256 of what it holds, always in step."""

    def __init__(self, handle, expected_size: int, gguf: bool) -> None:
        self.handle = handle
        self.gguf = gguf  # the file must start as a GGUF file does
        self.done = os.fstat(handle.fileno()).st_size
        handle.seek(0)
        if self.done > expected_size or (self.done and gguf and not looks_like_gguf(handle.read(4))):
            self.done = 0  # not the start of this file
        handle.truncate(self.done)
        self.hasher = hashlib.sha256()
        handle.seek(0)
        remaining = self.done
        while remaining:
            block = handle.read(min(4 * CHUNK, remaining))
            self.hasher.update(block)
            remaining -= len(block)

    def restart(self) -> None:
        self.done, self.hasher = 0, hashlib.sha256()
        self.handle.seek(0)
        self.handle.truncate(0)


# Progress callback: (bytes received) -> whether to go on.
Progress = Callable[[int], bool]


def fetch(*, remote: RemoteFile, partial: Path, token: str, progress: Progress, gguf: bool = True) -> str:
    """Bring ``partial`` up to the whole remote file; returns its sha256 (hex). A ``gguf``
    file that does not start as one is refused at its first bytes.

    Continues an existing ``partial`` with ``Range``. A dropped connection is resumed
    where it broke, up to ``HUB_RETRIES`` times without progress in between.
    ``DownloadCancelled`` leaves the partial file for a later resume.
    """
    partial.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o644)
    with os.fdopen(fd, "r+b", buffering=0) as handle:
        # One writer per file, even across processes: a resume clicked while the cancelled
        # task is still finishing its last chunk waits for it.
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        state = _Partial(handle, remote.size, gguf)
        disk_space_check(folder=partial.parent, needed=remote.size - state.done)
        failures = 0
        while state.done < remote.size:
            before = state.done
            try:
                _fetch_rest(remote, state, token, progress)
            except ConnectionError as exc:
                failures = 1 if state.done > before else failures + 1
                if failures > settings.HUB_RETRIES:
                    raise DownloadError(
                        f"The connection kept dropping ({exc}). Resume to try again."
                    ) from exc
                time.sleep(min(0.25 * 2**failures, 8))
        os.fsync(handle.fileno())
    return state.hasher.hexdigest()


def _fetch_rest(remote: RemoteFile, state: _Partial, token: str, progress: Progress) -> None:
    headers = {"Range": f"bytes={state.done}-"} if state.done else {}
    conn, response, _ = _request("GET", remote.url, token=token, headers=headers)
    with contextlib.closing(conn):
        if response.status == 416:
            state.restart()  # the partial file does not fit what the server holds
            raise ConnectionError("the server refused the range")
        if response.status >= 400:
            raise _explain_status(response.status, remote.url.rsplit("/", 1)[-1], token)
        if state.done and response.status != 206:
            state.restart()  # the server ignored the range: its body starts at byte 0
        _stream(response, state, remote.size, progress)


_BUFFERS = 3
_FLUSH_EVERY = 64 * 1024 * 1024


def _stream(response, state: _Partial, total: int, progress: Progress) -> None:
    """Copy the body to the file through the hash. Receiving, hashing and writing each
    run on a thread of their own over a ring of buffers (all three release the GIL), so
    a download goes at the speed of its slowest part rather than of all of them added."""
    buffers = [bytearray(CHUNK) for _ in range(_BUFFERS)]
    in_flight: list[tuple[Future, Future] | None] = [None] * _BUFFERS
    first = state.done == 0
    interval = settings.HUB_PROGRESS_INTERVAL_S
    last_report = time.monotonic()
    # One thread each: the hash must see the chunks in order, and so must the file. A
    # third flushes what is written to disk as the download goes, so the fsync before
    # the file counts as downloaded has little left to do.
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="localai-hash") as hasher,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="localai-write") as writer,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="localai-flush") as flusher,
    ):
        flushing: Future | None = None
        flushed_at = state.done
        index = 0
        try:
            while state.done < total:
                _wait(in_flight[index])  # this buffer is free again
                in_flight[index] = None
                view = memoryview(buffers[index])[: min(CHUNK, total - state.done)]
                try:
                    count = _read_full(response, view)
                except (OSError, http.client.HTTPException) as exc:
                    raise ConnectionError(str(exc) or type(exc).__name__) from exc
                if count == 0:
                    raise ConnectionError("the server closed the connection early")
                if first:
                    first = False
                    if state.gguf and not looks_like_gguf(bytes(view[:4])):
                        raise DownloadError(not_gguf_message(bytes(view[:4])))
                chunk = view[:count]
                in_flight[index] = (
                    hasher.submit(state.hasher.update, chunk),
                    writer.submit(state.handle.write, chunk),
                )
                state.done += count
                index = (index + 1) % _BUFFERS
                if state.done - flushed_at >= _FLUSH_EVERY and (flushing is None or flushing.done()):
                    flushed_at = state.done
                    flushing = flusher.submit(os.fdatasync, state.handle.fileno())
                now = time.monotonic()
                if now - last_report >= interval:
                    last_report = now
                    if not progress(state.done):
                        raise DownloadCancelled
        finally:
            for pending in in_flight:
                _wait(pending)
    progress(state.done)


def _wait(pending: tuple[Future, Future] | None) -> None:
    if pending is not None:
        for future in pending:
            future.result()


def _read_full(response: http.client.HTTPResponse, view: memoryview) -> int:
    filled = 0
    while filled < len(view):
        count = response.readinto(view[filled:])
        if not count:
            break
        filled += count
    return filled
