"""Drives a Lingjing S3 gateway with boto3, as a tenant's application would.

Run by crates/storage/tests/s3.rs with the endpoint and two tenants' keys in the
environment; any failed check raises, and the script exits non-zero.
"""
import os
import time
import urllib.parse
import urllib.request
import urllib.error

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["S3_ENDPOINT"]


def client(key, secret, **config):
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
    )


shop = client(os.environ["SHOP_KEY"], os.environ["SHOP_SECRET"])
rival = client(os.environ["RIVAL_KEY"], os.environ["RIVAL_SECRET"])
forged = client(os.environ["SHOP_KEY"], "not-the-secret")


def error_code(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError(f"{fn.__name__} succeeded, expected an error")


# Buckets.
shop.create_bucket(Bucket="assets")
assert error_code(shop.create_bucket, Bucket="assets")[0] == "BucketAlreadyOwnedByYou"
assert error_code(rival.create_bucket, Bucket="assets")[0] == "BucketAlreadyExists"
shop.head_bucket(Bucket="assets")
assert [b["Name"] for b in shop.list_buckets()["Buckets"]] == ["assets"]
assert rival.list_buckets()["Buckets"] == []

# Objects: small, empty, and larger than several blocks (the gateway cuts 64 KiB blocks).
big = bytes((i * 7) % 251 for i in range(300_000))
shop.put_object(Bucket="assets", Key="img/logo.png", Body=b"PNG...", ContentType="image/png",
                Metadata={"owner": "web-team"})
# An empty PUT on its own client: botocore sends `Expect: 100-continue` even for an empty
# body, and the server (rightly) answers without a 100, which leaves botocore's pooled
# connection misparsing the next response (boto/botocore#3755: a 60 s stall, then a retry;
# AWS S3 triggers it too).
client(os.environ["SHOP_KEY"], os.environ["SHOP_SECRET"]).put_object(Bucket="assets", Key="empty", Body=b"")
put = shop.put_object(Bucket="assets", Key="video/big.bin", Body=big)
import hashlib
assert put["ETag"] == '"%s"' % hashlib.md5(big).hexdigest(), put["ETag"]
got = shop.get_object(Bucket="assets", Key="video/big.bin")
assert got["Body"].read() == big
assert got["ContentLength"] == len(big)
assert shop.get_object(Bucket="assets", Key="empty")["Body"].read() == b""
head = shop.head_object(Bucket="assets", Key="img/logo.png")
assert head["ContentType"] == "image/png", head
assert head["Metadata"] == {"owner": "web-team"}, head["Metadata"]
assert head["ContentLength"] == 6

# Ranges across block boundaries, suffix ranges, and one past the end.
r = shop.get_object(Bucket="assets", Key="video/big.bin", Range="bytes=65000-140000")
assert r["Body"].read() == big[65000:140001]
assert r["ContentRange"] == "bytes 65000-140000/300000", r["ContentRange"]
assert shop.get_object(Bucket="assets", Key="video/big.bin", Range="bytes=-10")["Body"].read() == big[-10:]
assert error_code(shop.get_object, Bucket="assets", Key="video/big.bin", Range="bytes=400000-")[1] == 416

# Conditional GET on the ETag.
etag = head["ETag"]
assert error_code(shop.get_object, Bucket="assets", Key="img/logo.png", IfMatch='"nope"')[1] == 412
assert error_code(shop.get_object, Bucket="assets", Key="img/logo.png", IfNoneMatch=etag)[1] == 304

# Conditional GET and HEAD on the time (whole seconds, as HTTP dates have them): If-Match
# comes before If-Unmodified-Since, If-None-Match before If-Modified-Since.
from datetime import timedelta
changed = head["LastModified"]
day = timedelta(days=1)
logo = dict(Bucket="assets", Key="img/logo.png")
assert shop.get_object(**logo, IfModifiedSince=changed - day)["Body"].read() == b"PNG..."
assert error_code(shop.get_object, **logo, IfModifiedSince=changed)[1] == 304
assert error_code(shop.head_object, **logo, IfModifiedSince=changed + day)[1] == 304
assert error_code(shop.get_object, **logo, IfUnmodifiedSince=changed - day)[1] == 412
assert error_code(shop.head_object, **logo, IfUnmodifiedSince=changed - day)[1] == 412
assert shop.get_object(**logo, IfUnmodifiedSince=changed)["Body"].read() == b"PNG..."
assert shop.head_object(**logo, IfMatch=etag, IfUnmodifiedSince=changed - day)["ETag"] == etag
assert shop.get_object(**logo, IfNoneMatch='"other"', IfModifiedSince=changed + day)["ETag"] == etag
assert error_code(shop.get_object, **logo, IfNoneMatch=etag, IfModifiedSince=changed - day)[1] == 304

# Conditional PUTs (refused ones on clients of their own: see the ACL check below).
fresh = lambda: client(os.environ["SHOP_KEY"], os.environ["SHOP_SECRET"])
created = shop.put_object(Bucket="assets", Key="cond", Body=b"v1", IfNoneMatch="*")
assert error_code(fresh().put_object, Bucket="assets", Key="cond", Body=b"v2", IfNoneMatch="*")[1] == 412
assert error_code(fresh().put_object, Bucket="assets", Key="cond", Body=b"v2", IfMatch='"0000"')[1] == 412
assert error_code(fresh().put_object, Bucket="assets", Key="nothing-here", Body=b"v2", IfMatch=created["ETag"])[1] == 404
shop.put_object(Bucket="assets", Key="cond", Body=b"v2", IfMatch=created["ETag"])
assert shop.get_object(Bucket="assets", Key="cond")["Body"].read() == b"v2"
shop.delete_object(Bucket="assets", Key="cond")

# Copies share the source's blocks; metadata is copied, or replaced on request.
shop.copy_object(Bucket="assets", Key="img/copy.png", CopySource={"Bucket": "assets", "Key": "img/logo.png"})
copy = shop.get_object(Bucket="assets", Key="img/copy.png")
assert copy["Body"].read() == b"PNG..." and copy["Metadata"] == {"owner": "web-team"}, copy["Metadata"]
assert copy["ETag"] == etag
shop.copy_object(Bucket="assets", Key="video/big-copy.bin", CopySource="assets/video/big.bin",
                 MetadataDirective="REPLACE", ContentType="video/mp4", Metadata={"k": "v"})
big_copy = shop.get_object(Bucket="assets", Key="video/big-copy.bin")
assert big_copy["Body"].read() == big and big_copy["ContentType"] == "video/mp4" and big_copy["Metadata"] == {"k": "v"}
assert error_code(shop.copy_object, Bucket="assets", Key="img/logo.png",
                  CopySource="assets/img/logo.png")[0] == "InvalidRequest"
assert error_code(shop.copy_object, Bucket="assets", Key="x", CopySource="assets/img/logo.png",
                  CopySourceIfMatch='"nope"')[1] == 412
# The copy-source time conditions: any that fails is 412, and nothing is copied.
for failing in [dict(CopySourceIfUnmodifiedSince=changed - day), dict(CopySourceIfModifiedSince=changed + day),
                dict(CopySourceIfModifiedSince=changed),
                dict(CopySourceIfNoneMatch=etag, CopySourceIfModifiedSince=changed - day)]:
    assert error_code(shop.copy_object, Bucket="assets", Key="x", CopySource="assets/img/logo.png",
                      **failing)[1] == 412, failing
assert error_code(shop.head_object, Bucket="assets", Key="x")[1] == 404
for passing in [dict(CopySourceIfModifiedSince=changed - day), dict(CopySourceIfUnmodifiedSince=changed),
                dict(CopySourceIfMatch=etag, CopySourceIfUnmodifiedSince=changed - day),
                dict(CopySourceIfNoneMatch='"other"', CopySourceIfModifiedSince=changed + day)]:
    shop.copy_object(Bucket="assets", Key="x", CopySource="assets/img/logo.png", **passing)
    shop.delete_object(Bucket="assets", Key="x")
rival.create_bucket(Bucket="rival-bucket")
assert error_code(rival.copy_object, Bucket="rival-bucket", Key="stolen",
                  CopySource="assets/img/logo.png")[0] == "AccessDenied"
rival.delete_bucket(Bucket="rival-bucket")
for k in ("img/copy.png", "video/big-copy.bin"):
    shop.delete_object(Bucket="assets", Key=k)
# The source is untouched by deleting a copy (blocks are shared, rows are not).
assert shop.get_object(Bucket="assets", Key="video/big.bin")["Body"].read() == big

# Listings: prefix, delimiter, pagination.
for i in range(5):
    shop.put_object(Bucket="assets", Key=f"docs/page{i}.html", Body=b"<p>%d</p>" % i)
listing = shop.list_objects_v2(Bucket="assets", Delimiter="/")
assert [p["Prefix"] for p in listing["CommonPrefixes"]] == ["docs/", "img/", "video/"], listing
assert [o["Key"] for o in listing["Contents"]] == ["empty"]
keys = []
token = None
while True:
    kwargs = {"Bucket": "assets", "Prefix": "docs/", "MaxKeys": 2}
    if token:
        kwargs["ContinuationToken"] = token
    page = shop.list_objects_v2(**kwargs)
    keys += [o["Key"] for o in page.get("Contents", [])]
    if not page["IsTruncated"]:
        break
    token = page["NextContinuationToken"]
assert keys == [f"docs/page{i}.html" for i in range(5)], keys
after = shop.list_objects_v2(Bucket="assets", StartAfter="docs/page3.html", Prefix="docs/")
assert [o["Key"] for o in after["Contents"]] == ["docs/page4.html"]
# Keys that need encoding survive encoding-type=url (boto3 decodes them).
shop.put_object(Bucket="assets", Key="odd/a b+c%d&é.txt", Body=b"x")
# (boto3 asks for url encoding itself and decodes; asked for explicitly, it leaves the
# keys encoded, as AWS answers them.)
odd = shop.list_objects_v2(Bucket="assets", Prefix="odd/")
assert [o["Key"] for o in odd["Contents"]] == ["odd/a b+c%d&é.txt"], odd["Contents"]
encoded = shop.list_objects_v2(Bucket="assets", Prefix="odd/", EncodingType="url")
assert [urllib.parse.unquote(o["Key"]) for o in encoded["Contents"]] == ["odd/a b+c%d&é.txt"]
assert " " not in encoded["Contents"][0]["Key"]

# ListObjects (v1), as rclone and older tools use it: markers instead of tokens.
v1 = shop.list_objects(Bucket="assets", Prefix="docs/", MaxKeys=3)
assert [o["Key"] for o in v1["Contents"]] == [f"docs/page{i}.html" for i in range(3)]
assert v1["IsTruncated"] is True
rest = shop.list_objects(Bucket="assets", Prefix="docs/", Marker=v1["NextMarker"])
assert [o["Key"] for o in rest["Contents"]] == ["docs/page3.html", "docs/page4.html"]
assert [p["Prefix"] for p in shop.list_objects(Bucket="assets", Delimiter="/")["CommonPrefixes"]][:1] == ["docs/"]

# A presigned URL works without credentials, and only until it expires.
url = shop.generate_presigned_url("get_object", Params={"Bucket": "assets", "Key": "img/logo.png"}, ExpiresIn=300)
assert urllib.request.urlopen(url).read() == b"PNG..."
tampered = url.replace("img/logo.png", "video/big.bin")
try:
    urllib.request.urlopen(tampered)
    raise AssertionError("a tampered presigned URL was accepted")
except urllib.error.HTTPError as e:
    assert e.code == 403, e.code

# Another tenant can neither read, write, list nor delete; a forged signature is refused.
for fn, kwargs in [
    (rival.get_object, {"Bucket": "assets", "Key": "img/logo.png"}),
    (client(os.environ["RIVAL_KEY"], os.environ["RIVAL_SECRET"]).put_object,
     {"Bucket": "assets", "Key": "evil", "Body": b"x"}),
    (rival.list_objects_v2, {"Bucket": "assets"}),
    (rival.delete_object, {"Bucket": "assets", "Key": "img/logo.png"}),
    (rival.delete_bucket, {"Bucket": "assets"}),
]:
    code, status = error_code(fn, **kwargs)
    assert (code, status) == ("AccessDenied", 403), (fn.__name__, code, status)
assert error_code(forged.list_objects_v2, Bucket="assets")[0] == "SignatureDoesNotMatch"
assert shop.get_object(Bucket="assets", Key="img/logo.png")["Body"].read() == b"PNG..."

# Multipart: the SDK's own transfer (12 MB in 5 MB parts), then the raw API.
from boto3.s3.transfer import TransferConfig
import io
large = os.urandom(12 * 1024 * 1024)
shop.upload_fileobj(io.BytesIO(large), "assets", "video/large.bin",
                    Config=TransferConfig(multipart_threshold=5 * 1024 * 1024,
                                          multipart_chunksize=5 * 1024 * 1024, max_concurrency=2))
head = shop.head_object(Bucket="assets", Key="video/large.bin")
assert head["ContentLength"] == len(large)
part_md5s = b"".join(hashlib.md5(large[i:i + 5 * 1024 * 1024]).digest() for i in range(0, len(large), 5 * 1024 * 1024))
assert head["ETag"] == '"%s-3"' % hashlib.md5(part_md5s).hexdigest(), head["ETag"]
assert shop.get_object(Bucket="assets", Key="video/large.bin")["Body"].read() == large
r = shop.get_object(Bucket="assets", Key="video/large.bin", Range="bytes=5242870-5242890")
assert r["Body"].read() == large[5242870:5242891]

up = shop.create_multipart_upload(Bucket="assets", Key="parts.bin", ContentType="application/x-test")
uid = up["UploadId"]
p1 = shop.upload_part(Bucket="assets", Key="parts.bin", UploadId=uid, PartNumber=1, Body=large[:5 * 1024 * 1024])
p2 = shop.upload_part(Bucket="assets", Key="parts.bin", UploadId=uid, PartNumber=2, Body=b"tail")
listed = shop.list_parts(Bucket="assets", Key="parts.bin", UploadId=uid)
assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [(1, 5 * 1024 * 1024), (2, 4)], listed["Parts"]
assert error_code(rival.list_parts, Bucket="assets", Key="parts.bin", UploadId=uid)[0] == "AccessDenied"
# Not visible before it is completed.
assert error_code(shop.head_object, Bucket="assets", Key="parts.bin")[1] == 404
bad = {"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": '"0000"'}]}
assert error_code(shop.complete_multipart_upload, Bucket="assets", Key="parts.bin", UploadId=uid,
                  MultipartUpload=bad)[0] == "InvalidPart"
unordered = {"Parts": [{"PartNumber": 2, "ETag": p2["ETag"]}, {"PartNumber": 1, "ETag": p1["ETag"]}]}
assert error_code(shop.complete_multipart_upload, Bucket="assets", Key="parts.bin", UploadId=uid,
                  MultipartUpload=unordered)[0] == "InvalidPartOrder"
good = {"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]}
done = shop.complete_multipart_upload(Bucket="assets", Key="parts.bin", UploadId=uid, MultipartUpload=good)
assert done["ETag"].endswith('-2"'), done["ETag"]
whole = shop.get_object(Bucket="assets", Key="parts.bin")
assert whole["Body"].read() == large[:5 * 1024 * 1024] + b"tail"
assert whole["ContentType"] == "application/x-test"
assert error_code(shop.complete_multipart_upload, Bucket="assets", Key="parts.bin", UploadId=uid,
                  MultipartUpload=good)[0] == "NoSuchUpload"
# UploadPartCopy: parts copied from ranges of objects (the blocks inside the range are
# shared, the ends re-cut), then a part uploaded.
up = shop.create_multipart_upload(Bucket="assets", Key="assembled.bin")
auid = up["UploadId"]
c1 = shop.upload_part_copy(Bucket="assets", Key="assembled.bin", UploadId=auid, PartNumber=1,
                           CopySource="assets/video/large.bin", CopySourceRange="bytes=1000-5243879")
assert c1["CopyPartResult"]["ETag"] == '"%s"' % hashlib.md5(large[1000:5243880]).hexdigest(), c1
c2 = shop.upload_part_copy(Bucket="assets", Key="assembled.bin", UploadId=auid, PartNumber=2,
                           CopySource={"Bucket": "assets", "Key": "video/large.bin"})
assert c2["CopyPartResult"]["ETag"] == '"%s"' % hashlib.md5(large).hexdigest()
c3 = shop.upload_part(Bucket="assets", Key="assembled.bin", UploadId=auid, PartNumber=3, Body=b"end")
# (Uploaded, then left out of the completion.)
c4 = shop.upload_part_copy(Bucket="assets", Key="assembled.bin", UploadId=auid, PartNumber=4,
                           CopySource="assets/video/big.bin")
assert c4["CopyPartResult"]["ETag"] == '"%s"' % hashlib.md5(big).hexdigest()
for bad in ["bytes=5-1", "bytes=0-300000", "items=0-1", "bytes=-5", "bytes=1-x"]:
    assert error_code(shop.upload_part_copy, Bucket="assets", Key="assembled.bin", UploadId=auid, PartNumber=4,
                      CopySource="assets/video/big.bin", CopySourceRange=bad)[:2] == ("InvalidArgument", 400), bad
assert error_code(shop.upload_part_copy, Bucket="assets", Key="assembled.bin", UploadId=auid, PartNumber=4,
                  CopySource="assets/video/big.bin", CopySourceIfMatch='"nope"')[1] == 412
assert error_code(shop.upload_part_copy, Bucket="assets", Key="assembled.bin", UploadId=auid, PartNumber=4,
                  CopySource="assets/no-such-object")[1] == 404
rival.create_bucket(Bucket="rival-parts")
rup = rival.create_multipart_upload(Bucket="rival-parts", Key="stolen")["UploadId"]
assert error_code(rival.upload_part_copy, Bucket="rival-parts", Key="stolen", UploadId=rup, PartNumber=1,
                  CopySource="assets/video/big.bin")[0] == "AccessDenied"
rival.abort_multipart_upload(Bucket="rival-parts", Key="stolen", UploadId=rup)
rival.delete_bucket(Bucket="rival-parts")
assert [p["PartNumber"] for p in shop.list_parts(Bucket="assets", Key="assembled.bin", UploadId=auid)["Parts"]] == [1, 2, 3, 4]
shop.complete_multipart_upload(Bucket="assets", Key="assembled.bin", UploadId=auid, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": c1["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": c2["CopyPartResult"]["ETag"]},
    {"PartNumber": 3, "ETag": c3["ETag"]}]})
assembled = large[1000:5243880] + large + b"end"
assert shop.get_object(Bucket="assets", Key="assembled.bin")["Body"].read() == assembled
r = shop.get_object(Bucket="assets", Key="assembled.bin", Range="bytes=5242870-5242890")
assert r["Body"].read() == assembled[5242870:5242891]

# ListMultipartUploads: by key, then in the order they were started; markers, prefix and
# delimiter.
started = []
for k in ["up/a", "up/b/1", "up/a", "up/b/2", "upz"]:
    started.append((k, shop.create_multipart_upload(Bucket="assets", Key=k)["UploadId"]))
listed = shop.list_multipart_uploads(Bucket="assets", Prefix="up")
order = [(u["Key"], u["UploadId"]) for u in listed["Uploads"]]
assert order == [started[0], started[2], started[1], started[3], started[4]], order
assert listed["IsTruncated"] is False and listed["Uploads"][0]["Initiated"]
grouped = shop.list_multipart_uploads(Bucket="assets", Prefix="up/", Delimiter="/")
assert [u["Key"] for u in grouped["Uploads"]] == ["up/a", "up/a"], grouped
assert [c["Prefix"] for c in grouped["CommonPrefixes"]] == ["up/b/"], grouped
page = shop.list_multipart_uploads(Bucket="assets", Prefix="up", MaxUploads=1)
assert page["IsTruncated"] and (page["NextKeyMarker"], page["NextUploadIdMarker"]) == started[0], page
rest = shop.list_multipart_uploads(Bucket="assets", Prefix="up", KeyMarker="up/a", UploadIdMarker=started[0][1])
assert [(u["Key"], u["UploadId"]) for u in rest["Uploads"]] == order[1:]
after_key = shop.list_multipart_uploads(Bucket="assets", Prefix="up", KeyMarker="up/a")
assert [u["Key"] for u in after_key["Uploads"]] == ["up/b/1", "up/b/2", "upz"]
paged = [(u["Key"], u["UploadId"]) for p in shop.get_paginator("list_multipart_uploads").paginate(
    Bucket="assets", Prefix="up", PaginationConfig={"PageSize": 2}) for u in p.get("Uploads", [])]
assert paged == order, paged
assert error_code(rival.list_multipart_uploads, Bucket="assets")[0] == "AccessDenied"
for k, u in started:
    shop.abort_multipart_upload(Bucket="assets", Key=k, UploadId=u)
assert shop.list_multipart_uploads(Bucket="assets").get("Uploads", []) == []

# A part under 5 MB that is not the last is refused; an aborted upload is gone.
small = shop.create_multipart_upload(Bucket="assets", Key="small.bin")["UploadId"]
s1 = shop.upload_part(Bucket="assets", Key="small.bin", UploadId=small, PartNumber=1, Body=b"a" * 100)
s2 = shop.upload_part(Bucket="assets", Key="small.bin", UploadId=small, PartNumber=2, Body=b"b" * 100)
assert error_code(shop.complete_multipart_upload, Bucket="assets", Key="small.bin", UploadId=small,
                  MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": s1["ETag"]},
                                             {"PartNumber": 2, "ETag": s2["ETag"]}]})[0] == "EntityTooSmall"
shop.abort_multipart_upload(Bucket="assets", Key="small.bin", UploadId=small)
assert error_code(shop.list_parts, Bucket="assets", Key="small.bin", UploadId=small)[0] == "NoSuchUpload"

# What is not implemented says so: a canned ACL other than private is refused, not ignored.
shop.put_object(Bucket="assets", Key="acl/private", Body=b"x", ACL="private")
# (A PUT refused before its body is read, on a client of its own: botocore misparses the
# next response on a connection whose `Expect: 100-continue` got a final answer instead of a
# 100 — boto/botocore#3755 — so later checks would fail for botocore's sake.)
assert error_code(client(os.environ["SHOP_KEY"], os.environ["SHOP_SECRET"]).put_object,
                  Bucket="assets", Key="acl/public", Body=b"x", ACL="public-read")[0] == "NotImplemented"
_acl = error_code(shop.head_object, Bucket="assets", Key="acl/public")
assert _acl[1] == 404, _acl
# (Tags, bucket ACLs and CORS are checked by boto3_access.py.)
assert error_code(shop.put_bucket_lifecycle_configuration, Bucket="assets",
                  LifecycleConfiguration={"Rules": [{"ID": "x", "Status": "Enabled", "Filter": {"Prefix": ""},
                                                     "Expiration": {"Days": 1}}]})[0] == "NotImplemented"
# An unversioned bucket shows no version ids, and has none but `null`.
plain = shop.put_object(Bucket="assets", Key="plain", Body=b"x")
assert "VersionId" not in plain, plain
assert "VersionId" not in shop.head_object(Bucket="assets", Key="plain")
assert shop.get_bucket_versioning(Bucket="assets").get("Status") is None
assert shop.get_object(Bucket="assets", Key="plain", VersionId="null")["Body"].read() == b"x"
assert [(v["Key"], v["VersionId"]) for v in shop.list_object_versions(Bucket="assets", Prefix="plain")["Versions"]] == [("plain", "null")]
assert "DeleteMarker" not in shop.delete_object(Bucket="assets", Key="plain")

# Deleting: objects, then the (then empty) bucket; a non-empty bucket stays.
assert error_code(shop.delete_bucket, Bucket="assets")[0] == "BucketNotEmpty"
assert error_code(shop.get_object, Bucket="assets", Key="missing")[0] == "NoSuchKey"
keys = [{"Key": o["Key"]} for o in shop.list_objects_v2(Bucket="assets")["Contents"]]
assert error_code(rival.delete_objects, Bucket="assets", Delete={"Objects": keys})[0] == "AccessDenied"
gone = shop.delete_objects(Bucket="assets", Delete={"Objects": keys + [{"Key": "never-there"}]})
assert sorted(d["Key"] for d in gone["Deleted"]) == sorted([k["Key"] for k in keys] + ["never-there"])
assert shop.list_objects_v2(Bucket="assets")["KeyCount"] == 0
shop.delete_bucket(Bucket="assets")
assert error_code(shop.head_bucket, Bucket="assets")[1] == 404
print("boto3: all checks passed")
