"""Model registry on S3: immutable, checksummed model versions.

Layout: ``s3://BUCKET/models/NAME/VERSION/{...model files, manifest.json, checksums.json}``.

``checksums.json`` lists every other file of the version (relative POSIX path -> sha256 and
size). It is written last, so its presence marks a version as complete and published: a
version prefix that has one is never written again. ``fetch`` trusts nothing it downloads
until every file matches that list, and only then moves the directory into place.

Only the standard library, boto3 and tqdm are imported here (no torch): the engine's init
container runs ``fetch`` through ``python -m inference fetch-model`` (`model_registry.cli`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
from botocore.exceptions import ClientError
from tqdm import tqdm

MODELS_PREFIX = "models"
CHECKSUMS_FILE = "checksums.json"
CHECKSUMS_FORMAT = 1
_CHUNK = 1024 * 1024
# Same rule as k8s/rollout.sh: a segment becomes an S3 key part and a ConfigMap value.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


__all__ = [
    "CHECKSUMS_FILE",
    "ChecksumMismatchError",
    "RegistryError",
    "VersionExistsError",
    "VersionNotFoundError",
    "compute_checksums",
    "fetch",
    "is_published",
    "publish",
    "verify_dir",
    "version_prefix",
]


class RegistryError(Exception):
    """Base class of the registry's errors."""


class VersionExistsError(RegistryError):
    """The version was already published; published versions are immutable."""


class VersionNotFoundError(RegistryError):
    """No published version (no checksums.json) under that name and version."""


class ChecksumMismatchError(RegistryError):
    """A file of a version is corrupted, missing or unexpected."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _check_segment(kind: str, value: str) -> str:
    if not _SEGMENT.match(value) or value in {".", ".."}:
        raise ValueError(
            f"invalid model {kind} {value!r}: 1-64 letters, digits, '.', '_', '-' "
            "(no '/'), starting with a letter or digit"
        )
    return value


def version_prefix(name: str, version: str) -> str:
    """``models/NAME/VERSION/`` (with the trailing slash)."""
    return f"{MODELS_PREFIX}/{_check_segment('name', name)}/{_check_segment('version', version)}/"


def _client(endpoint_url: str | None) -> Any:
    # With endpoint_url=None boto3 still honours AWS_ENDPOINT_URL(_S3) from the environment.
    return boto3.client("s3", endpoint_url=endpoint_url)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _safe_relpath(rel: str) -> str:
    """Refuse paths that would escape the version directory or are not in normal form
    (absolute, '..', '.', '//', backslashes)."""
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or "\\" in rel or p.as_posix() != rel or ".." in p.parts:
        raise ChecksumMismatchError(rel, "unsafe path in checksums.json")
    if rel == CHECKSUMS_FILE:
        raise ChecksumMismatchError(rel, "checksums.json cannot list itself")
    return rel


def _model_files(model_dir: Path) -> list[str]:
    """Relative POSIX paths of the files to publish (checksums.json of an earlier fetch is
    regenerated, never copied)."""
    files = sorted(
        p.relative_to(model_dir).as_posix()
        for p in model_dir.rglob("*")
        if p.is_file() and p.relative_to(model_dir).as_posix() != CHECKSUMS_FILE
    )
    if not files:
        raise RegistryError(f"{model_dir} holds no files to publish")
    return files


def compute_checksums(model_dir: Path, name: str, version: str) -> dict[str, Any]:
    """The checksums.json document of a local model directory."""
    files = {
        rel: {"sha256": sha256_file(model_dir / rel), "size": (model_dir / rel).stat().st_size}
        for rel in _model_files(model_dir)
    }
    return {"format": CHECKSUMS_FORMAT, "name": name, "version": version, "files": files}


def _error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _object_exists(client: Any, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if _status(err) == 404 or _error_code(err) in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return True


def is_published(bucket: str, name: str, version: str, *, endpoint_url: str | None = None) -> bool:
    """True when the version has its checksums.json (published and complete)."""
    key = version_prefix(name, version) + CHECKSUMS_FILE
    return _object_exists(_client(endpoint_url), bucket, key)


def _put_checksums_if_absent(client: Any, bucket: str, key: str, body: bytes) -> None:
    """Write checksums.json only if no other publisher did (S3 conditional write)."""
    try:
        client.put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="application/json", IfNoneMatch="*"
        )
    except ClientError as err:
        code = _error_code(err)
        if code in {"PreconditionFailed", "ConditionalRequestConflict"} or _status(err) in {
            409,
            412,
        }:
            raise VersionExistsError(f"s3://{bucket}/{key} was written concurrently") from err
        if code not in {"NotImplemented", "InvalidArgument"}:
            raise
        # An S3-compatible store without conditional writes: the prior check is all we have.
        if _object_exists(client, bucket, key):
            raise VersionExistsError(f"s3://{bucket}/{key} already exists") from err
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def publish(
    model_dir: Path,
    bucket: str,
    name: str,
    version: str,
    *,
    endpoint_url: str | None = None,
) -> str:
    """Upload every file under ``model_dir`` to ``s3://bucket/models/name/version/`` and then
    its checksums.json; return that URI.

    Raises VersionExistsError when the version is already published (checked before
    uploading, and again atomically by the conditional write of checksums.json). An
    interrupted publish leaves no checksums.json, so it can simply be run again.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise RegistryError(f"{model_dir} is not a directory")
    prefix = version_prefix(name, version)
    uri = f"s3://{bucket}/{prefix}"
    client = _client(endpoint_url)
    checksums_key = prefix + CHECKSUMS_FILE
    if _object_exists(client, bucket, checksums_key):
        raise VersionExistsError(f"{uri} is already published; versions are immutable")

    checksums = compute_checksums(model_dir, name, version)
    progress = tqdm(checksums["files"], desc=f"publish {name}/{version}", unit="file", disable=None)
    for rel in progress:
        client.upload_file(str(model_dir / rel), bucket, prefix + rel)
    body = json.dumps(checksums, indent=2, sort_keys=True).encode()
    _put_checksums_if_absent(client, bucket, checksums_key, body)
    return uri


def _load_checksums(raw: bytes, where: str) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads(raw)
        files = doc["files"]
        if not isinstance(files, dict) or not files:
            raise ValueError("no files")
        for rel, entry in files.items():
            _safe_relpath(rel)
            if not isinstance(entry["sha256"], str) or not isinstance(entry["size"], int):
                raise ValueError(f"bad entry for {rel}")
    except ChecksumMismatchError:
        raise
    except (ValueError, KeyError, TypeError) as err:
        raise ChecksumMismatchError(where, f"malformed checksums.json ({err})") from err
    return files


def verify_dir(directory: Path, files: dict[str, dict[str, Any]]) -> None:
    """Check that ``directory`` holds exactly ``files`` (plus checksums.json) with matching
    sizes and sha256; raise ChecksumMismatchError naming the first bad file."""
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    present.discard(CHECKSUMS_FILE)
    for rel in sorted(set(files) - present):
        raise ChecksumMismatchError(rel, "missing")
    for rel in sorted(present - set(files)):
        raise ChecksumMismatchError(rel, "not listed in checksums.json")
    for rel, entry in sorted(files.items()):
        path = directory / rel
        size = path.stat().st_size
        if size != entry["size"]:
            raise ChecksumMismatchError(rel, f"size {size} != expected {entry['size']}")
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise ChecksumMismatchError(rel, f"sha256 {digest} != expected {entry['sha256']}")


def _already_fetched(dest: Path, raw_checksums: bytes) -> bool:
    local = dest / CHECKSUMS_FILE
    if not local.is_file():
        return False
    try:
        if json.loads(local.read_bytes()) != json.loads(raw_checksums):
            return False
        verify_dir(dest, _load_checksums(raw_checksums, str(local)))
    except (ChecksumMismatchError, ValueError, OSError):
        return False
    return True


def _move_into_place(tmp: Path, dest: Path) -> None:
    """Replace ``dest`` by ``tmp`` (same filesystem): a rename where possible."""
    if not dest.exists():
        os.replace(tmp, dest)
        return
    if dest.is_dir() and not any(dest.iterdir()):
        try:
            dest.rmdir()
        except OSError:
            # An empty mount point cannot be removed: move the entries in one by one.
            for entry in tmp.iterdir():
                os.replace(entry, dest / entry.name)
            tmp.rmdir()
            return
        os.replace(tmp, dest)
        return
    # dest holds something else (another version, a broken fetch): swap, then delete the old.
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    old.rmdir()
    os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except OSError:
        os.replace(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


def fetch(
    bucket: str,
    name: str,
    version: str,
    dest: Path,
    *,
    endpoint_url: str | None = None,
) -> Path:
    """Download a published version into ``dest`` and return ``dest``.

    Files land in a temporary directory beside ``dest``; every size and sha256 is checked
    against checksums.json (missing and unlisted files are errors too) and only a fully
    verified directory is renamed to ``dest``. On any error ``dest`` is left as it was.
    When ``dest`` already holds this verified version nothing is downloaded.
    """
    dest = Path(dest)
    prefix = version_prefix(name, version)
    uri = f"s3://{bucket}/{prefix}"
    client = _client(endpoint_url)
    try:
        raw = client.get_object(Bucket=bucket, Key=prefix + CHECKSUMS_FILE)["Body"].read()
    except ClientError as err:
        if _status(err) == 404 or _error_code(err) in {"NoSuchKey", "404", "NotFound"}:
            raise VersionNotFoundError(f"{uri} is not published (no {CHECKSUMS_FILE})") from err
        raise
    files = _load_checksums(raw, uri + CHECKSUMS_FILE)
    if _already_fetched(dest, raw):
        return dest

    remote: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) :]
            if rel and not rel.endswith("/") and rel != CHECKSUMS_FILE:
                remote.add(rel)
    for rel in sorted(set(files) - remote):
        raise ChecksumMismatchError(rel, f"listed in checksums.json but missing from {uri}")
    for rel in sorted(remote - set(files)):
        raise ChecksumMismatchError(rel, f"present in {uri} but not listed in checksums.json")

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        progress = tqdm(sorted(files), desc=f"fetch {name}/{version}", unit="file", disable=None)
        for rel in progress:
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, prefix + rel, str(target))
        verify_dir(tmp, files)
        (tmp / CHECKSUMS_FILE).write_bytes(raw)
        _move_into_place(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
