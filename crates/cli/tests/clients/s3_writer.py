"""Writes objects to an S3 endpoint until told to stop, for the storage crash tests.

Usage: s3_writer.py bucket ENDPOINT BUCKET             -- create the bucket
       s3_writer.py write ENDPOINT BUCKET STOPFILE   -- PUT obj-00000, obj-00001, ...
                                                        printing "ACK key" or "ERR key why"
       s3_writer.py verify ENDPOINT BUCKET KEYS...    -- every key reads back byte-exact
       s3_writer.py absent ENDPOINT BUCKET KEYS...    -- none of the keys exists
       s3_writer.py two ENDPOINT BUCKET ENDPOINT2     -- two gateways on one database agree
       s3_writer.py oversize ENDPOINT BUCKET          -- a PUT or part over 5 GiB is refused
                                                        from its headers, before any body

Object bytes are a function of the key (several blocks each), so a reader can check
them without keeping them. The key comes from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""

import hashlib
import os
import sys

import boto3
from botocore.config import Config


def body(key):
    seed = hashlib.sha256(key.encode()).digest()
    n = 150_000 + int.from_bytes(seed[:2], "big") * 3
    return (seed * (n // len(seed) + 1))[:n]


def client(endpoint):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=60),
    )


def write(endpoint, bucket, stop):
    s3 = client(endpoint)
    i = 0
    while not os.path.exists(stop):
        key = f"obj-{i:05d}"
        i += 1
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body(key))
            print(f"ACK {key}", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported, none hidden
            print(f"ERR {key} {str(e).splitlines()[0]}", flush=True)


def verify(endpoint, bucket, keys):
    s3 = client(endpoint)
    for key in keys:
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert got == body(key), f"{key}: {len(got)} bytes differ from what was acknowledged"
    print(f"verified {len(keys)}", flush=True)


def absent(endpoint, bucket, keys):
    s3 = client(endpoint)
    for key in keys:
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except s3.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] in ("404", "NoSuchKey"), e.response
            continue
        raise AssertionError(f"{key} exists although its PUT failed")
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert not set(listed) & set(keys), listed
    print(f"absent {len(keys)}", flush=True)


def two(a_endpoint, bucket, b_endpoint):
    from concurrent.futures import ThreadPoolExecutor

    a, b = client(a_endpoint), client(b_endpoint)
    a.create_bucket(Bucket=bucket)
    a.put_object(Bucket=bucket, Key="k1", Body=body("k1"))
    assert b.get_object(Bucket=bucket, Key="k1")["Body"].read() == body("k1")
    assert [o["Key"] for o in b.list_objects_v2(Bucket=bucket)["Contents"]] == ["k1"]

    # Conditional creates racing through both gateways: exactly one wins.
    def create(i):
        s3 = (a, b)[i % 2]
        try:
            s3.put_object(Bucket=bucket, Key="race", Body=f"writer {i}".encode(), IfNoneMatch="*")
            return i
        except s3.exceptions.ClientError as e:
            code = e.response["Error"]["Code"]
            assert code in ("PreconditionFailed", "ConditionalRequestConflict"), e.response
            return None

    with ThreadPoolExecutor(10) as pool:
        winners = [w for w in pool.map(create, range(10)) if w is not None]
    assert len(winners) == 1, winners
    for s3 in (a, b):
        got = s3.get_object(Bucket=bucket, Key="race")["Body"].read()
        assert got == f"writer {winners[0]}".encode(), got

    # Overwrites racing through both: one latest version, the same through either.
    def overwrite(i):
        (a, b)[i % 2].put_object(Bucket=bucket, Key="lw", Body=f"version {i}".encode())

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(overwrite, range(20)))
    ha, hb = a.head_object(Bucket=bucket, Key="lw"), b.head_object(Bucket=bucket, Key="lw")
    assert ha["ETag"] == hb["ETag"], (ha["ETag"], hb["ETag"])
    got = b.get_object(Bucket=bucket, Key="lw")["Body"].read()
    assert got.startswith(b"version "), got
    print("two gateways agree", flush=True)


def oversize(endpoint, bucket):
    """Sends only the signed head of requests declaring 5 GiB + 1 byte of body."""
    import http.client
    import urllib.parse

    import botocore.session
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest

    s3 = client(endpoint)
    s3.create_bucket(Bucket=bucket)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="part")["UploadId"]
    creds = botocore.session.get_session().get_credentials()
    too_big = str(5 * 1024**3 + 1)
    for path in (f"/{bucket}/whole", f"/{bucket}/part?partNumber=1&uploadId={upload}"):
        url = endpoint + path
        req = AWSRequest(method="PUT", url=url, headers={
            "Content-Length": too_big, "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
        S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
        parsed = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        conn.putrequest("PUT", parsed.path + ("?" + parsed.query if parsed.query else ""),
                        skip_accept_encoding=True)
        for k, v in req.headers.items():
            conn.putheader(k, v)
        conn.endheaders()  # no body: the answer must not wait for 5 GiB
        res = conn.getresponse()
        text = res.read().decode()
        assert res.status == 400 and "EntityTooLarge" in text, (path, res.status, text)
        conn.close()
    absent(endpoint, bucket, ["whole"])
    assert not s3.list_parts(Bucket=bucket, Key="part", UploadId=upload).get("Parts"), "a part"
    print("oversize refused", flush=True)


if __name__ == "__main__":
    cmd, endpoint, bucket, *rest = sys.argv[1:]
    if cmd == "bucket":
        client(endpoint).create_bucket(Bucket=bucket)
    elif cmd == "write":
        write(endpoint, bucket, rest[0])
    elif cmd == "verify":
        verify(endpoint, bucket, rest)
    elif cmd == "absent":
        absent(endpoint, bucket, rest)
    elif cmd == "two":
        two(endpoint, bucket, rest[0])
    elif cmd == "oversize":
        oversize(endpoint, bucket)
    else:
        sys.exit(f"unknown command {cmd}")
