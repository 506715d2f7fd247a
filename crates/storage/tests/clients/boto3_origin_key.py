"""Checks the fields S3 keeps with an object (Cache-Control, Content-Disposition,
Content-Encoding, Content-Language) and the read-only platform credentials that edges
read bucket origins with: shop's
key for its bucket `shop-site` reads objects there (GET, HEAD, ranges, conditionals) and
nothing else — no listing, no write, no delete, no ACL or tag change, no other bucket —
and rival's key naming shop's private bucket reads nothing of it (but reads it, as anyone
may, while it is public-read).

Run by crates/storage/tests/s3.rs; any failed check raises, and the script exits non-zero.
"""
import os

import boto3
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


def refused(call, code="AccessDenied"):
    try:
        call()
    except ClientError as e:
        got = e.response["Error"]["Code"]
        assert got in (code, "403"), f"expected {code}, got {got}: {e}"
        return
    raise AssertionError("the call was not refused")


shop = client(os.environ["SHOP_KEY"], os.environ["SHOP_SECRET"])
origin = client("LJOSHOPSITE", "origin-secret")
rival_origin = client("LJORIVALSITE", "rival-origin-secret")

shop.create_bucket(Bucket="shop-site")
shop.create_bucket(Bucket="shop-other")
shop.put_object(Bucket="shop-site", Key="index.html", Body=b"<h1>shop</h1>", ContentType="text/html")
shop.put_object(Bucket="shop-other", Key="secret.txt", Body=b"not for the CDN")

got = origin.get_object(Bucket="shop-site", Key="index.html")
assert got["Body"].read() == b"<h1>shop</h1>"
etag = got["ETag"]
assert origin.head_object(Bucket="shop-site", Key="index.html")["ContentLength"] == 13
assert origin.get_object(Bucket="shop-site", Key="index.html", Range="bytes=1-2")["Body"].read() == b"h1"
try:
    origin.get_object(Bucket="shop-site", Key="index.html", IfNoneMatch=etag)
    raise AssertionError("If-None-Match with the current ETag must be 304")
except ClientError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 304, e

# The fields a CDN lives by are kept with the object, apart from user metadata, and copied.
shop.put_object(Bucket="shop-site", Key="app.js", Body=b"1", ContentType="text/javascript",
                CacheControl="public, max-age=600", ContentDisposition="inline",
                ContentEncoding="identity", ContentLanguage="en", Metadata={"colour": "blue"})
for c, key in ((origin, "app.js"), (origin, "app-copy.js")):
    if key == "app-copy.js":
        shop.copy_object(Bucket="shop-site", Key=key, CopySource="shop-site/app.js")
    got = c.head_object(Bucket="shop-site", Key=key)
    assert got["CacheControl"] == "public, max-age=600", got
    assert got["ContentDisposition"] == "inline", got
    assert got["ContentEncoding"] == "identity", got
    assert got["ContentLanguage"] == "en", got
    assert got["Metadata"] == {"colour": "blue"}, got
    assert c.get_object(Bucket="shop-site", Key=key)["CacheControl"] == "public, max-age=600"
shop.copy_object(Bucket="shop-site", Key="app.js", CopySource="shop-site/app.js",
                 MetadataDirective="REPLACE", CacheControl="no-cache")
got = shop.head_object(Bucket="shop-site", Key="app.js")
assert got["CacheControl"] == "no-cache" and got["Metadata"] == {} and "ContentLanguage" not in got, got
shop.delete_object(Bucket="shop-site", Key="app.js")
shop.delete_object(Bucket="shop-site", Key="app-copy.js")

# Everything else is refused, and changes nothing.
refused(lambda: origin.list_objects_v2(Bucket="shop-site"))
refused(lambda: origin.put_object(Bucket="shop-site", Key="index.html", Body=b"defaced"))
refused(lambda: origin.delete_object(Bucket="shop-site", Key="index.html"))
refused(lambda: origin.put_object_acl(Bucket="shop-site", Key="index.html", ACL="public-read"))
refused(lambda: origin.put_bucket_acl(Bucket="shop-site", ACL="public-read"))
refused(lambda: origin.get_object(Bucket="shop-other", Key="secret.txt"))
refused(lambda: origin.list_buckets())
refused(lambda: origin.create_bucket(Bucket="origin-made"))
refused(lambda: origin.copy_object(Bucket="shop-site", Key="copy", CopySource="shop-other/secret.txt"))
assert shop.get_object(Bucket="shop-site", Key="index.html")["Body"].read() == b"<h1>shop</h1>"
assert [o["Key"] for o in shop.list_objects_v2(Bucket="shop-site")["Contents"]] == ["index.html"]

# Another tenant's service naming shop's private bucket reads nothing of it.
refused(lambda: rival_origin.get_object(Bucket="shop-site", Key="index.html"))
refused(lambda: rival_origin.head_object(Bucket="shop-site", Key="index.html"), code="403")

# Once shop makes the bucket public-read, any service may serve it, as anyone may read it
# unsigned: the platform credential then reads what an anonymous caller reads (objects,
# no listing, no other operation), and nothing more once the bucket is private again.
shop.put_bucket_acl(Bucket="shop-site", ACL="public-read")
assert rival_origin.get_object(Bucket="shop-site", Key="index.html")["Body"].read() == b"<h1>shop</h1>"
refused(lambda: rival_origin.list_objects_v2(Bucket="shop-site"))
refused(lambda: rival_origin.put_object(Bucket="shop-site", Key="index.html", Body=b"defaced"))
shop.put_bucket_acl(Bucket="shop-site", ACL="private")
refused(lambda: rival_origin.get_object(Bucket="shop-site", Key="index.html"))
print("all checks passed")
