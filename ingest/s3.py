"""S3-compatible buckets as a document source: ``s3://bucket/prefix`` (MinIO, Ceph RGW, AWS S3).

Listing pages through ``ListObjectsV2`` and reads each document's tags for its ACL: the
``rag-groups`` tag by default, groups separated by spaces (S3 tag values allow no commas).
Documents without the tag take the nearest ``.rag-acl.yaml`` object at or above their "folder", as
on disk, else the default groups. Bytes are fetched only when the sync needs them. Keys with an
empty, ``.`` or ``..`` segment are refused; hidden (dot-named) objects and "folders" are reported
as skipped, a folder once.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from ingest.formats import parser_for
from ingest.loaders import ACL_FILE, ACLError, Item, matches, parse_acl
from rag.config import IngestSettings
from rag.errors import ConfigError, InvalidRequest, UpstreamError, UpstreamUnavailable

log = logging.getLogger(__name__)

# Tag reads are one request per object; a few in parallel keep a large listing from taking minutes.
_TAG_THREADS = 8


# A key like "pub/../secret/x.md" or "pub//x.md" names no folder unambiguously: its ACL would be looked up
# by the literal prefix ("pub/..") while readers of its URI may take it for another folder.
_BAD_KEY = "object key with an empty, '.' or '..' segment (its folder, and so its ACL, is ambiguous)"


def _bad_segment(rel: str) -> bool:
    return any(part in ("", ".", "..") for part in rel.split("/"))


def _client(cfg: IngestSettings) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as e:
        raise ConfigError("s3:// sources need the 's3' extra: pip install 'onprem-rag[s3]'") from e
    key = cfg.s3_access_key_id.get_secret_value() if cfg.s3_access_key_id else None
    secret = cfg.s3_secret_access_key.get_secret_value() if cfg.s3_secret_access_key else None
    return boto3.client(
        "s3",
        endpoint_url=cfg.s3_endpoint_url or None,
        region_name=cfg.s3_region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}),
    )


class S3Loader:
    """Objects under a bucket prefix; "folders" are key prefixes ending in ``/``."""

    def __init__(self, source: str, cfg: IngestSettings) -> None:
        parts = urlsplit(source)
        if not parts.netloc:
            raise InvalidRequest(f"S3 source needs a bucket: s3://bucket/prefix, got '{source}'", param="source")
        self._bucket = parts.netloc
        self._prefix = parts.path.strip("/")
        self._cfg = cfg
        self._max_bytes = int(cfg.max_file_mb * 1024 * 1024)
        self._s3 = _client(cfg)

    @property
    def root(self) -> str:
        """``s3://bucket/prefix`` without a trailing slash."""
        return f"s3://{self._bucket}/{self._prefix}".rstrip("/")

    async def items(self) -> AsyncIterator[Item]:
        """List in a worker thread, then yield items in key order."""
        for item in await asyncio.to_thread(self._list):
            yield item

    async def fetch(self, item: Item) -> bytes:
        """Download one object."""
        return await asyncio.to_thread(self._get, self._key(item.uri))

    def _key(self, uri: str) -> str:
        return uri[len(f"s3://{self._bucket}/") :]

    def _call(self, fn: Any, **kw: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        try:
            return fn(**kw)
        except EndpointConnectionError as e:
            raise UpstreamUnavailable(f"S3 endpoint unreachable: {e}") from e
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchBucket", "404"):
                raise InvalidRequest(f"S3 bucket not found: {self._bucket}", param="source") from e
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                # An OSError at fetch time is reported per document; at listing time it ends the run.
                raise PermissionError(13, f"S3 access denied ({code})") from e
            raise UpstreamError(f"S3 error {code}: {e}") from e
        except BotoCoreError as e:
            raise UpstreamError(f"S3 error: {e}") from e

    def _get(self, key: str) -> bytes:
        body = self._call(self._s3.get_object, Bucket=self._bucket, Key=key)["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def _list(self) -> list[Item]:
        prefix = f"{self._prefix}/" if self._prefix else ""
        objects: list[dict[str, Any]] = []
        acl_keys: list[str] = []
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            page = self._call(self._s3.list_objects_v2, **kw)
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/" + ACL_FILE) or key == ACL_FILE:
                    acl_keys.append(key)
                elif not key.endswith("/"):
                    objects.append(obj)
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
        out: list[Item] = []
        acls: dict[str, tuple[str, ...] | ACLError] = {}
        for key in acl_keys:
            if _bad_segment(key[len(prefix) :]):
                out.append(Item(uri=f"s3://{self._bucket}/{key}", name=key[len(prefix) :], skip=_BAD_KEY))
            else:
                acls[key.rpartition("/")[0]] = self._acl(key)
        candidates: list[tuple[dict[str, Any], str]] = []
        hidden_folders: set[str] = set()
        for obj in objects:
            key, rel = obj["Key"], obj["Key"][len(prefix) :]
            uri = f"s3://{self._bucket}/{key}"
            if matches(rel, self._cfg.exclude):
                continue
            if _bad_segment(rel):
                out.append(Item(uri=uri, name=rel, skip=_BAD_KEY))
                continue
            parts = rel.split("/")
            hidden = next((i for i, part in enumerate(parts) if part.startswith(".")), len(parts))
            if hidden < len(parts) - 1:  # a hidden "folder": one line for it, none for the objects in it
                folder = "/".join(parts[: hidden + 1])
                if folder not in hidden_folders:
                    hidden_folders.add(folder)
                    where = f"s3://{self._bucket}/{prefix}{folder}/"
                    out.append(Item(uri=where, name=f"{folder}/", skip="hidden folder"))
                continue
            if self._cfg.include and not matches(rel, self._cfg.include):
                continue
            if hidden == len(parts) - 1:
                out.append(Item(uri=uri, name=rel, skip="hidden file"))
                continue
            mtime, size = obj["LastModified"].timestamp(), int(obj["Size"])
            if parser_for(rel) is None:
                out.append(Item(uri=uri, name=rel, skip=f"unsupported file type '{rel.rpartition('/')[2]}'"))
            elif size == 0:
                out.append(Item(uri=uri, name=rel, mtime=mtime, skip="empty file (0 bytes)"))
            elif size > self._max_bytes:
                limit = f"{self._max_bytes / 1024 / 1024:g} MiB limit (max_file_mb)"
                reason = f"file is {size / 1024 / 1024:.1f} MiB, above the {limit}"
                out.append(Item(uri=uri, name=rel, mtime=mtime, size=size, error=reason))
            else:
                candidates.append((obj, rel))
        with ThreadPoolExecutor(_TAG_THREADS) as pool:
            out.extend(pool.map(lambda c: self._item(c[0], c[1], acls), candidates))
        out.sort(key=lambda i: i.uri)
        return out

    def _acl(self, key: str) -> tuple[str, ...] | ACLError:
        try:
            return parse_acl(self._get(key).decode("utf-8"), f"s3://{self._bucket}/{key}")
        except (ACLError, UnicodeDecodeError, OSError) as e:
            return e if isinstance(e, ACLError) else ACLError(f"unreadable ACL file s3://{self._bucket}/{key}: {e}")

    def _item(self, obj: dict[str, Any], rel: str, acls: dict[str, tuple[str, ...] | ACLError]) -> Item:
        key = obj["Key"]
        uri = f"s3://{self._bucket}/{key}"
        mtime, size = obj["LastModified"].timestamp(), int(obj["Size"])
        try:
            tags = self._call(self._s3.get_object_tagging, Bucket=self._bucket, Key=key).get("TagSet", [])
        except PermissionError as e:
            return Item(uri=uri, name=rel, mtime=mtime, size=size, error=f"cannot read tags: {e.strerror}")
        tagged = [t["Value"] for t in tags if t.get("Key") == self._cfg.s3_acl_tag]
        if tagged:
            # S3 tag values allow no commas: groups are separated by spaces (or "+", or commas elsewhere).
            groups = tuple(sorted(set(re.split(r"[\s,+]+", tagged[0].strip())) - {""}))
            if not groups:  # fail closed: an empty tag must not fall back to the (maybe public) default
                return Item(uri=uri, name=rel, mtime=mtime, size=size, error=f"empty '{self._cfg.s3_acl_tag}' tag")
            return Item(uri=uri, name=rel, mtime=mtime, size=size, groups=groups)
        folder = key.rpartition("/")[0]
        while True:
            if folder in acls:
                found = acls[folder]
                if isinstance(found, ACLError):
                    return Item(uri=uri, name=rel, mtime=mtime, size=size, error=str(found))
                return Item(uri=uri, name=rel, mtime=mtime, size=size, groups=found)
            if not folder or folder == self._prefix or not folder.startswith(self._prefix):
                break
            folder = folder.rpartition("/")[0]
        return Item(uri=uri, name=rel, mtime=mtime, size=size, groups=tuple(self._cfg.default_groups))
