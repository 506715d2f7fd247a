"""Signed aws-chunked uploads (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) built by hand on
botocore's SigV4 signer: a correct one is stored; one with a byte changed in a chunk is
refused 403 SignatureDoesNotMatch; one whose decoded length differs from the declared
x-amz-decoded-content-length is refused 400 IncompleteBody; neither becomes visible.

Run by crates/storage/tests/s3.rs (same environment as boto3_basic.py).
"""
import hashlib
import hmac
import http.client
import os
import urllib.parse

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

ENDPOINT = os.environ["S3_ENDPOINT"]
KEY, SECRET = os.environ["SHOP_KEY"], os.environ["SHOP_SECRET"]
REGION = "us-east-1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def hmac_sha256(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def chunked_put(bucket, key, data, chunk_size, tamper=False, declared=None):
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    frame = lambda c: len("%x;chunk-signature=" % len(c)) + 64 + 2 + len(c) + 2
    url = f"{ENDPOINT}/{bucket}/{key}"
    headers = {
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "x-amz-decoded-content-length": str(len(data) if declared is None else declared),
        "content-encoding": "aws-chunked",
        "content-length": str(sum(frame(c) for c in chunks)),
    }
    req = AWSRequest(method="PUT", url=url, headers=headers)
    SigV4Auth(Credentials(KEY, SECRET), "s3", REGION).add_auth(req)
    amz_date = req.headers["X-Amz-Date"]
    date = amz_date[:8]
    scope = f"{date}/{REGION}/s3/aws4_request"
    signing_key = hmac_sha256(hmac_sha256(hmac_sha256(hmac_sha256(
        ("AWS4" + SECRET).encode(), date), REGION), "s3"), "aws4_request")
    previous = req.headers["Authorization"].rsplit("Signature=", 1)[1]
    body = b""
    for i, chunk in enumerate(chunks):
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous,
                             EMPTY_SHA256, hashlib.sha256(chunk).hexdigest()])
        signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        previous = signature
        sent = chunk
        if tamper and i == 0:
            sent = bytes([chunk[0] ^ 1]) + chunk[1:]
        body += b"%x;chunk-signature=%s\r\n" % (len(chunk), signature.encode()) + sent + b"\r\n"
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.putrequest("PUT", parts.path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", parts.netloc)  # signed by botocore from the URL
    for name, value in req.headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    conn.send(body)
    res = conn.getresponse()
    answer = res.status, res.read().decode(errors="replace")
    conn.close()
    return answer


s3 = boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                  region_name=REGION, config=Config(s3={"addressing_style": "path"}))
s3.create_bucket(Bucket="chunked")
data = os.urandom(200_000)

status, text = chunked_put("chunked", "good", data, 64 * 1024)
assert status == 200, (status, text)
assert s3.get_object(Bucket="chunked", Key="good")["Body"].read() == data

status, text = chunked_put("chunked", "tampered", data, 64 * 1024, tamper=True)
assert status == 403 and "SignatureDoesNotMatch" in text, (status, text)

for declared in (len(data) + 1, len(data) - 1):
    status, text = chunked_put("chunked", "lying", data, 64 * 1024, declared=declared)
    assert status == 400 and "IncompleteBody" in text, (declared, status, text)

for key in ("tampered", "lying"):
    try:
        s3.head_object(Bucket="chunked", Key=key)
        raise AssertionError(f"{key} became visible")
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
print("aws-chunked: all checks passed")
