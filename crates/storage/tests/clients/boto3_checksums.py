"""Body integrity through boto3: Content-MD5 and the flexible checksums.

PUTs with ChecksumAlgorithm CRC32, SHA1 and SHA256 (botocore computes them; CRC32C and
CRC64NVME need awscrt, so their values are computed here and sent as ChecksumCRC32C /
ChecksumCRC64NVME) succeed, answer the checksum, and GET/HEAD with ChecksumMode=ENABLED
return it (botocore then checks the body against it); a range or a read without the mode
shows none. A wrong Content-MD5 or x-amz-checksum-* is 400 BadDigest and the key stays
absent (or keeps its old content); a malformed Content-MD5 is 400 InvalidDigest. Parts are
checked the same way (a refused part is not listed). Copies keep the checksum. The bodies
s3s reads whole (DeleteObjects, PutBucketTagging, PutObjectTagging) are checked against
their Content-MD5 or checksum too: a wrong one is 400 BadDigest and changes nothing.

Run by crates/storage/tests/s3.rs (same environment as boto3_basic.py).
"""
import base64
import hashlib
import os
import zlib

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["S3_ENDPOINT"]

def client(**config):
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=os.environ["SHOP_KEY"],
        aws_secret_access_key=os.environ["SHOP_SECRET"],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
    )


s3 = client()
# Newer botocore sends x-amz-checksum-mode: ENABLED on every GET unless told otherwise.
unasked = client(response_checksum_validation="when_required")


def reflected_crc(poly, width):
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    mask = (1 << width) - 1

    def crc(data):
        c = mask
        for b in data:
            c = table[(c ^ b) & 0xFF] ^ (c >> 8)
        return (c ^ mask).to_bytes(width // 8, "big")

    return crc


crc32c = reflected_crc(0x82F63B78, 32)
crc64nvme = reflected_crc(0x9A6C9329AC4BC9B5, 64)
assert crc32c(b"123456789").hex() == "e3069283"
assert crc64nvme(b"123456789").hex() == "ae8b14860a799888"


def b64(digest):
    return base64.b64encode(digest).decode()


def expected(algorithm, data):
    return b64({
        "CRC32": lambda d: zlib.crc32(d).to_bytes(4, "big"),
        "CRC32C": crc32c,
        "CRC64NVME": crc64nvme,
        "SHA1": lambda d: hashlib.sha1(d).digest(),
        "SHA256": lambda d: hashlib.sha256(d).digest(),
    }[algorithm](data))


def error(fn, **kwargs):
    try:
        fn(**kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError(f"{fn.__name__} succeeded, expected an error")


def absent(key):
    assert error(s3.head_object, Bucket="sums", Key=key) == ("404", 404), key


s3.create_bucket(Bucket="sums")
data = os.urandom(150_000)  # several 64 KiB blocks

for algorithm in ("CRC32", "SHA1", "SHA256", "CRC32C", "CRC64NVME"):
    key = f"obj-{algorithm}"
    value = expected(algorithm, data)
    field = "Checksum" + algorithm
    if algorithm in ("CRC32C", "CRC64NVME"):
        put = s3.put_object(Bucket="sums", Key=key, Body=data, **{field: value})
    else:
        put = s3.put_object(Bucket="sums", Key=key, Body=data, ChecksumAlgorithm=algorithm)
    assert put.get(field) == value, (algorithm, put)
    got = s3.get_object(Bucket="sums", Key=key, ChecksumMode="ENABLED")
    assert got.get(field) == value, (algorithm, got)
    assert got["Body"].read() == data
    head = s3.head_object(Bucket="sums", Key=key, ChecksumMode="ENABLED")
    assert head.get(field) == value, (algorithm, head)
    # Not asked for, or a range: none shown.
    plain = unasked.get_object(Bucket="sums", Key=key)
    assert field not in plain, plain
    plain["Body"].read()
    ranged = s3.get_object(Bucket="sums", Key=key, Range="bytes=0-9", ChecksumMode="ENABLED")
    assert field not in ranged, ranged
    assert ranged["Body"].read() == data[:10]

# A copy keeps the checksum (same bytes).
s3.copy_object(Bucket="sums", Key="copy", CopySource={"Bucket": "sums", "Key": "obj-SHA256"})
got = s3.get_object(Bucket="sums", Key="copy", ChecksumMode="ENABLED")
assert got["ChecksumSHA256"] == expected("SHA256", data), got
got["Body"].read()

# A correct Content-MD5 is fine.
md5 = b64(hashlib.md5(data).digest())
s3.put_object(Bucket="sums", Key="md5", Body=data, ContentMD5=md5)
assert s3.get_object(Bucket="sums", Key="md5")["Body"].read() == data

# Wrong digests: 400 BadDigest, nothing stored.
wrong_md5 = b64(hashlib.md5(b"other").digest())
assert error(s3.put_object, Bucket="sums", Key="bad-md5", Body=data,
             ContentMD5=wrong_md5) == ("BadDigest", 400)
absent("bad-md5")
assert error(s3.put_object, Bucket="sums", Key="bad-crc", Body=data,
             ChecksumCRC32=expected("CRC32", b"other")) == ("BadDigest", 400)
absent("bad-crc")
assert error(s3.put_object, Bucket="sums", Key="bad-sha", Body=data,
             ChecksumSHA256=expected("SHA256", b"other")) == ("BadDigest", 400)
absent("bad-sha")
assert error(s3.put_object, Bucket="sums", Key="bad-crc64", Body=data,
             ChecksumCRC64NVME=expected("CRC64NVME", b"other")) == ("BadDigest", 400)
absent("bad-crc64")
# Malformed: 400 InvalidDigest (MD5) or InvalidRequest (a checksum).
assert error(s3.put_object, Bucket="sums", Key="bad-md5", Body=data,
             ContentMD5="not-an-md5") == ("InvalidDigest", 400)
assert error(s3.put_object, Bucket="sums", Key="bad-crc", Body=data,
             ChecksumCRC32="AAAA") == ("InvalidRequest", 400)
absent("bad-md5")


# Over an existing key: it keeps its old content (and checksum).
def corrupt_crc32(request, **kwargs):
    del request.headers["x-amz-checksum-crc32"]
    request.headers["x-amz-checksum-crc32"] = expected("CRC32", b"tampered")


s3.meta.events.register("before-sign.s3.PutObject", corrupt_crc32)
assert error(s3.put_object, Bucket="sums", Key="obj-CRC32", Body=b"new content",
             ChecksumAlgorithm="CRC32") == ("BadDigest", 400)
s3.meta.events.unregister("before-sign.s3.PutObject", corrupt_crc32)
got = s3.get_object(Bucket="sums", Key="obj-CRC32", ChecksumMode="ENABLED")
assert got["Body"].read() == data
assert got["ChecksumCRC32"] == expected("CRC32", data)
assert error(s3.put_object, Bucket="sums", Key="md5", Body=b"new content",
             ContentMD5=wrong_md5) == ("BadDigest", 400)
assert s3.get_object(Bucket="sums", Key="md5")["Body"].read() == data

# Parts: checked the same way; a refused part is not recorded.
up = s3.create_multipart_upload(Bucket="sums", Key="multi")["UploadId"]
part1 = os.urandom(5 * 1024 * 1024)
part2 = b"the last part"
r1 = s3.upload_part(Bucket="sums", Key="multi", UploadId=up, PartNumber=1, Body=part1,
                    ChecksumAlgorithm="SHA256")
assert r1.get("ChecksumSHA256") == expected("SHA256", part1), r1
assert error(s3.upload_part, Bucket="sums", Key="multi", UploadId=up, PartNumber=2,
             Body=part2, ContentMD5=wrong_md5) == ("BadDigest", 400)
assert error(s3.upload_part, Bucket="sums", Key="multi", UploadId=up, PartNumber=2,
             Body=part2, ChecksumCRC32=expected("CRC32", b"x")) == ("BadDigest", 400)
listed = s3.list_parts(Bucket="sums", Key="multi", UploadId=up).get("Parts", [])
assert [p["PartNumber"] for p in listed] == [1], listed
r2 = s3.upload_part(Bucket="sums", Key="multi", UploadId=up, PartNumber=2, Body=part2,
                    ContentMD5=b64(hashlib.md5(part2).digest()))
s3.complete_multipart_upload(Bucket="sums", Key="multi", UploadId=up, MultipartUpload={
    "Parts": [{"PartNumber": 1, "ETag": r1["ETag"]}, {"PartNumber": 2, "ETag": r2["ETag"]}]})
got = s3.get_object(Bucket="sums", Key="multi", ChecksumMode="ENABLED")
assert got["Body"].read() == part1 + part2


# Bodies s3s reads whole (DeleteObjects, tagging, ...) are checked too: botocore sends a
# Content-MD5 or an x-amz-checksum-* for them; a wrong one is refused, nothing changes.
def corrupt_digests(request, **kwargs):
    for name, algorithm in (("Content-MD5", None), ("x-amz-checksum-crc32", "CRC32"),
                            ("x-amz-checksum-crc32c", "CRC32C"),
                            ("x-amz-checksum-sha256", "SHA256")):
        if name in request.headers:
            del request.headers[name]
            request.headers[name] = (wrong_md5 if algorithm is None
                                     else expected(algorithm, b"tampered"))


def malformed_md5(request, **kwargs):
    for name in list(request.headers.keys()):
        if name.lower() == "content-md5" or name.lower().startswith("x-amz-checksum-"):
            del request.headers[name]
    request.headers["Content-MD5"] = "bm90IGFuIG1kNQ=="


doomed = {"Objects": [{"Key": "obj-CRC32"}, {"Key": "md5"}]}
for handler, code in ((corrupt_digests, "BadDigest"), (malformed_md5, "InvalidDigest")):
    for op in ("DeleteObjects", "PutBucketTagging", "PutObjectTagging"):
        s3.meta.events.register(f"before-sign.s3.{op}", handler)
    assert error(s3.delete_objects, Bucket="sums", Delete=doomed) == (code, 400)
    assert error(s3.put_bucket_tagging, Bucket="sums",
                 Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}) == (code, 400)
    assert error(s3.put_object_tagging, Bucket="sums", Key="md5",
                 Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}) == (code, 400)
    for op in ("DeleteObjects", "PutBucketTagging", "PutObjectTagging"):
        s3.meta.events.unregister(f"before-sign.s3.{op}", handler)
s3.head_object(Bucket="sums", Key="obj-CRC32")
s3.head_object(Bucket="sums", Key="md5")
assert error(s3.get_bucket_tagging, Bucket="sums") == ("NoSuchTagSet", 404)
assert s3.get_object_tagging(Bucket="sums", Key="md5")["TagSet"] == []
# Untouched, they pass.
s3.put_bucket_tagging(Bucket="sums", Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
deleted = s3.delete_objects(Bucket="sums", Delete=doomed)
assert sorted(d["Key"] for d in deleted["Deleted"]) == ["md5", "obj-CRC32"], deleted
absent("md5")
print("checksums: all checks passed")
