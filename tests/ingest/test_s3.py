"""The S3 loader against moto's S3 server (a stand-in for MinIO: same REST API, run on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from ingest.worker import ingest_source
from rag.config import Settings
from rag.embedders.hashing import HashingEmbedder
from rag.stores.memory import MemoryStore
from tests.ingest.conftest import DOCS

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint: str) -> Iterator[Any]:
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    client.create_bucket(Bucket="lake")
    yield client
    for obj in client.list_objects_v2(Bucket="lake").get("Contents", []):
        client.delete_object(Bucket="lake", Key=obj["Key"])
    client.delete_bucket(Bucket="lake")


@pytest.fixture
def s3_settings(settings: Settings, endpoint: str) -> Settings:
    ingest = settings.ingest.model_copy(
        update={
            "s3_endpoint_url": endpoint,
            "s3_access_key_id": SecretStr("k"),
            "s3_secret_access_key": SecretStr("s"),
            "default_groups": [],
        }
    )
    return settings.model_copy(update={"ingest": ingest})


def _upload_sample(s3: Any) -> int:
    n = 0
    for path in sorted(DOCS.rglob("*")):
        if path.is_file():
            s3.put_object(Bucket="lake", Key=f"handbook/{path.relative_to(DOCS).as_posix()}", Body=path.read_bytes())
            n += not path.name.startswith(".")
    s3.put_object(Bucket="lake", Key="handbook-old/ignored.md", Body=b"# Not under the prefix\n\ntext")
    return n


async def test_bucket_prefix_ingests_with_acl_files_tags_and_a_deny_default(s3: Any, s3_settings: Settings) -> None:
    _upload_sample(s3)
    s3.put_object(
        Bucket="lake", Key="handbook/tagged.md", Body=b"# Tagged\n\nOnly for finance.",
        Tagging="rag-groups=finance%20leads",
    )  # fmt: skip
    s3.put_object(Bucket="lake", Key="handbook/unlabelled/x.md", Body=b"# X\n\nNobody may read this yet.")
    store, embedder = MemoryStore("docs"), HashingEmbedder(64)
    report = await ingest_source(s3_settings, store, embedder, "s3://lake/handbook/")
    assert report.failed == () and report.added == 14
    chunks = list(store._opened().chunks.values())
    groups = {c.source: c.groups for c in chunks}
    assert groups["s3://lake/handbook/tagged.md"] == ("finance", "leads")
    assert groups["s3://lake/handbook/unlabelled/x.md"] == ()  # deny default: nobody
    assert all(g == ("oncall",) for s, g in groups.items() if "/restricted/" in s)
    assert not any("handbook-old" in s for s in groups)

    # Unchanged: nothing embedded. Retag one object: its groups change without re-embedding... or with it,
    # depending on the store; either way the result is right. Delete one: its chunks go.
    s3.put_object_tagging(
        Bucket="lake", Key="handbook/unlabelled/x.md", Tagging={"TagSet": [{"Key": "rag-groups", "Value": "staff"}]}
    )
    s3.delete_object(Bucket="lake", Key="handbook/tagged.md")
    again = await ingest_source(s3_settings, store, embedder, "s3://lake/handbook")
    assert again.deleted == 1 and again.unchanged == 12 and again.regrouped + again.updated == 1
    groups = {c.source: c.groups for c in store._opened().chunks.values()}
    assert groups["s3://lake/handbook/unlabelled/x.md"] == ("staff",)
    assert "s3://lake/handbook/tagged.md" not in groups


async def test_missing_bucket_is_an_invalid_request(s3: Any, s3_settings: Settings) -> None:
    from rag.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="bucket not found"):
        await ingest_source(s3_settings, MemoryStore("docs"), HashingEmbedder(64), "s3://no-such-bucket/x")


async def test_keys_with_dot_or_empty_segments_are_refused_and_hidden_objects_reported(
    s3: Any, s3_settings: Settings
) -> None:
    s3.put_object(Bucket="lake", Key="handbook/secret/.rag-acl.yaml", Body=b"groups: [finance]\n")
    s3.put_object(Bucket="lake", Key="handbook/secret/pay.md", Body=b"# Pay\n\nPayroll ledger.")
    body = b"# Pay\n\nPayroll ledger, or is it?"
    for key in ("handbook/secret/../pay.md", "handbook/./pay.md", "handbook//pay.md", "handbook/a//pay.md"):
        s3.put_object(Bucket="lake", Key=key, Body=body)
    s3.put_object(Bucket="lake", Key="handbook/../other/x.md", Body=body)
    s3.put_object(Bucket="lake", Key="handbook/x/../.rag-acl.yaml", Body=b"groups: [public]\n")
    for key in ("handbook/.git/a.md", "handbook/.git/b/c.md", "handbook/notes/.draft.md"):
        s3.put_object(Bucket="lake", Key=key, Body=body)
    report = await ingest_source(s3_settings, MemoryStore("docs"), HashingEmbedder(64), "s3://lake/handbook")
    bad = "object key with an empty, '.' or '..' segment (its folder, and so its ACL, is ambiguous)"
    assert dict(report.skipped) == {
        "s3://lake/handbook/secret/../pay.md": bad,
        "s3://lake/handbook/./pay.md": bad,
        "s3://lake/handbook//pay.md": bad,
        "s3://lake/handbook/a//pay.md": bad,
        "s3://lake/handbook/../other/x.md": bad,
        "s3://lake/handbook/x/../.rag-acl.yaml": bad,
        "s3://lake/handbook/.git/": "hidden folder",
        "s3://lake/handbook/notes/.draft.md": "hidden file",
    }
    assert report.failed == () and report.added == 1
