"""Objects on erasure-coded storage through a whole site going dark, driven by boto3.

Run by crates/storage/tests/coded_s3.rs in two phases, named by the first argument:

  write   creates bucket `coded`, writes objects of several sizes (one block, many
          blocks, a multipart upload, a server-side copy, a small replicated one) and
          records each one's SHA-256 in the file named by the second argument;
  check   (after the test stopped every node of one site) reads every recorded object
          back byte-exact, whole and by range, writes new objects and reads them back.

Any failed check raises, and the script exits non-zero.
"""
import hashlib
import json
import os
import random
import sys

import boto3
from botocore.config import Config

ENDPOINT = os.environ["S3_ENDPOINT"]
s3 = boto3.client(
    "s3",
    endpoint_url=ENDPOINT,
    aws_access_key_id=os.environ["SHOP_KEY"],
    aws_secret_access_key=os.environ["SHOP_SECRET"],
    region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)
BUCKET = "coded"


def body(seed, size):
    return random.Random(seed).randbytes(size)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def check_object(key, digest, size):
    got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert len(got) == size, f"{key}: {len(got)} bytes, want {size}"
    assert sha(got) == digest, f"{key}: bytes differ"
    if size > 300_000:
        # A range across a block boundary (blocks are 64 KiB in the test).
        r = s3.get_object(Bucket=BUCKET, Key=key, Range="bytes=65000-200000")["Body"].read()
        assert r == got[65000:200001], f"{key}: range differs"


def write(record):
    s3.create_bucket(Bucket=BUCKET)
    objects = {}
    for key, seed, size in [
        ("one-block", 1, 60_000),
        ("many-blocks", 2, 1_000_003),
        ("small", 3, 2_000),
    ]:
        data = body(seed, size)
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        objects[key] = (sha(data), size)
    part1, part2 = body(4, 5 * 1024 * 1024), body(5, 333_333)
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="multipart")
    parts = []
    for n, data in [(1, part1), (2, part2)]:
        r = s3.upload_part(Bucket=BUCKET, Key="multipart", UploadId=up["UploadId"], PartNumber=n, Body=data)
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key="multipart", UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
    )
    objects["multipart"] = (sha(part1 + part2), len(part1) + len(part2))
    s3.copy_object(Bucket=BUCKET, Key="copy", CopySource={"Bucket": BUCKET, "Key": "many-blocks"})
    objects["copy"] = objects["many-blocks"]
    for key, (digest, size) in objects.items():
        check_object(key, digest, size)
    with open(record, "w") as f:
        json.dump(objects, f)


def check(record):
    with open(record) as f:
        objects = json.load(f)
    for key, (digest, size) in objects.items():
        check_object(key, digest, size)
    for key, seed, size in [("after-1", 6, 700_001), ("after-2", 7, 64 * 1024 * 3)]:
        data = body(seed, size)
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        check_object(key, sha(data), size)
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert sorted(listed) == sorted(list(objects) + ["after-1", "after-2"]), listed


if __name__ == "__main__":
    {"write": write, "check": check}[sys.argv[1]](sys.argv[2])
    print("all checks passed")
