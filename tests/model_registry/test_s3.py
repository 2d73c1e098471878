"""Model registry against a real S3 API: moto in server mode on a loopback port (never AWS)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from model_registry import s3 as registry
from model_registry.cli import fetch_command, publish_command
from model_registry.s3 import (
    ChecksumMismatchError,
    VersionExistsError,
    VersionNotFoundError,
    fetch,
    publish,
)

BIG = 9 * 1024 * 1024  # above boto3's 8 MiB multipart threshold


@pytest.fixture(autouse=True)
def _no_real_aws(fake_aws_env: None) -> None:
    """Every test here runs with fake credentials only (tests/conftest.py)."""


def _write_model(root: Path, seed: bytes = b"a") -> Path:
    """A small model directory: nested files, one big enough for multipart transfers."""
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "llama", "seed": seed.decode()}))
    (root / "manifest.json").write_text(json.dumps({"metrics": {"accuracy": 0.93}}))
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "tokenizer.json").write_text('{"vocab": {"yes": 1, "no": 2}}')
    (root / "model.safetensors").write_bytes(hashlib.sha256(seed).digest() * (BIG // 32 + 1))
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _keys(s3, bucket: str, prefix: str) -> set[str]:
    resp = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {o["Key"][len(prefix) :] for o in resp.get("Contents", [])}


def test_publish_fetch_round_trip(tmp_path: Path, s3, s3_endpoint: str, bucket: str) -> None:
    model = _write_model(tmp_path / "model")

    uri = publish(model, bucket, "paper-classifier", "v1", endpoint_url=s3_endpoint)

    assert uri == f"s3://{bucket}/models/paper-classifier/v1/"
    prefix = "models/paper-classifier/v1/"
    assert _keys(s3, bucket, prefix) == {
        "config.json",
        "manifest.json",
        "tokenizer/tokenizer.json",
        "model.safetensors",
        "checksums.json",
    }
    checksums = json.loads(
        s3.get_object(Bucket=bucket, Key=prefix + "checksums.json")["Body"].read()
    )
    assert checksums["name"] == "paper-classifier" and checksums["version"] == "v1"
    for rel, data in _tree(model).items():
        assert checksums["files"][rel] == {
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }

    dest = tmp_path / "serve" / "current"
    assert fetch(bucket, "paper-classifier", "v1", dest, endpoint_url=s3_endpoint) == dest

    fetched = _tree(dest)
    assert json.loads(fetched.pop("checksums.json")) == checksums
    assert fetched == _tree(model)
    # Nothing left behind beside dest (the temporary download directory is gone).
    assert [p.name for p in dest.parent.iterdir()] == ["current"]


def test_fetch_is_idempotent(
    tmp_path: Path, s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(_write_model(tmp_path / "model"), bucket, "m", "v1", endpoint_url=s3_endpoint)
    dest = tmp_path / "current"
    fetch(bucket, "m", "v1", dest, endpoint_url=s3_endpoint)
    inode = dest.stat().st_ino

    def no_download(*args, **kwargs):
        raise AssertionError("a verified dest must not be downloaded again")

    with monkeypatch.context() as m:
        m.setattr("boto3.s3.inject.download_file", no_download)
        assert fetch(bucket, "m", "v1", dest, endpoint_url=s3_endpoint) == dest
    assert dest.stat().st_ino == inode

    # A tampered local copy is no longer "already fetched": it is replaced by a good one.
    (dest / "config.json").write_text("{}")
    fetch(bucket, "m", "v1", dest, endpoint_url=s3_endpoint)
    assert json.loads((dest / "config.json").read_text())["model_type"] == "llama"


def test_corrupted_object_is_refused_and_dest_untouched(
    tmp_path: Path, s3, s3_endpoint: str, bucket: str
) -> None:
    publish(_write_model(tmp_path / "v1"), bucket, "m", "v1", endpoint_url=s3_endpoint)
    publish(_write_model(tmp_path / "v2", seed=b"b"), bucket, "m", "v2", endpoint_url=s3_endpoint)
    dest = tmp_path / "serve" / "current"
    fetch(bucket, "m", "v1", dest, endpoint_url=s3_endpoint)
    before = _tree(dest)

    # Flip the weights of v2 in the bucket (same size, different bytes).
    key = "models/m/v2/model.safetensors"
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[1000] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))

    with pytest.raises(ChecksumMismatchError) as exc:
        fetch(bucket, "m", "v2", dest, endpoint_url=s3_endpoint)
    assert exc.value.path == "model.safetensors"
    assert "sha256" in str(exc.value)
    assert _tree(dest) == before  # still the verified v1
    assert [p.name for p in dest.parent.iterdir()] == ["current"]

    fresh = tmp_path / "fresh" / "current"
    with pytest.raises(ChecksumMismatchError):
        fetch(bucket, "m", "v2", fresh, endpoint_url=s3_endpoint)
    assert not fresh.exists()
    assert list(fresh.parent.iterdir()) == []


def test_truncated_object_is_refused(tmp_path: Path, s3, s3_endpoint: str, bucket: str) -> None:
    publish(_write_model(tmp_path / "model"), bucket, "m", "v1", endpoint_url=s3_endpoint)
    s3.put_object(Bucket=bucket, Key="models/m/v1/config.json", Body=b"{}")
    with pytest.raises(ChecksumMismatchError, match=r"config\.json: size 2 != expected"):
        fetch(bucket, "m", "v1", tmp_path / "dest", endpoint_url=s3_endpoint)
    assert not (tmp_path / "dest").exists()


def test_missing_and_extra_files_are_errors(
    tmp_path: Path, s3, s3_endpoint: str, bucket: str
) -> None:
    publish(_write_model(tmp_path / "model"), bucket, "m", "v1", endpoint_url=s3_endpoint)
    s3.delete_object(Bucket=bucket, Key="models/m/v1/tokenizer/tokenizer.json")
    with pytest.raises(ChecksumMismatchError) as exc:
        fetch(bucket, "m", "v1", tmp_path / "a", endpoint_url=s3_endpoint)
    assert exc.value.path == "tokenizer/tokenizer.json"
    assert "missing" in str(exc.value)

    publish(_write_model(tmp_path / "model2"), bucket, "m", "v2", endpoint_url=s3_endpoint)
    s3.put_object(Bucket=bucket, Key="models/m/v2/extra.bin", Body=b"not in checksums")
    with pytest.raises(ChecksumMismatchError) as exc:
        fetch(bucket, "m", "v2", tmp_path / "b", endpoint_url=s3_endpoint)
    assert exc.value.path == "extra.bin"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_existing_version_is_not_overwritten(
    tmp_path: Path, s3, s3_endpoint: str, bucket: str
) -> None:
    model = _write_model(tmp_path / "model")
    publish(model, bucket, "m", "v1", endpoint_url=s3_endpoint)
    prefix = "models/m/v1/"
    checksums_before = s3.get_object(Bucket=bucket, Key=prefix + "checksums.json")["Body"].read()

    (model / "config.json").write_text('{"changed": true}')
    (model / "new-file.txt").write_text("new")
    with pytest.raises(VersionExistsError, match="already published"):
        publish(model, bucket, "m", "v1", endpoint_url=s3_endpoint)

    assert s3.get_object(Bucket=bucket, Key=prefix + "checksums.json")["Body"].read() == (
        checksums_before
    )
    config = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "config.json")["Body"].read())
    assert config["model_type"] == "llama"
    assert "new-file.txt" not in _keys(s3, bucket, prefix)


def test_concurrent_publish_loses_on_conditional_write(
    tmp_path: Path, s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two publishers that both passed the existence check: S3's If-None-Match decides."""
    model = _write_model(tmp_path / "model")
    publish(model, bucket, "m", "v1", endpoint_url=s3_endpoint)
    monkeypatch.setattr(registry, "_object_exists", lambda *a, **k: False)
    with pytest.raises(VersionExistsError, match="concurrently"):
        publish(model, bucket, "m", "v1", endpoint_url=s3_endpoint)


def test_unpublished_version_and_bad_names(
    tmp_path: Path, s3, s3_endpoint: str, bucket: str
) -> None:
    # Files without checksums.json are an interrupted publish, not a version.
    s3.put_object(Bucket=bucket, Key="models/m/v9/config.json", Body=b"{}")
    with pytest.raises(VersionNotFoundError):
        fetch(bucket, "m", "v9", tmp_path / "dest", endpoint_url=s3_endpoint)
    assert not registry.is_published(bucket, "m", "v9", endpoint_url=s3_endpoint)
    for bad in ("../etc", "a/b", "", "."):
        with pytest.raises(ValueError):
            registry.version_prefix("m", bad)


def test_checksums_with_unsafe_paths_are_refused(
    tmp_path: Path, s3, s3_endpoint: str, bucket: str
) -> None:
    doc = {"format": 1, "files": {"../escape.txt": {"sha256": "0" * 64, "size": 1}}}
    s3.put_object(Bucket=bucket, Key="models/m/v1/checksums.json", Body=json.dumps(doc).encode())
    with pytest.raises(ChecksumMismatchError, match="unsafe path"):
        fetch(bucket, "m", "v1", tmp_path / "dest" / "current", endpoint_url=s3_endpoint)
    assert not (tmp_path / "dest" / "escape.txt").exists()


def test_cli_commands_take_env_defaults(
    tmp_path: Path, s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = typer.Typer()
    app.command("publish")(publish_command)
    app.command("fetch-model")(fetch_command)
    runner = CliRunner()
    model = _write_model(tmp_path / "model")
    monkeypatch.setenv("MODEL_BUCKET", bucket)
    monkeypatch.setenv("MODEL_NAME", "paper-classifier")
    monkeypatch.setenv("MODEL_VERSION", "2024.1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # boto3's own endpoint override

    result = runner.invoke(app, ["publish", str(model)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"s3://{bucket}/models/paper-classifier/2024.1/"

    again = runner.invoke(app, ["publish", str(model)])
    assert again.exit_code == 1
    assert "already published" in again.output

    dest = tmp_path / "models" / "current"
    fetched = runner.invoke(app, ["fetch-model", "--dest", str(dest)])
    assert fetched.exit_code == 0, fetched.output
    assert fetched.output.strip() == str(dest)
    assert (dest / "checksums.json").is_file()
    assert (dest / "model.safetensors").read_bytes() == (model / "model.safetensors").read_bytes()

    missing = runner.invoke(app, ["fetch-model", "--version", "nope", "--dest", str(dest)])
    assert missing.exit_code == 1
    assert "not published" in missing.output
