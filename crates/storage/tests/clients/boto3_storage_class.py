"""Storage classes through boto3: STANDARD_IA and GLACIER_IR objects (one-shot and
multipart) are taken, read back byte-exact and shown with their class by HEAD, GET and
the listings; STANDARD is the default; classes not offered are refused with nothing
stored; a copy keeps its source's class and cannot change it.

Run by crates/storage/tests/coded_s3.rs; the Rust test then checks how the blocks are
kept. Any failed check raises, and the script exits non-zero.
"""
import os

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["S3_ENDPOINT"],
    aws_access_key_id=os.environ["SHOP_KEY"],
    aws_secret_access_key=os.environ["SHOP_SECRET"],
    region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)
B = "classes"
s3.create_bucket(Bucket=B)
cold = bytes((i * 7) % 251 for i in range(300_000))
hot = bytes((i * 13) % 241 for i in range(300_000))
s3.put_object(Bucket=B, Key="cold.bin", Body=cold, StorageClass="STANDARD_IA")
s3.put_object(Bucket=B, Key="hot.bin", Body=hot)

head = s3.head_object(Bucket=B, Key="cold.bin")
assert head["StorageClass"] == "STANDARD_IA", head
assert "StorageClass" not in s3.head_object(Bucket=B, Key="hot.bin"), "STANDARD is not shown"
got = s3.get_object(Bucket=B, Key="cold.bin")
assert got["StorageClass"] == "STANDARD_IA" and got["Body"].read() == cold
assert s3.get_object(Bucket=B, Key="cold.bin", Range="bytes=299990-")["Body"].read() == cold[299990:]
classes = {o["Key"]: o["StorageClass"] for o in s3.list_objects_v2(Bucket=B)["Contents"]}
assert classes == {"cold.bin": "STANDARD_IA", "hot.bin": "STANDARD"}, classes

# Multipart, cold.
parts_data = [bytes([p]) * (5 * 1024 * 1024) for p in (1, 2)] + [b"tail" * 1000]
up = s3.create_multipart_upload(Bucket=B, Key="big.bin", StorageClass="GLACIER_IR")
listed = s3.list_multipart_uploads(Bucket=B)["Uploads"]
assert [u["StorageClass"] for u in listed] == ["GLACIER_IR"], listed
parts = []
for n, data in enumerate(parts_data, start=1):
    r = s3.upload_part(Bucket=B, Key="big.bin", UploadId=up["UploadId"], PartNumber=n, Body=data)
    parts.append({"ETag": r["ETag"], "PartNumber": n})
s3.complete_multipart_upload(Bucket=B, Key="big.bin", UploadId=up["UploadId"],
                             MultipartUpload={"Parts": parts})
assert s3.head_object(Bucket=B, Key="big.bin")["StorageClass"] == "GLACIER_IR"
assert s3.get_object(Bucket=B, Key="big.bin")["Body"].read() == b"".join(parts_data)

# Refused classes store nothing.
for refused in ("GLACIER", "DEEP_ARCHIVE", "EXPRESS_ONEZONE"):
    try:
        s3.put_object(Bucket=B, Key="refused.bin", Body=b"x", StorageClass=refused)
        raise AssertionError(f"{refused} was taken")
    except ClientError as e:
        assert e.response["Error"]["Code"] == "InvalidStorageClass", e
try:
    s3.head_object(Bucket=B, Key="refused.bin")
    raise AssertionError("a refused PUT stored something")
except ClientError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e

# A copy shares its source's blocks, so it keeps its class.
s3.copy_object(Bucket=B, Key="cold-copy.bin", CopySource=f"{B}/cold.bin")
assert s3.head_object(Bucket=B, Key="cold-copy.bin")["StorageClass"] == "STANDARD_IA"
s3.copy_object(Bucket=B, Key="cold-copy2.bin", CopySource=f"{B}/cold.bin",
               MetadataDirective="REPLACE", ContentType="application/x-cold")
assert s3.head_object(Bucket=B, Key="cold-copy2.bin")["StorageClass"] == "STANDARD_IA"
try:
    s3.copy_object(Bucket=B, Key="warm.bin", CopySource=f"{B}/cold.bin", StorageClass="STANDARD")
    raise AssertionError("a copy changed the class")
except ClientError as e:
    assert e.response["Error"]["Code"] == "NotImplemented", e
print("all checks passed")
