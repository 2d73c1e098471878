"""A corpus run's output and input on S3 (moto's server on loopback, never AWS) and on disk:
parts appear whole, the keys written are what a resumed run skips, the input is checked."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inference.bulk import InputChanged
from inference.corpus.run import local_copy
from inference.corpus.store import PartStore

pytestmark = pytest.mark.usefixtures("fake_aws_env")


def _rows(keys: list[str]) -> list[dict]:
    return [{"key": k, "id": k, "label": "cancer", "probability": 0.9,
             "cancer_probability": 0.9, "model": "v1", "prompt_version": "p"} for k in keys]


def _uri(bucket: str, endpoint: str, prefix: str) -> str:
    host = endpoint.removeprefix("http://")
    return f"s3://{bucket}/{prefix}?endpoint_override={host}&scheme=http&region=us-east-1"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_parts_are_the_resume_point(where: str, tmp_path: Path, bucket: str,
                                    s3_endpoint: str, s3) -> None:
    out = str(tmp_path / "out") if where == "local" else _uri(bucket, s3_endpoint, "corpus/out")
    store = PartStore(out, "v1")
    store.check_input("abc")
    assert store.done_keys() == set()
    store.write(_rows(["a", "b"]))
    store.write(_rows(["c"]))
    assert store.write([]) is None
    again = PartStore(out, "v1")  # a resumed run
    assert again.done_keys() == {"a", "b", "c"}
    again.check_input("abc")
    with pytest.raises(InputChanged, match="input changed"):
        again.check_input("def")
    assert sorted(again.read()["key"].to_pylist()) == ["a", "b", "c"]
    assert PartStore(out, "v2").done_keys() == set()  # another model starts from nothing
    if where == "s3":
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
        assert sum(k.startswith("corpus/out/model=v1/part-") for k in keys) == 2
    else:
        assert not list((tmp_path / "out" / "model=v1").glob(".tmp-*"))  # renamed whole


def test_an_s3_source_is_read_from_a_local_copy(tmp_path: Path, bucket: str,
                                                s3_endpoint: str, s3) -> None:
    table = pa.table({"id": ["1"], "title": ["A tumour"], "abstract": ["Text."]})
    local = tmp_path / "papers.parquet"
    pq.write_table(table, local)
    s3.upload_file(str(local), bucket, "corpus/input/papers.parquet")
    with local_copy(_uri(bucket, s3_endpoint, "corpus/input")) as path:
        assert pq.read_table(path / "papers.parquet").equals(table)
    with local_copy(str(local)) as path:
        assert path == local
