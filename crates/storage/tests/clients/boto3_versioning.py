"""Drives bucket versioning on a Lingjing S3 gateway with boto3, checking S3's semantics:
versions kept and readable by id, delete markers, permanent deletes, ListObjectVersions
with its markers, suspended buckets and their `null` version.

Run by crates/storage/tests/s3.rs with the endpoint and two tenants' keys in the
environment; any failed check raises, and the script exits non-zero.
"""
import io
import os
import re

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["S3_ENDPOINT"]


def client(key, secret):
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


shop = client(os.environ["SHOP_KEY"], os.environ["SHOP_SECRET"])
rival = client(os.environ["RIVAL_KEY"], os.environ["RIVAL_SECRET"])
# A PUT refused before its body is read goes on a client of its own (boto/botocore#3755:
# botocore misparses the next response on that connection).
fresh = lambda: client(os.environ["SHOP_KEY"], os.environ["SHOP_SECRET"])


def error(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ClientError as e:
        return (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"],
                e.response["ResponseMetadata"]["HTTPHeaders"])
    raise AssertionError(f"{fn.__name__} succeeded, expected an error")


def body(**kwargs):
    return shop.get_object(Bucket="history", **kwargs)["Body"].read()


def versions(prefix="", **kwargs):
    """[(key, version id, is latest, is a delete marker)] in the order S3 lists them."""
    out = shop.list_object_versions(Bucket="history", Prefix=prefix, **kwargs)
    entries = [(v["Key"], v["VersionId"], v["IsLatest"], False) for v in out.get("Versions", [])]
    entries += [(m["Key"], m["VersionId"], m["IsLatest"], True) for m in out.get("DeleteMarkers", [])]
    # boto3 parses versions and markers into two lists; S3's order is by key, newest first,
    # which the version ids (or, for `null`, the position of IsLatest) give back.
    return out, entries


def keys(**kwargs):
    return [o["Key"] for o in shop.list_objects_v2(Bucket="history", **kwargs).get("Contents", [])]


VERSION_ID = re.compile(r"^[0-9a-f]{32}$")

shop.create_bucket(Bucket="history")
assert shop.get_bucket_versioning(Bucket="history").get("Status") is None
# Written before versioning: the `null` version, kept once versioning is on.
shop.put_object(Bucket="history", Key="doc", Body=b"v0")
assert error(shop.put_bucket_versioning, Bucket="history",
             VersioningConfiguration={"Status": "Sometimes"})[:2] == ("MalformedXML", 400)
assert error(rival.put_bucket_versioning, Bucket="history",
             VersioningConfiguration={"Status": "Enabled"})[0] == "AccessDenied"
assert shop.get_bucket_versioning(Bucket="history").get("Status") is None
shop.put_bucket_versioning(Bucket="history", VersioningConfiguration={"Status": "Enabled"})
assert shop.get_bucket_versioning(Bucket="history")["Status"] == "Enabled"

# Every write is a new version; old ones stay readable by id.
v1 = shop.put_object(Bucket="history", Key="doc", Body=b"v1")["VersionId"]
v2 = shop.put_object(Bucket="history", Key="doc", Body=b"v2")["VersionId"]
assert VERSION_ID.match(v1) and VERSION_ID.match(v2) and v2 > v1, (v1, v2)
got = shop.get_object(Bucket="history", Key="doc")
assert got["Body"].read() == b"v2" and got["VersionId"] == v2
assert body(Key="doc", VersionId=v1) == b"v1"
assert body(Key="doc", VersionId="null") == b"v0"
head = shop.head_object(Bucket="history", Key="doc", VersionId=v1)
assert head["ContentLength"] == 2 and head["VersionId"] == v1
assert error(shop.get_object, Bucket="history", Key="doc", VersionId="0" * 32)[:2] == ("NoSuchVersion", 404)
assert error(shop.get_object, Bucket="history", Key="doc", VersionId="not-a-version")[:2] == ("InvalidArgument", 400)
assert error(rival.get_object, Bucket="history", Key="doc", VersionId=v1)[0] == "AccessDenied"

# Objects of several blocks (64 KiB each): an overwritten one is still whole by id.
big1 = bytes((i * 7) % 251 for i in range(200_000))
big2 = bytes((i * 13) % 251 for i in range(150_000))
b1 = shop.put_object(Bucket="history", Key="big", Body=big1)["VersionId"]
shop.put_object(Bucket="history", Key="big", Body=big2)
assert body(Key="big") == big2
assert body(Key="big", VersionId=b1) == big1
assert body(Key="big", VersionId=b1, Range="bytes=65530-131080") == big1[65530:131081]

# UploadPartCopy from an old version.
up = shop.create_multipart_upload(Bucket="history", Key="from-old")["UploadId"]
part = shop.upload_part_copy(Bucket="history", Key="from-old", UploadId=up, PartNumber=1,
                             CopySource={"Bucket": "history", "Key": "big", "VersionId": b1},
                             CopySourceRange="bytes=10-70009")
assert part["CopySourceVersionId"] == b1, part
shop.complete_multipart_upload(Bucket="history", Key="from-old", UploadId=up, MultipartUpload={
    "Parts": [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]})
assert body(Key="from-old") == big1[10:70010]
shop.delete_object(Bucket="history", Key="from-old")

# A delete without a version id adds a delete marker: the key is gone from reads and
# listings, not from ListObjectVersions.
deleted = shop.delete_object(Bucket="history", Key="doc")
marker = deleted["VersionId"]
assert deleted["DeleteMarker"] is True and VERSION_ID.match(marker) and marker > v2, deleted
code, status, headers = error(shop.get_object, Bucket="history", Key="doc")
assert (code, status) == ("NoSuchKey", 404) and headers.get("x-amz-delete-marker") == "true", headers
assert headers.get("x-amz-version-id") == marker, headers
code, status, headers = error(shop.head_object, Bucket="history", Key="doc")
assert status == 404 and headers.get("x-amz-delete-marker") == "true", headers
code, status, headers = error(shop.get_object, Bucket="history", Key="doc", VersionId=marker)
assert (code, status) == ("MethodNotAllowed", 405) and headers.get("x-amz-delete-marker") == "true"
assert keys() == ["big"], keys()
assert [o["Key"] for o in shop.list_objects(Bucket="history").get("Contents", [])] == ["big"]
assert body(Key="doc", VersionId=v2) == b"v2"
out, listed = versions("doc")
assert listed == [("doc", v2, False, False), ("doc", v1, False, False), ("doc", "null", False, False),
                  ("doc", marker, True, True)], listed
# Versions come newest first within the key, with the `null` one (oldest) last.
assert [v["VersionId"] for v in out["Versions"]] == [v2, v1, "null"]
assert all(v["ETag"].startswith('"') and v["Size"] == 2 for v in out["Versions"])
assert error(rival.list_object_versions, Bucket="history")[0] == "AccessDenied"

# Deleting the marker for good brings the key back.
undone = shop.delete_object(Bucket="history", Key="doc", VersionId=marker)
assert undone["VersionId"] == marker and undone["DeleteMarker"] is True, undone
assert body(Key="doc") == b"v2" and keys() == ["big", "doc"]

# CopyObject from a version: restoring v1 onto its own key makes a new version.
copied = shop.copy_object(Bucket="history", Key="doc",
                          CopySource={"Bucket": "history", "Key": "doc", "VersionId": v1})
assert copied["CopySourceVersionId"] == v1 and VERSION_ID.match(copied["VersionId"]), copied
assert copied["VersionId"] > v2
assert body(Key="doc") == b"v1"
shop.copy_object(Bucket="history", Key="old-big", CopySource={"Bucket": "history", "Key": "big", "VersionId": b1})
assert body(Key="old-big") == big1
marker2 = shop.delete_object(Bucket="history", Key="old-big")["VersionId"]
assert error(shop.copy_object, Bucket="history", Key="x",
             CopySource={"Bucket": "history", "Key": "old-big", "VersionId": marker2})[:2] == ("InvalidRequest", 400)
assert error(shop.copy_object, Bucket="history", Key="x", CopySource="history/old-big")[:2] == ("NoSuchKey", 404)

# Deleting a version for good: the latest one promotes the next newest.
shop.delete_object(Bucket="history", Key="doc", VersionId=copied["VersionId"])
assert body(Key="doc") == b"v2"
shop.delete_object(Bucket="history", Key="doc", VersionId=v1)
assert [v[1] for v in versions("doc")[1]] == [v2, "null"]
assert error(shop.delete_object, Bucket="history", Key="doc", VersionId="bogus")[:2] == ("InvalidArgument", 400)
shop.delete_object(Bucket="history", Key="doc", VersionId="f" * 32)  # not there: nothing to do
assert [v[1] for v in versions("doc")[1]] == [v2, "null"]

# Conditional PUTs decide against the latest version: a delete marker is no object.
shop.put_object(Bucket="history", Key="cond", Body=b"c1", IfNoneMatch="*")
assert error(fresh().put_object, Bucket="history", Key="cond", Body=b"c2", IfNoneMatch="*")[1] == 412
shop.delete_object(Bucket="history", Key="cond")
assert error(fresh().put_object, Bucket="history", Key="cond", Body=b"c2", IfMatch='"%s"' % ("0" * 32))[1] == 404
shop.put_object(Bucket="history", Key="cond", Body=b"c3", IfNoneMatch="*")
assert body(Key="cond") == b"c3"
assert [(v[2], v[3]) for v in versions("cond")[1]] == [(True, False), (False, False), (False, True)]

# Multipart uploads complete as a new version.
large = os.urandom(6 * 1024 * 1024)
shop.upload_fileobj(io.BytesIO(large), "history", "large",
                    Config=TransferConfig(multipart_threshold=5 * 1024 * 1024,
                                          multipart_chunksize=5 * 1024 * 1024))
up = shop.create_multipart_upload(Bucket="history", Key="large")
p1 = shop.upload_part(Bucket="history", Key="large", UploadId=up["UploadId"], PartNumber=1, Body=b"small")
done = shop.complete_multipart_upload(Bucket="history", Key="large", UploadId=up["UploadId"],
                                      MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}]})
assert VERSION_ID.match(done["VersionId"]), done
assert body(Key="large") == b"small"
first = [v for v in versions("large")[1] if not v[2]][0][1]
assert body(Key="large", VersionId=first) == large

# ListObjectVersions pages with key and version-id markers, by hand and with the paginator.
for i in range(5):
    shop.put_object(Bucket="history", Key="p", Body=b"%d" % i)
for k in ("p/a", "p/b", "q/a"):
    shop.put_object(Bucket="history", Key=k, Body=b"x")
_, everything = versions()
paged = []
kwargs = {}
while True:
    out, page = versions(MaxKeys=2, **kwargs)
    assert len(page) <= 2
    paged += page
    if not out["IsTruncated"]:
        break
    kwargs = {"KeyMarker": out["NextKeyMarker"], "VersionIdMarker": out["NextVersionIdMarker"]}
# Within a page boto3 splits versions and markers; compare as sets per page, whole order by key.
assert sorted(paged) == sorted(everything) and len(paged) == len(everything), (paged, everything)
assert [e[0] for e in paged] == sorted(e[0] for e in paged)
pages = shop.get_paginator("list_object_versions").paginate(Bucket="history", Prefix="p",
                                                             PaginationConfig={"PageSize": 3})
p_versions = [v["VersionId"] for page in pages for v in page.get("Versions", []) if v["Key"] == "p"]
assert len(p_versions) == 5 and p_versions == sorted(p_versions, reverse=True), p_versions
grouped = shop.list_object_versions(Bucket="history", Delimiter="/")
assert [c["Prefix"] for c in grouped["CommonPrefixes"]] == ["p/", "q/"], grouped
assert "p" in {v["Key"] for v in grouped["Versions"]}
# A page that ends on a common prefix resumes past it.
one = shop.list_object_versions(Bucket="history", Prefix="p", Delimiter="/", MaxKeys=5)
assert one["IsTruncated"] and [c["Prefix"] for c in one.get("CommonPrefixes", [])] == [], one
rest = shop.list_object_versions(Bucket="history", Delimiter="/", KeyMarker="p/")
assert [c["Prefix"] for c in rest["CommonPrefixes"]] == ["q/"], rest
assert error(shop.list_object_versions, Bucket="history", VersionIdMarker=v2)[:2] == ("InvalidArgument", 400)
# ListObjects v2 resumes past a common prefix too.
page1 = shop.list_objects_v2(Bucket="history", Delimiter="/", MaxKeys=1, Prefix="p")
page2 = shop.list_objects_v2(Bucket="history", Delimiter="/", MaxKeys=5, Prefix="p",
                             ContinuationToken=page1["NextContinuationToken"])
seen = [o["Key"] for o in page1.get("Contents", []) + page2.get("Contents", [])]
seen += [c["Prefix"] for c in page1.get("CommonPrefixes", []) + page2.get("CommonPrefixes", [])]
assert sorted(seen) == ["p", "p/"], seen

# DeleteObjects with version ids: a version goes for good, a key without one gets a marker.
p_all = [v[1] for v in versions("p")[1] if v[0] == "p"]
gone = shop.delete_objects(Bucket="history", Delete={"Objects": [
    {"Key": "p", "VersionId": p_all[0]}, {"Key": "p", "VersionId": p_all[1]}, {"Key": "p/a"},
    {"Key": "p", "VersionId": "bad id"}]})
by = {(d["Key"], d.get("VersionId")): d for d in gone["Deleted"]}
assert ("p", p_all[0]) in by and ("p", p_all[1]) in by, gone
assert by[("p/a", None)]["DeleteMarker"] is True and VERSION_ID.match(by[("p/a", None)]["DeleteMarkerVersionId"])
assert [(e["Key"], e["Code"]) for e in gone["Errors"]] == [("p", "InvalidArgument")], gone["Errors"]
assert body(Key="p") == b"2"
assert "p/a" not in keys(Prefix="p/")

# Suspended: writes replace the `null` version; other versions stay.
shop.put_bucket_versioning(Bucket="history", VersioningConfiguration={"Status": "Suspended"})
assert shop.get_bucket_versioning(Bucket="history")["Status"] == "Suspended"
s1 = shop.put_object(Bucket="history", Key="doc", Body=b"s1")
assert s1.get("VersionId") == "null", s1
shop.put_object(Bucket="history", Key="doc", Body=b"s2")
assert [v[1] for v in versions("doc")[1]] == ["null", v2], versions("doc")[1]
assert body(Key="doc") == b"s2" and body(Key="doc", VersionId=v2) == b"v2"
assert shop.get_object(Bucket="history", Key="doc")["VersionId"] == "null"
suspended_marker = shop.delete_object(Bucket="history", Key="doc")
assert suspended_marker["DeleteMarker"] is True and suspended_marker["VersionId"] == "null"
assert [(v[1], v[3]) for v in versions("doc")[1]] == [(v2, False), ("null", True)]
assert error(shop.put_bucket_versioning, Bucket="history",
             VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"})[0] == "NotImplemented"

# A bucket holding only old versions and markers is not empty; emptied, it goes.
assert error(shop.delete_bucket, Bucket="history")[0] == "BucketNotEmpty"
while True:
    out, page = versions()
    if not page:
        break
    shop.delete_objects(Bucket="history", Delete={"Objects": [{"Key": k, "VersionId": v} for k, v, _, _ in page]})
assert keys() == []
shop.delete_bucket(Bucket="history")
print("boto3 versioning: all checks passed")
