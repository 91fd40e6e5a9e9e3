"""The fleet's bucket: a thin async wrapper over aiobotocore's S3 client, in the fleet's own terms.

Every name here is relative to the store's prefix (``blobs/sha256/<hex>``, ``leases/blob/<hex>.json``);
``Bucket`` adds and strips the prefix.  The conditional operations are the fleet's only coordination:

* ``create``: PUT with ``If-None-Match: *``, refused (``PreconditionFailed``) when the name exists;
* ``replace``: PUT with ``If-Match: <etag>``, refused when the object changed since it was read;
* ``delete(if_match=...)``: DELETE refused when the object changed;
* ``complete_upload(create=True)``: a multipart upload completed with ``If-None-Match: *``, so a
  fill never overwrites an object another replica published first.

S3 errors become this module's exceptions (``PreconditionFailed``, ``NotFound``, ``BucketError``),
which name the operation, the object and the status, never a credential.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import botocore.exceptions
from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig

from appliance.config.fleet import FleetConfig, StoreUrl

READ_CHUNK = 256 * 1024
# S3's smallest part but the last (5 MiB); the fleet uploads 8 MiB parts.
MIN_PART = 5 * 1024 * 1024
# Codes S3 and its look-alikes use when a condition does not hold: 412, or 409 for a conditional
# request racing another one on the same key (AWS's ConditionalRequestConflict).
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchUpload", "NotFound", "404"})


class BucketError(Exception):
    """An S3 request that failed; ``status`` is the HTTP status (0 when no answer came)."""

    def __init__(self, operation: str, name: str, status: int, code: str, message: str = "") -> None:
        detail = f": {message}" if message else ""
        super().__init__(f"S3 {operation} {name!r} failed: {status or 'no answer'} {code}{detail}")
        self.operation = operation
        self.name = name
        self.status = status
        self.code = code


class PreconditionFailed(BucketError):
    """A conditional write or delete was refused: the object exists, or changed since it was read."""


class NotFound(BucketError):
    """No such object (or multipart upload)."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An object's metadata; ``name`` is relative to the store's prefix."""

    name: str
    size: int
    etag: str  # with its quotes, as S3 sends it and takes it back in If-Match
    modified: float  # seconds since the epoch
    content_type: str = ""  # as written (HEAD and GET only; listings do not carry it)


@dataclass(frozen=True, slots=True)
class Upload:
    """A multipart upload in progress (completed or aborted ones are not listed)."""

    name: str
    upload_id: str
    initiated: float


@dataclass(frozen=True, slots=True)
class Part:
    number: int
    etag: str


class ObjectStream:
    """An open GET: ``size`` is the whole object's size, ``chunks()`` yields from ``start``."""

    def __init__(self, info: ObjectInfo, start: int, body: Any) -> None:
        self.info = info
        self.start = start
        self._body = body

    async def chunks(self, size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        try:
            while True:
                try:
                    data = await self._body.read(size)
                except (aiohttp.ClientError, botocore.exceptions.BotoCoreError, TimeoutError) as exc:
                    raise BucketError("GET", self.info.name, 0, type(exc).__name__) from None
                if not data:
                    return
                yield data
        finally:
            self.close()

    def close(self) -> None:
        self._body.close()


def _status(exc: botocore.exceptions.ClientError) -> tuple[int, str, str]:
    response: dict[str, Any] = exc.response
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    error = response.get("Error", {})
    return status, str(error.get("Code", "")), str(error.get("Message", ""))


@contextlib.contextmanager
def _errors(operation: str, name: str) -> Any:
    """S3's and the transport's exceptions as ours."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        status, code, message = _status(exc)
        if status == 412 or code in _PRECONDITION_CODES:
            raise PreconditionFailed(operation, name, status, code or "PreconditionFailed") from None
        if status == 404 or code in _NOT_FOUND_CODES:
            raise NotFound(operation, name, status, code or "NotFound") from None
        raise BucketError(operation, name, status, code, message) from None
    except (aiohttp.ClientError, botocore.exceptions.BotoCoreError, TimeoutError) as exc:
        # The transport's message may hold the endpoint but never a credential; keep the type only.
        raise BucketError(operation, name, 0, type(exc).__name__) from None


def _epoch(value: Any) -> float:
    return float(value.timestamp()) if value is not None else 0.0


class Bucket:
    """The store's bucket and prefix, through one pooled S3 client (``start`` before use)."""

    def __init__(self, fleet: FleetConfig, *, max_connections: int = 64, timeout: float = 60.0) -> None:
        self.fleet = fleet
        self.location: StoreUrl = fleet.location
        self._max_connections = max_connections
        self._timeout = timeout
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None

    @property
    def bucket(self) -> str:
        return self.location.bucket

    def key(self, name: str) -> str:
        return self.location.key(name)

    def name_of(self, key: str) -> str:
        return key.removeprefix(self.location.prefix)

    async def start(self) -> None:
        fleet = self.fleet
        config = BotoConfig(
            region_name=fleet.region,
            max_pool_connections=self._max_connections,
            connect_timeout=10,
            read_timeout=self._timeout,
            # Retrying a conditional write can turn our own success into a 412; the fleet retries
            # where it knows what a retry means (leases read back their owner), so one attempt here.
            retries={"max_attempts": 1, "mode": "standard"},
            # Custom endpoints (SeaweedFS, Garage, MinIO, Ceph) name buckets in the path.
            s3={"addressing_style": "path" if fleet.endpoint else "auto"},
            # Checksums only where S3 requires them: several S3 look-alikes reject the newer headers.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        keys: dict[str, str] = {}
        if fleet.access_key_id:
            keys = {
                "aws_access_key_id": fleet.access_key_id,
                "aws_secret_access_key": fleet.secret_access_key.reveal(),
            }
        stack = contextlib.AsyncExitStack()
        session = get_session()
        self._client = await stack.enter_async_context(
            session.create_client("s3", endpoint_url=fleet.endpoint or None, config=config, **keys)
        )
        self._stack = stack

    async def close(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._client = self._stack, None, None
            await stack.aclose()

    async def __aenter__(self) -> Bucket:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("Bucket used before start()")
        return self._client

    # -- whole objects -------------------------------------------------------------------------------

    async def head(self, name: str) -> ObjectInfo | None:
        try:
            with _errors("HEAD", name):
                response = await self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        except NotFound:
            return None
        return ObjectInfo(
            name,
            int(response["ContentLength"]),
            response["ETag"],
            _epoch(response.get("LastModified")),
            str(response.get("ContentType", "")),
        )

    async def get(self, name: str, *, start: int = 0, end: int | None = None) -> tuple[ObjectInfo, bytes]:
        """The object's bytes ``start`` to ``end`` (exclusive; None = to its end) and its metadata."""
        stream = await self.open(name, start=start, end=end)
        with _errors("GET", name):
            try:
                data = await stream._body.read()
            finally:
                stream.close()
        return stream.info, data

    async def open(self, name: str, *, start: int = 0, end: int | None = None) -> ObjectStream:
        """A streaming GET from ``start`` (a Range request when not 0 or when ``end`` is given)."""
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(name)}
        if start or end is not None:
            arguments["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        with _errors("GET", name):
            response = await self.client.get_object(**arguments)
        status = int(response["ResponseMetadata"]["HTTPStatusCode"])
        size = int(response["ContentLength"])
        if "Range" in arguments:
            if status != 206:
                response["Body"].close()
                raise BucketError("GET", name, status, "RangeIgnored", "a Range request was not answered 206")
            # Content-Range: bytes first-last/total
            size = int(str(response.get("ContentRange", "")).rpartition("/")[2] or 0)
        info = ObjectInfo(
            name,
            size,
            response["ETag"],
            _epoch(response.get("LastModified")),
            str(response.get("ContentType", "")),
        )
        return ObjectStream(info, start, response["Body"])

    async def put(self, name: str, data: bytes, *, content_type: str = "application/octet-stream") -> str:
        """Write ``data`` unconditionally; returns the ETag."""
        return await self._put(name, data, {}, content_type)

    async def create(self, name: str, data: bytes, *, content_type: str = "application/octet-stream") -> str:
        """Write ``data`` only if ``name`` does not exist (``PreconditionFailed`` otherwise)."""
        return await self._put(name, data, {"IfNoneMatch": "*"}, content_type)

    async def replace(
        self, name: str, data: bytes, etag: str, *, content_type: str = "application/octet-stream"
    ) -> str:
        """Overwrite ``name`` only if its ETag is still ``etag`` (``PreconditionFailed`` otherwise)."""
        return await self._put(name, data, {"IfMatch": etag}, content_type)

    async def _put(self, name: str, data: bytes, conditions: dict[str, str], content_type: str) -> str:
        with _errors("PUT", name):
            response = await self.client.put_object(
                Bucket=self.bucket, Key=self.key(name), Body=data, ContentType=content_type, **conditions
            )
        return str(response["ETag"])

    async def delete(self, name: str, *, if_match: str | None = None) -> None:
        """Remove ``name``; with ``if_match``, only if its ETag is still that.  Missing is not an error."""
        conditions = {"IfMatch": if_match} if if_match is not None else {}
        try:
            with _errors("DELETE", name):
                await self.client.delete_object(Bucket=self.bucket, Key=self.key(name), **conditions)
        except NotFound:
            if if_match is not None:
                # Gone, so certainly not the version we meant: the caller's condition did not hold.
                raise PreconditionFailed("DELETE", name, 404, "NoSuchKey") from None

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every object whose name starts with ``prefix``, in key order."""
        token: str | None = None
        while True:
            arguments: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.key(prefix)}
            if token:
                arguments["ContinuationToken"] = token
            with _errors("LIST", prefix):
                response = await self.client.list_objects_v2(**arguments)
            for item in response.get("Contents", ()):
                yield ObjectInfo(
                    self.name_of(item["Key"]),
                    int(item["Size"]),
                    item.get("ETag", ""),
                    _epoch(item.get("LastModified")),
                )
            if not response.get("IsTruncated"):
                return
            token = response.get("NextContinuationToken")

    # -- multipart uploads ---------------------------------------------------------------------------

    async def create_upload(self, name: str, *, content_type: str = "application/octet-stream") -> str:
        with _errors("CreateMultipartUpload", name):
            response = await self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key(name), ContentType=content_type
            )
        return str(response["UploadId"])

    async def upload_part(self, name: str, upload_id: str, number: int, data: bytes) -> Part:
        with _errors("UploadPart", name):
            response = await self.client.upload_part(
                Bucket=self.bucket, Key=self.key(name), UploadId=upload_id, PartNumber=number, Body=data
            )
        return Part(number, str(response["ETag"]))

    async def complete_upload(
        self, name: str, upload_id: str, parts: Sequence[Part], *, create: bool = True
    ) -> str:
        """Publish the upload; with ``create``, only if ``name`` does not exist yet."""
        conditions = {"IfNoneMatch": "*"} if create else {}
        with _errors("CompleteMultipartUpload", name):
            response = await self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key(name),
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]},
                **conditions,
            )
        return str(response.get("ETag", ""))

    async def abort_upload(self, name: str, upload_id: str) -> None:
        """Drop the upload and its parts; an upload already gone is not an error."""
        try:
            with _errors("AbortMultipartUpload", name):
                await self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key(name), UploadId=upload_id
                )
        except NotFound:
            pass

    async def list_uploads(self, prefix: str = "") -> AsyncIterator[Upload]:
        """Multipart uploads in progress under ``prefix``."""
        key_marker: str | None = None
        id_marker: str | None = None
        while True:
            arguments: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.key(prefix)}
            if key_marker:
                arguments["KeyMarker"] = key_marker
                if id_marker:
                    arguments["UploadIdMarker"] = id_marker
            with _errors("ListMultipartUploads", prefix):
                response = await self.client.list_multipart_uploads(**arguments)
            for item in response.get("Uploads", ()):
                yield Upload(self.name_of(item["Key"]), str(item["UploadId"]), _epoch(item.get("Initiated")))
            if not response.get("IsTruncated"):
                return
            key_marker = response.get("NextKeyMarker")
            id_marker = response.get("NextUploadIdMarker")
