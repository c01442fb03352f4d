"""Where binary-cache objects live: `file://` directories, `http(s)://` servers, `s3://` buckets (L3).

Each backend gets, streams, puts and lists objects by name (`nix-cache-info`, `<hash>.narinfo`,
`nar/<hash>.nar.zst`) and nothing else: it never parses or trusts what it reads (`cache.py` checks
every byte). A backend that does not answer raises `CacheDown`, so the caller can skip it for the
rest of the run; `timeout` bounds every request. S3 credentials, region and endpoint come from the
standard AWS environment and configuration files (boto3's chain), never from tdx's own settings.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tdxstore._fs import atomic_write
from tdxstore.errors import TransferError, UsageError
from tdxstore.store.path import STORE_DIR

SCHEMES = "file:///absolute/dir, http(s)://host/prefix or s3://bucket/prefix"


class CacheDown(Exception):
    """The cache did not answer (refused, timed out, 5xx): skip it for the rest of the run."""


class Cache:
    """One cache URL: small objects whole, NARs as streams. Missing objects are None."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, name: str) -> bytes | None:
        raise NotImplementedError

    def stream(self, name: str) -> IO[bytes]:
        raise NotImplementedError

    def put(self, name: str, source: Path | bytes) -> None:
        raise NotImplementedError

    def names(self) -> Iterator[str] | None:
        """Every object name, where the backend can list them (a plain HTTP server cannot: None)."""
        return None

    def info(self) -> dict[str, str]:
        try:
            data = self.get("nix-cache-info")
        except CacheDown as e:
            raise TransferError(f"the cache {self.url} is unreachable: {e}", code="cache-unreachable",
                                hint="check the URL, that the server runs, and (s3://) the AWS credentials") from e
        if data is None:
            raise TransferError(f"{self.url} has no nix-cache-info: it is not a binary cache",
                                code="cache-not-a-cache", hint="push a path to it first (tdx cache push)")
        out = dict(line.split(": ", 1) for line in data.decode(errors="replace").splitlines() if ": " in line)
        if out.get("StoreDir") != STORE_DIR:
            raise TransferError(f"{self.url} serves the store {out.get('StoreDir')!r}, not {STORE_DIR}",
                                code="cache-store-dir")
        return out


class FileCache(Cache):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.root = Path(url.removeprefix("file://"))

    def get(self, name: str) -> bytes | None:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CacheDown(str(e)) from e

    def stream(self, name: str) -> IO[bytes]:
        return open(self.root / name, "rb")

    def put(self, name: str, source: Path | bytes) -> None:
        dest = self.root / name
        if isinstance(source, bytes):
            atomic_write(dest, source)
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
        shutil.copyfile(source, part)  # the store's tmp/ and the cache may be on different file systems
        os.chmod(part, 0o644)
        os.replace(part, dest)

    def names(self) -> Iterator[str] | None:
        if not self.root.is_dir():
            return iter(())
        return (p.name for p in self.root.iterdir() if p.name.endswith(".narinfo"))


class HttpCache(Cache):
    """GET to read, PUT to push (a WebDAV-capable server)."""

    def __init__(self, url: str, timeout: float) -> None:
        import requests

        super().__init__(url.rstrip("/"))
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = True

    def _request(self, method: str, name: str, **kw: Any) -> Any:
        import requests

        try:
            r = self.session.request(method, f"{self.url}/{name}", timeout=self.timeout, **kw)
        except requests.RequestException as e:
            raise CacheDown(f"{type(e).__name__}: {e}") from e
        if r.status_code >= 500:
            raise CacheDown(f"HTTP {r.status_code}")
        return r

    def get(self, name: str) -> bytes | None:
        r = self._request("GET", name)
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise CacheDown(f"GET {name}: HTTP {r.status_code}")
        return r.content  # type: ignore[no-any-return]  # small objects only (narinfo, cache info)

    def stream(self, name: str) -> IO[bytes]:
        r = self._request("GET", name, stream=True)
        if r.status_code != 200:
            raise CacheDown(f"GET {name}: HTTP {r.status_code}")
        r.raw.decode_content = True
        return r.raw  # type: ignore[no-any-return]

    def put(self, name: str, source: Path | bytes) -> None:
        if isinstance(source, bytes):
            r = self._request("PUT", name, data=source)
        else:
            with open(source, "rb") as f:
                r = self._request("PUT", name, data=f)
        if r.status_code not in (200, 201, 204):
            raise TransferError(f"the cache {self.url} refused PUT {name}: HTTP {r.status_code}",
                                hint="the server must accept PUT (e.g. nginx with dav_methods PUT)",
                                code="cache-push-refused")


class S3Cache(Cache):
    """`s3://bucket/prefix[?endpoint=URL&region=R&profile=P]` (Nix's query parameters) through boto3.

    Without `endpoint`, boto3 takes it from `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL` or the config
    file, and AWS itself otherwise; one attempt per request (no retries), so a stopped server costs
    one timeout.
    """

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        unknown = set(query) - {"endpoint", "region", "profile"}
        if not parts.netloc or unknown:
            raise UsageError(f"{url!r} is not an S3 cache URL" + (f": unknown parameter(s) {sorted(unknown)}"
                                                                   if unknown else ": no bucket"),
                             code="cache-url-invalid",
                             hint="s3://bucket/prefix, optionally ?endpoint=URL&region=R&profile=P")
        super().__init__(url)
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/") + "/" if parts.path.strip("/") else ""
        import boto3
        import boto3.exceptions
        import botocore.config
        import botocore.exceptions

        self._errors = botocore.exceptions
        self._upload_failed = boto3.exceptions.S3UploadFailedError
        config = botocore.config.Config(connect_timeout=timeout, read_timeout=timeout,
                                        retries={"total_max_attempts": 1, "mode": "standard"})
        try:
            session = boto3.session.Session(profile_name=query.get("profile"), region_name=query.get("region"))
            self.client: Any = session.client("s3", endpoint_url=query.get("endpoint"), config=config)
        except botocore.exceptions.BotoCoreError as e:
            raise UsageError(f"cannot set up the S3 client for {url!r}: {e}", code="cache-s3-config",
                             hint="check AWS_PROFILE, AWS_REGION and ~/.aws/config") from e

    def _key(self, name: str) -> str:
        return self.prefix + name

    def _down(self, e: Exception) -> CacheDown:
        if isinstance(e, self._errors.NoCredentialsError):
            return CacheDown("no AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile)")
        return CacheDown(f"{type(e).__name__}: {e}")

    def _missing(self, e: Exception) -> bool:
        if not isinstance(e, self._errors.ClientError):
            return False
        return e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")

    def _body(self, name: str) -> Any:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
        except (self._errors.BotoCoreError, self._errors.ClientError) as e:
            if self._missing(e):
                return None
            raise self._down(e) from e

    def get(self, name: str) -> bytes | None:
        body = self._body(name)
        if body is None:
            return None
        try:
            with body:
                return body.read()  # type: ignore[no-any-return]  # small objects only
        except (self._errors.BotoCoreError, OSError) as e:
            raise self._down(e) from e

    def stream(self, name: str) -> IO[bytes]:
        body = self._body(name)
        if body is None:
            raise CacheDown(f"{name} is listed but not there")
        return body  # type: ignore[no-any-return]

    def put(self, name: str, source: Path | bytes) -> None:
        try:
            if isinstance(source, bytes):
                self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=source)
            else:
                with open(source, "rb") as f:
                    self.client.upload_fileobj(f, self.bucket, self._key(name))
        except self._errors.ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500:
                raise self._down(e) from e
            raise TransferError(f"the cache {self.url} refused to store {name}: {e}", code="cache-push-refused",
                                hint="check the bucket exists and the credentials may write to it") from e
        except (self._errors.BotoCoreError, self._upload_failed) as e:
            raise self._down(e) from e

    def names(self) -> Iterator[str] | None:
        try:
            pages = list(self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"))
        except (self._errors.BotoCoreError, self._errors.ClientError) as e:
            raise self._down(e) from e
        return (o["Key"][len(self.prefix):] for page in pages for o in page.get("Contents", [])
                if o["Key"].endswith(".narinfo"))


def open_cache(url: str, timeout: float = 5.0) -> Cache:
    """The backend for `url`; an unknown scheme is one `cache-unknown-scheme` error."""
    if url.startswith("file:///"):
        return FileCache(url)
    if url.startswith(("http://", "https://")):
        return HttpCache(url, timeout)
    if url.startswith("s3://"):
        return S3Cache(url, timeout)
    raise UsageError(f"unknown substituter or cache URL {url!r}", code="cache-unknown-scheme",
                     hint=f"use {SCHEMES}")
