"""aws-chunked uploads built by hand on botocore's SigV4 signer.

Signed chunks (STREAMING-AWS4-HMAC-SHA256-PAYLOAD): a correct one is stored; one with a
byte changed in a chunk is refused 403 SignatureDoesNotMatch; one whose decoded length
differs from the declared x-amz-decoded-content-length is refused 400 IncompleteBody.

Trailing checksums (x-amz-trailer: x-amz-checksum-crc32), with unsigned chunks
(STREAMING-UNSIGNED-PAYLOAD-TRAILER, what newer SDKs send over HTTPS) and with signed
chunks and a signed trailer (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER): a correct one is
stored byte-exact; a wrong checksum in the trailer is 400 BadDigest; a lying decoded length
is 400 IncompleteBody; a tampered trailer is 403 SignatureDoesNotMatch; a named trailer
that never comes is 400 InvalidRequest. Nothing refused becomes visible.

Run by crates/storage/tests/s3.rs (same environment as boto3_basic.py).
"""
import hashlib
import base64
import hmac
import http.client
import os
import urllib.parse
import zlib

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


def crc32_b64(data):
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def send(url, headers, body):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.putrequest("PUT", parts.path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", parts.netloc)  # signed by botocore from the URL
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    conn.send(body)
    res = conn.getresponse()
    answer = res.status, res.read().decode(errors="replace"), dict(res.getheaders())
    conn.close()
    return answer


def signed_request(url, headers):
    """The request's headers signed by botocore, its date, the scope and signing key, and
    its signature (the seed of the chunk signatures)."""
    req = AWSRequest(method="PUT", url=url, headers=headers)
    SigV4Auth(Credentials(KEY, SECRET), "s3", REGION).add_auth(req)
    amz_date = req.headers["X-Amz-Date"]
    date = amz_date[:8]
    scope = f"{date}/{REGION}/s3/aws4_request"
    signing_key = hmac_sha256(hmac_sha256(hmac_sha256(hmac_sha256(
        ("AWS4" + SECRET).encode(), date), REGION), "s3"), "aws4_request")
    seed = req.headers["Authorization"].rsplit("Signature=", 1)[1]
    return req.headers, amz_date, scope, signing_key, seed


def chunked_put(bucket, key, data, chunk_size, tamper=False, declared=None, trailer=None,
                tamper_trailer=False):
    """A signed aws-chunked PUT; with `trailer` (the trailing x-amz-checksum-crc32 value),
    the STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER form with a signed trailer."""
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    url = f"{ENDPOINT}/{bucket}/{key}"
    headers = {
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        + ("-TRAILER" if trailer is not None else ""),
        "x-amz-decoded-content-length": str(len(data) if declared is None else declared),
        "content-encoding": "aws-chunked",
    }
    if trailer is not None:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32"

    # The body is built after signing (chunk signatures chain from the seed), but its
    # length is signed: built once with dummy signatures to measure it.
    def build(amz_date, scope, signing_key, previous):
        out = b""
        for i, chunk in enumerate(chunks):
            to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous,
                                 EMPTY_SHA256, hashlib.sha256(chunk).hexdigest()])
            signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
            previous = signature
            sent = chunk
            if tamper and i == 0:
                sent = bytes([chunk[0] ^ 1]) + chunk[1:]
            out += b"%x;chunk-signature=%s\r\n" % (len(chunk), signature.encode()) + sent
            if chunk or trailer is None:
                out += b"\r\n"
        if trailer is not None:
            canonical = f"x-amz-checksum-crc32:{trailer}\n"
            to_sign = "\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, previous,
                                 hashlib.sha256(canonical.encode()).hexdigest()])
            trailer_signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
            shown = trailer
            if tamper_trailer:
                shown = crc32_b64(b"something else")
            out += f"x-amz-checksum-crc32:{shown}\r\n".encode()
            out += f"x-amz-trailer-signature:{trailer_signature}\r\n\r\n".encode()
        return out
    length = len(build("0" * 16, "x", b"k", "0" * 64))
    headers["content-length"] = str(length)
    signed, amz_date, scope, signing_key, seed = signed_request(url, headers)
    body = build(amz_date, scope, signing_key, seed)
    assert len(body) == length
    return send(url, signed, body)


def unsigned_trailer_put(bucket, key, data, chunk_size, checksum, declared=None,
                         trailer_name="x-amz-checksum-crc32", send_trailer=True):
    """An aws-chunked PUT with unsigned chunks and a trailing checksum
    (STREAMING-UNSIGNED-PAYLOAD-TRAILER), as newer SDKs send over HTTPS."""
    body = b""
    for i in range(0, len(data), chunk_size):
        chunk = data[i:i + chunk_size]
        body += b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    body += b"0\r\n"
    if send_trailer:
        body += f"{trailer_name}:{checksum}\r\n".encode()
    body += b"\r\n"
    url = f"{ENDPOINT}/{bucket}/{key}"
    headers = {
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "x-amz-decoded-content-length": str(len(data) if declared is None else declared),
        "x-amz-trailer": trailer_name,
        "x-amz-sdk-checksum-algorithm": "CRC32",
        "content-encoding": "aws-chunked",
        "content-length": str(len(body)),
    }
    signed = signed_request(url, headers)[0]
    return send(url, signed, body)


s3 = boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                  region_name=REGION, config=Config(s3={"addressing_style": "path"}))
s3.create_bucket(Bucket="chunked")
data = os.urandom(200_000)

status, text, _ = chunked_put("chunked", "good", data, 64 * 1024)
assert status == 200, (status, text)
assert s3.get_object(Bucket="chunked", Key="good")["Body"].read() == data

status, text, _ = chunked_put("chunked", "tampered", data, 64 * 1024, tamper=True)
assert status == 403 and "SignatureDoesNotMatch" in text, (status, text)

for declared in (len(data) + 1, len(data) - 1):
    status, text, _ = chunked_put("chunked", "lying", data, 64 * 1024, declared=declared)
    assert status == 400 and "IncompleteBody" in text, (declared, status, text)

# Unsigned chunks with a trailing CRC32.
right = crc32_b64(data)
status, text, headers = unsigned_trailer_put("chunked", "trailed", data, 50_000, right)
assert status == 200, (status, text)
assert headers.get("x-amz-checksum-crc32") == right, headers
got = s3.get_object(Bucket="chunked", Key="trailed", ChecksumMode="ENABLED")
assert got["Body"].read() == data
assert got["ChecksumCRC32"] == right, got
status, text, _ = unsigned_trailer_put("chunked", "bad-trailer", data, 50_000,
                                       crc32_b64(data + b"!"))
assert status == 400 and "<Code>BadDigest</Code>" in text and "CRC32" in text, (status, text)
# Over a key that exists: it keeps its content.
status, text, _ = unsigned_trailer_put("chunked", "trailed", data[:1000], 50_000, right)
assert status == 400 and "BadDigest" in text, (status, text)
assert s3.get_object(Bucket="chunked", Key="trailed")["Body"].read() == data
for declared in (len(data) + 1, len(data) - 1):
    status, text, _ = unsigned_trailer_put("chunked", "lying-trailer", data, 50_000, right,
                                           declared=declared)
    assert status == 400 and "IncompleteBody" in text, (declared, status, text)
status, text, _ = unsigned_trailer_put("chunked", "no-trailer", data, 50_000, right,
                                       send_trailer=False)
assert status == 400 and "InvalidRequest" in text, (status, text)
status, text, _ = unsigned_trailer_put("chunked", "empty-trailed", b"", 50_000, crc32_b64(b""))
assert status == 200, (status, text)
assert s3.get_object(Bucket="chunked", Key="empty-trailed")["Body"].read() == b""

# Signed chunks and a signed trailer.
status, text, headers = chunked_put("chunked", "signed-trailed", data, 64 * 1024, trailer=right)
assert status == 200, (status, text)
assert headers.get("x-amz-checksum-crc32") == right, headers
assert s3.get_object(Bucket="chunked", Key="signed-trailed")["Body"].read() == data
status, text, _ = chunked_put("chunked", "signed-bad", data, 64 * 1024,
                              trailer=crc32_b64(b"not the data"))
assert status == 400 and "BadDigest" in text, (status, text)
status, text, _ = chunked_put("chunked", "signed-tampered", data, 64 * 1024, trailer=right,
                              tamper_trailer=True)
assert status == 403 and "SignatureDoesNotMatch" in text, (status, text)

for key in ("tampered", "lying", "bad-trailer", "lying-trailer", "no-trailer", "signed-bad",
            "signed-tampered"):
    try:
        s3.head_object(Bucket="chunked", Key=key)
        raise AssertionError(f"{key} became visible")
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
print("aws-chunked: all checks passed")
