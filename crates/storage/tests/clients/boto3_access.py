"""Drives bucket ACLs, unsigned access, object and bucket tags and CORS on a Lingjing S3
gateway with boto3 (signed, and unsigned with botocore.UNSIGNED) and plain HTTP
(urllib / http.client), checking S3's semantics and that refused requests change nothing.

Run by crates/storage/tests/s3.rs with the endpoint, the virtual-host domain and two
tenants' keys in the environment; any failed check raises, and the script exits non-zero.
"""
import http.client
import io
import os
import urllib.error
import urllib.parse
import urllib.request

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["S3_ENDPOINT"]
DOMAIN = os.environ["S3_DOMAIN"]
HOSTPORT = urllib.parse.urlparse(ENDPOINT).netloc
PORT = urllib.parse.urlparse(ENDPOINT).port


def client(key=None, secret=None):
    config = dict(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
    if key is None:
        config["signature_version"] = UNSIGNED
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=key or "unused",
        aws_secret_access_key=secret or "unused",
        region_name="us-east-1",
        config=Config(**config),
    )


shop = client(os.environ["SHOP_KEY"], os.environ["SHOP_SECRET"])
rival = client(os.environ["RIVAL_KEY"], os.environ["RIVAL_SECRET"])
anon = client()
# A PUT refused before its body is read goes on a client of its own (boto/botocore#3755:
# botocore misparses the next response on that connection).
fresh_shop = lambda: client(os.environ["SHOP_KEY"], os.environ["SHOP_SECRET"])
fresh_rival = lambda: client(os.environ["RIVAL_KEY"], os.environ["RIVAL_SECRET"])


def error(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError(f"{fn.__name__} succeeded, expected an error")


def denied(fn, **kwargs):
    got = error(fn, **kwargs)
    assert got == ("AccessDenied", 403), (fn.__name__, kwargs, got)


def http_request(method, path, headers=None, host=None, body=None):
    """(status, headers as a dict of lowercase names, body) of a plain, unsigned request."""
    conn = http.client.HTTPConnection(HOSTPORT, timeout=30)
    h = dict(headers or {})
    if host:
        h["Host"] = host
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    body = r.read()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, body)
    conn.close()
    return out


def tag_set(pairs):
    return {"TagSet": [{"Key": k, "Value": v} for k, v in pairs]}


def tags_of(**kwargs):
    return [(t["Key"], t["Value"]) for t in shop.get_object_tagging(**kwargs)["TagSet"]]


# --- Canned ACLs on buckets -------------------------------------------------------------
shop.create_bucket(Bucket="pub-site", ACL="public-read")
shop.create_bucket(Bucket="priv-site")
acl = shop.get_bucket_acl(Bucket="pub-site")
assert acl["Owner"]["ID"] == "shop", acl
grants = sorted((g["Grantee"]["Type"], g["Grantee"].get("ID") or g["Grantee"].get("URI"), g["Permission"])
                for g in acl["Grants"])
assert grants == [("CanonicalUser", "shop", "FULL_CONTROL"),
                  ("Group", "http://acs.amazonaws.com/groups/global/AllUsers", "READ")], grants
private_grants = shop.get_bucket_acl(Bucket="priv-site")["Grants"]
assert [(g["Grantee"]["ID"], g["Permission"]) for g in private_grants] == [("shop", "FULL_CONTROL")], private_grants
# What is not implemented says so, and creates nothing.
assert error(shop.create_bucket, Bucket="rw-site", ACL="public-read-write") == ("NotImplemented", 501)
assert error(shop.create_bucket, Bucket="rw-site", GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"')[0] == "NotImplemented"
assert error(shop.head_bucket, Bucket="rw-site")[1] == 404
assert error(shop.put_bucket_acl, Bucket="priv-site", ACL="authenticated-read")[0] == "NotImplemented"
assert error(shop.put_bucket_acl, Bucket="priv-site", GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"')[0] == "NotImplemented"
assert error(shop.put_bucket_acl, Bucket="priv-site", AccessControlPolicy={
    "Owner": {"ID": "shop"},
    "Grants": [{"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
                "Permission": "READ"}]})[0] == "NotImplemented"
assert error(shop.put_bucket_acl, Bucket="priv-site")[:2] == ("MissingSecurityHeader", 400)
assert len(shop.get_bucket_acl(Bucket="priv-site")["Grants"]) == 1
# Another tenant never sees or changes the ACL.
denied(rival.put_bucket_acl, Bucket="priv-site", ACL="public-read")
denied(rival.get_bucket_acl, Bucket="pub-site")
assert len(shop.get_bucket_acl(Bucket="priv-site")["Grants"]) == 1

# --- Unsigned reads of a public-read bucket ---------------------------------------------
page = b"<h1>hello</h1>"
big = bytes((i * 13) % 251 for i in range(200_000))
put = shop.put_object(Bucket="pub-site", Key="index.html", Body=page, ContentType="text/html",
                      Tagging="secret=yes")
shop.put_object(Bucket="pub-site", Key="media/big.bin", Body=big)
shop.put_object(Bucket="priv-site", Key="index.html", Body=b"private")
got = anon.get_object(Bucket="pub-site", Key="index.html")
assert got["Body"].read() == page and got["ContentType"] == "text/html", got
# Tags (and their count) are the owner's: an unsigned read does not see the count.
assert "TagCount" not in got, got
assert "x-amz-tagging-count" not in got["ResponseMetadata"]["HTTPHeaders"]
head = anon.head_object(Bucket="pub-site", Key="index.html")
assert head["ContentLength"] == len(page) and head["ETag"] == put["ETag"]
r = anon.get_object(Bucket="pub-site", Key="media/big.bin", Range="bytes=65530-70000")
assert r["Body"].read() == big[65530:70001] and r["ContentRange"] == "bytes 65530-70000/200000", r
assert anon.get_object(Bucket="pub-site", Key="media/big.bin", Range="bytes=-5")["Body"].read() == big[-5:]
assert error(anon.get_object, Bucket="pub-site", Key="index.html", IfNoneMatch=put["ETag"])[1] == 304
assert error(anon.get_object, Bucket="pub-site", Key="index.html", IfMatch='"nope"')[1] == 412
assert error(anon.head_object, Bucket="pub-site", Key="index.html", IfNoneMatch=put["ETag"])[1] == 304
assert error(anon.get_object, Bucket="pub-site", Key="missing")[:2] == ("NoSuchKey", 404)
# public-read is AllUsers READ on the bucket: listing too (S3's s3:ListBucket), and HEAD.
assert [o["Key"] for o in anon.list_objects_v2(Bucket="pub-site")["Contents"]] == ["index.html", "media/big.bin"]
assert [o["Key"] for o in anon.list_objects(Bucket="pub-site")["Contents"]] == ["index.html", "media/big.bin"]
anon.head_bucket(Bucket="pub-site")
# Nothing else, and nothing of a private bucket.
denied(anon.get_object, Bucket="priv-site", Key="index.html")
assert error(anon.head_object, Bucket="priv-site", Key="index.html")[1] == 403
denied(anon.list_objects_v2, Bucket="priv-site")
assert error(anon.head_bucket, Bucket="priv-site")[1] == 403
denied(client().put_object, Bucket="pub-site", Key="index.html", Body=b"defaced")
denied(client().put_object, Bucket="pub-site", Key="new.html", Body=b"x")
denied(anon.delete_object, Bucket="pub-site", Key="index.html")
denied(anon.delete_objects, Bucket="pub-site", Delete={"Objects": [{"Key": "index.html"}]})
denied(anon.copy_object, Bucket="pub-site", Key="copy.html", CopySource="pub-site/index.html")
denied(anon.create_multipart_upload, Bucket="pub-site", Key="up")
denied(anon.list_object_versions, Bucket="pub-site")
denied(anon.list_multipart_uploads, Bucket="pub-site")
denied(anon.get_bucket_acl, Bucket="pub-site")
denied(anon.put_bucket_acl, Bucket="pub-site", ACL="private")
denied(anon.get_object_tagging, Bucket="pub-site", Key="index.html")
denied(anon.put_object_tagging, Bucket="pub-site", Key="index.html", Tagging=tag_set([("a", "b")]))
denied(anon.get_bucket_cors, Bucket="pub-site")
denied(anon.get_bucket_versioning, Bucket="pub-site")
denied(anon.list_buckets)
denied(anon.delete_bucket, Bucket="pub-site")
denied(anon.get_object, Bucket="pub-site", Key="index.html", VersionId="null")
assert error(anon.get_object, Bucket="no-such-bucket", Key="x")[:2] == ("NoSuchBucket", 404)
assert error(anon.get_object, Bucket="pub-site", Key="index.html",
             ResponseContentType="text/plain")[:2] == ("InvalidRequest", 400)
assert shop.get_object(Bucket="pub-site", Key="index.html")["Body"].read() == page
assert [o["Key"] for o in shop.list_objects_v2(Bucket="pub-site")["Contents"]] == ["index.html", "media/big.bin"]

# Plain HTTP, as a CDN or a browser fetches: path style and virtual-hosted style.
assert urllib.request.urlopen(f"{ENDPOINT}/pub-site/index.html").read() == page
status, headers, body = http_request("GET", "/index.html", host=f"pub-site.{DOMAIN}:{PORT}")
assert (status, body) == (200, page), (status, body)
status, headers, body = http_request("GET", "/media/big.bin", {"Range": "bytes=10-19"})
assert status == 404  # path style needs the bucket
status, headers, body = http_request("GET", "/pub-site/media/big.bin", {"Range": "bytes=10-19"})
assert (status, body, headers["content-range"]) == (206, big[10:20], "bytes 10-19/200000"), (status, headers)
status, headers, body = http_request("HEAD", "/pub-site/index.html")
assert status == 200 and headers["content-length"] == str(len(page)), (status, headers)
for path in ["/priv-site/index.html", "/priv-site", "/"]:
    status, _, body = http_request("GET", path)
    assert status == 403 and b"<Code>AccessDenied</Code>" in body, (path, status, body)
status, _, body = http_request("PUT", "/pub-site/index.html", body=b"x")
assert status == 403 and b"AccessDenied" in body, (status, body)
status, _, body = http_request("DELETE", "/pub-site/index.html")
assert status == 403, status
assert shop.get_object(Bucket="pub-site", Key="index.html")["Body"].read() == page

# Another tenant reads a public bucket (GET, HEAD, list) as anyone may, and nothing more.
assert rival.get_object(Bucket="pub-site", Key="index.html")["Body"].read() == page
assert "TagCount" not in rival.get_object(Bucket="pub-site", Key="index.html")
rival.head_object(Bucket="pub-site", Key="index.html")
assert len(rival.list_objects_v2(Bucket="pub-site")["Contents"]) == 2
denied(fresh_rival().put_object, Bucket="pub-site", Key="index.html", Body=b"defaced")
denied(rival.delete_object, Bucket="pub-site", Key="index.html")
denied(rival.delete_objects, Bucket="pub-site", Delete={"Objects": [{"Key": "index.html"}]})
denied(rival.put_object_tagging, Bucket="pub-site", Key="index.html", Tagging=tag_set([("a", "b")]))
denied(rival.delete_object_tagging, Bucket="pub-site", Key="index.html")
denied(rival.get_object_tagging, Bucket="pub-site", Key="index.html")
denied(rival.get_object, Bucket="pub-site", Key="index.html", VersionId="null")
denied(rival.list_object_versions, Bucket="pub-site")
denied(rival.get_object, Bucket="priv-site", Key="index.html")
rival.create_bucket(Bucket="rival-copies")
denied(rival.copy_object, Bucket="rival-copies", Key="stolen", CopySource="pub-site/index.html")
rival.delete_bucket(Bucket="rival-copies")
assert tags_of(Bucket="pub-site", Key="index.html") == [("secret", "yes")]
assert shop.get_object(Bucket="pub-site", Key="index.html")["Body"].read() == page

# Back to private: unsigned reads stop at once.
shop.put_bucket_acl(Bucket="pub-site", ACL="private")
denied(anon.get_object, Bucket="pub-site", Key="index.html")
denied(rival.get_object, Bucket="pub-site", Key="index.html")
denied(anon.list_objects_v2, Bucket="pub-site")
assert len(shop.get_bucket_acl(Bucket="pub-site")["Grants"]) == 1
shop.put_bucket_acl(Bucket="pub-site", ACL="public-read")
assert anon.get_object(Bucket="pub-site", Key="index.html")["Body"].read() == page
assert len(shop.get_bucket_acl(Bucket="pub-site")["Grants"]) == 2

# --- Object tags ------------------------------------------------------------------------
shop.put_object(Bucket="priv-site", Key="t1", Body=b"x", Tagging="team=web&env=prod%2Fblue&note=a+b")
assert tags_of(Bucket="priv-site", Key="t1") == [("team", "web"), ("env", "prod/blue"), ("note", "a b")]
assert shop.get_object(Bucket="priv-site", Key="t1")["TagCount"] == 3
assert shop.head_object(Bucket="priv-site", Key="t1")["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "3"
untagged = shop.get_object(Bucket="priv-site", Key="index.html")
assert "TagCount" not in untagged and shop.get_object_tagging(Bucket="priv-site", Key="index.html")["TagSet"] == []
shop.put_object_tagging(Bucket="priv-site", Key="t1", Tagging=tag_set([("k" * 128, "v" * 256)]))
assert tags_of(Bucket="priv-site", Key="t1") == [("k" * 128, "v" * 256)]
assert shop.head_object(Bucket="priv-site", Key="t1")["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "1"
# Limits: every violation is InvalidTag (400) and changes nothing.
eleven = [(f"k{i}", "v") for i in range(11)]
for bad in [eleven, [("k" * 129, "v")], [("k", "v" * 257)], [("dup", "1"), ("dup", "2")], [("aws:x", "v")],
            [("k", "a*b")]]:
    assert error(shop.put_object_tagging, Bucket="priv-site", Key="t1", Tagging=tag_set(bad)) == ("InvalidTag", 400), bad
assert tags_of(Bucket="priv-site", Key="t1") == [("k" * 128, "v" * 256)]
shop.put_object_tagging(Bucket="priv-site", Key="t1", Tagging=tag_set([(f"k{i}", "") for i in range(10)]))
assert len(tags_of(Bucket="priv-site", Key="t1")) == 10
assert error(fresh_shop().put_object, Bucket="priv-site", Key="t2", Body=b"x",
             Tagging="&".join(f"k{i}=v" for i in range(11))) == ("InvalidTag", 400)
assert error(fresh_shop().put_object, Bucket="priv-site", Key="t2", Body=b"x", Tagging="a=1&a=2")[0] == "InvalidTag"
assert error(fresh_shop().put_object, Bucket="priv-site", Key="t2", Body=b"x", Tagging="k=%FF")[0] == "InvalidArgument"
assert error(shop.head_object, Bucket="priv-site", Key="t2")[1] == 404
assert error(shop.put_object_tagging, Bucket="priv-site", Key="t2", Tagging=tag_set([("a", "b")]))[:2] == ("NoSuchKey", 404)
shop.delete_object_tagging(Bucket="priv-site", Key="t1")
assert tags_of(Bucket="priv-site", Key="t1") == []
assert "x-amz-tagging-count" not in shop.head_object(Bucket="priv-site", Key="t1")["ResponseMetadata"]["HTTPHeaders"]
# Another tenant never reads or changes them.
shop.put_object_tagging(Bucket="priv-site", Key="t1", Tagging=tag_set([("owner", "shop")]))
denied(rival.put_object_tagging, Bucket="priv-site", Key="t1", Tagging=tag_set([("owner", "rival")]))
denied(rival.delete_object_tagging, Bucket="priv-site", Key="t1")
denied(rival.get_object_tagging, Bucket="priv-site", Key="t1")
assert tags_of(Bucket="priv-site", Key="t1") == [("owner", "shop")]

# Copies: COPY (the default) keeps the source's tags, ignoring x-amz-tagging; REPLACE
# takes x-amz-tagging (none: no tags).
shop.copy_object(Bucket="priv-site", Key="c1", CopySource="priv-site/t1")
assert tags_of(Bucket="priv-site", Key="c1") == [("owner", "shop")]
shop.copy_object(Bucket="priv-site", Key="c2", CopySource="priv-site/t1", Tagging="ignored=1")
assert tags_of(Bucket="priv-site", Key="c2") == [("owner", "shop")]
shop.copy_object(Bucket="priv-site", Key="c3", CopySource="priv-site/t1", TaggingDirective="REPLACE",
                 Tagging="copy=new")
assert tags_of(Bucket="priv-site", Key="c3") == [("copy", "new")]
shop.copy_object(Bucket="priv-site", Key="c4", CopySource="priv-site/t1", TaggingDirective="REPLACE")
assert tags_of(Bucket="priv-site", Key="c4") == []
assert error(shop.copy_object, Bucket="priv-site", Key="c5", CopySource="priv-site/t1",
             TaggingDirective="REPLACE", Tagging="a=1&a=2")[0] == "InvalidTag"
assert error(shop.head_object, Bucket="priv-site", Key="c5")[1] == 404
assert tags_of(Bucket="priv-site", Key="t1") == [("owner", "shop")]

# Multipart: the tags given at the start are the object's once it is completed.
up = shop.create_multipart_upload(Bucket="priv-site", Key="mp", Tagging="stage=upload&n=1")["UploadId"]
p1 = shop.upload_part(Bucket="priv-site", Key="mp", UploadId=up, PartNumber=1, Body=b"part")
assert error(shop.get_object_tagging, Bucket="priv-site", Key="mp")[1] == 404
shop.complete_multipart_upload(Bucket="priv-site", Key="mp", UploadId=up,
                               MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}]})
assert tags_of(Bucket="priv-site", Key="mp") == [("stage", "upload"), ("n", "1")]
assert error(shop.create_multipart_upload, Bucket="priv-site", Key="mp2",
             Tagging="&".join(f"k{i}=v" for i in range(11)))[0] == "InvalidTag"
assert shop.list_multipart_uploads(Bucket="priv-site").get("Uploads", []) == []
from boto3.s3.transfer import TransferConfig
shop.upload_fileobj(io.BytesIO(os.urandom(6 * 1024 * 1024)), "priv-site", "mp-sdk",
                    ExtraArgs={"Tagging": "via=sdk"},
                    Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))
assert tags_of(Bucket="priv-site", Key="mp-sdk") == [("via", "sdk")]

# Versions: each has its own tags, addressed by versionId.
shop.create_bucket(Bucket="tag-history")
shop.put_bucket_versioning(Bucket="tag-history", VersioningConfiguration={"Status": "Enabled"})
v1 = shop.put_object(Bucket="tag-history", Key="doc", Body=b"1", Tagging="gen=1")["VersionId"]
v2 = shop.put_object(Bucket="tag-history", Key="doc", Body=b"2", Tagging="gen=2")["VersionId"]
out = shop.get_object_tagging(Bucket="tag-history", Key="doc", VersionId=v1)
assert out["VersionId"] == v1 and out["TagSet"] == [{"Key": "gen", "Value": "1"}], out
assert shop.get_object_tagging(Bucket="tag-history", Key="doc")["VersionId"] == v2
assert shop.put_object_tagging(Bucket="tag-history", Key="doc", VersionId=v1,
                               Tagging=tag_set([("gen", "old")]))["VersionId"] == v1
assert tags_of(Bucket="tag-history", Key="doc", VersionId=v1) == [("gen", "old")]
assert tags_of(Bucket="tag-history", Key="doc") == [("gen", "2")]
assert shop.get_object(Bucket="tag-history", Key="doc", VersionId=v1)["TagCount"] == 1
assert shop.delete_object_tagging(Bucket="tag-history", Key="doc", VersionId=v2)["VersionId"] == v2
assert tags_of(Bucket="tag-history", Key="doc") == []
assert tags_of(Bucket="tag-history", Key="doc", VersionId=v1) == [("gen", "old")]
assert error(shop.get_object_tagging, Bucket="tag-history", Key="doc", VersionId="0" * 32)[0] == "NoSuchVersion"
marker = shop.delete_object(Bucket="tag-history", Key="doc")["VersionId"]
assert error(shop.get_object_tagging, Bucket="tag-history", Key="doc")[:2] == ("NoSuchKey", 404)
assert error(shop.put_object_tagging, Bucket="tag-history", Key="doc", VersionId=marker,
             Tagging=tag_set([("a", "b")]))[1] == 405
# A version keeps its tags when another becomes the latest.
shop.delete_object(Bucket="tag-history", Key="doc", VersionId=marker)
shop.delete_object(Bucket="tag-history", Key="doc", VersionId=v2)
assert tags_of(Bucket="tag-history", Key="doc") == [("gen", "old")]
shop.delete_object(Bucket="tag-history", Key="doc", VersionId=v1)
shop.delete_bucket(Bucket="tag-history")

# --- Bucket tags ------------------------------------------------------------------------
assert error(shop.get_bucket_tagging, Bucket="priv-site") == ("NoSuchTagSet", 404)
shop.put_bucket_tagging(Bucket="priv-site", Tagging=tag_set([("cost-center", "42"), ("team", "web")]))
assert shop.get_bucket_tagging(Bucket="priv-site")["TagSet"] == tag_set([("cost-center", "42"), ("team", "web")])["TagSet"]
fifty = [(f"k{i}", "v") for i in range(50)]
for bad in [fifty + [("k50", "v")], [("a", "1"), ("a", "2")], [("k" * 129, "")], [("aws:cost", "1")]]:
    assert error(shop.put_bucket_tagging, Bucket="priv-site", Tagging=tag_set(bad)) == ("InvalidTag", 400)
assert len(shop.get_bucket_tagging(Bucket="priv-site")["TagSet"]) == 2
shop.put_bucket_tagging(Bucket="priv-site", Tagging=tag_set(fifty))
assert len(shop.get_bucket_tagging(Bucket="priv-site")["TagSet"]) == 50
denied(rival.put_bucket_tagging, Bucket="priv-site", Tagging=tag_set([("a", "b")]))
denied(rival.get_bucket_tagging, Bucket="priv-site")
denied(rival.delete_bucket_tagging, Bucket="priv-site")
denied(anon.get_bucket_tagging, Bucket="pub-site")
assert len(shop.get_bucket_tagging(Bucket="priv-site")["TagSet"]) == 50
shop.delete_bucket_tagging(Bucket="priv-site")
assert error(shop.get_bucket_tagging, Bucket="priv-site")[0] == "NoSuchTagSet"

# --- CORS -------------------------------------------------------------------------------
APP = "https://app.example"


def preflight(path, origin=APP, method="PUT", req_headers=None, host=None):
    h = {}
    if origin:
        h["Origin"] = origin
    if method:
        h["Access-Control-Request-Method"] = method
    if req_headers:
        h["Access-Control-Request-Headers"] = req_headers
    return http_request("OPTIONS", path, h, host=host)


assert error(shop.get_bucket_cors, Bucket="pub-site") == ("NoSuchCORSConfiguration", 404)
status, _, body = preflight("/pub-site/index.html")
assert status == 403 and b"<Code>AccessForbidden</Code>" in body, (status, body)
rules = [
    {"ID": "app", "AllowedOrigins": [APP], "AllowedMethods": ["GET", "PUT"],
     "AllowedHeaders": ["content-type", "x-amz-*"], "ExposeHeaders": ["ETag", "x-amz-version-id"],
     "MaxAgeSeconds": 600},
    {"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "HEAD"]},
]
shop.put_bucket_cors(Bucket="pub-site", CORSConfiguration={"CORSRules": rules})
assert shop.get_bucket_cors(Bucket="pub-site")["CORSRules"] == rules
# Refused configurations change nothing.
for bad in [
    [{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}],
    [{"AllowedOrigins": ["https://*.*.example"], "AllowedMethods": ["GET"]}],
    [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "AllowedHeaders": ["x-*-*"]}],
    [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}] * 101,
]:
    assert error(shop.put_bucket_cors, Bucket="pub-site", CORSConfiguration={"CORSRules": bad})[:2] == ("InvalidRequest", 400), bad
assert shop.get_bucket_cors(Bucket="pub-site")["CORSRules"] == rules
denied(rival.put_bucket_cors, Bucket="pub-site", CORSConfiguration={"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["DELETE"]}]})
denied(rival.get_bucket_cors, Bucket="pub-site")
denied(rival.delete_bucket_cors, Bucket="pub-site")
denied(anon.delete_bucket_cors, Bucket="pub-site")
assert shop.get_bucket_cors(Bucket="pub-site")["CORSRules"] == rules

# Preflights (unauthenticated).
status, h, body = preflight("/pub-site/upload.bin", req_headers="Content-Type, X-Amz-Date")
assert status == 200, (status, body)
assert h["access-control-allow-origin"] == APP and h["access-control-allow-credentials"] == "true", h
assert h["access-control-allow-methods"] == "GET, PUT", h
assert h["access-control-allow-headers"] == "content-type, x-amz-date", h
assert h["access-control-max-age"] == "600" and h["access-control-expose-headers"] == "ETag, x-amz-version-id", h
assert "Origin" in h["vary"], h
status, h, _ = preflight("/index.html", req_headers="content-type", host=f"pub-site.{DOMAIN}:{PORT}")
assert status == 200 and h["access-control-allow-origin"] == APP, (status, h)
status, h, _ = preflight("/pub-site/index.html", origin="https://elsewhere.example", method="GET")
assert status == 200 and h["access-control-allow-origin"] == "*" and "access-control-allow-credentials" not in h, h
for origin, method, req_headers in [("https://evil.example", "PUT", None), (APP, "DELETE", None),
                                    (APP, "PUT", "authorization"), ("https://elsewhere.example", "GET", "x-custom"),
                                    (APP, "PATCH", None)]:
    status, h, body = preflight("/pub-site/index.html", origin, method, req_headers)
    assert status == 403 and b"<Code>AccessForbidden</Code>" in body, (origin, method, status, body)
    assert "access-control-allow-origin" not in h
status, _, body = preflight("/pub-site/index.html", method=None)
assert status == 400, (status, body)
status, _, _ = preflight("/priv-site/index.html")
assert status == 403
status, _, _ = preflight("/no-such-bucket/index.html")
assert status == 403

# Actual requests with an Origin get the headers of the rule that matches.
status, h, body = http_request("GET", "/pub-site/index.html", {"Origin": APP})
assert (status, body) == (200, page)
assert h["access-control-allow-origin"] == APP and h["access-control-expose-headers"] == "ETag, x-amz-version-id", h
assert "Origin" in h["vary"], h
status, h, _ = http_request("HEAD", "/pub-site/index.html", {"Origin": "https://elsewhere.example"})
assert status == 200 and h["access-control-allow-origin"] == "*", h
status, h, _ = http_request("GET", "/pub-site/index.html")
assert "access-control-allow-origin" not in h and "vary" not in h, h
# Errors carry them too (a browser may read why it was refused).
status, h, _ = http_request("GET", "/pub-site/missing", {"Origin": APP})
assert status == 404 and h["access-control-allow-origin"] == APP, (status, h)
# Signed requests too (a presigned URL, as a browser would use one).
url = shop.generate_presigned_url("get_object", Params={"Bucket": "pub-site", "Key": "index.html"})
with urllib.request.urlopen(urllib.request.Request(url, headers={"Origin": APP})) as r:
    assert r.read() == page and r.headers["Access-Control-Allow-Origin"] == APP
# A bucket without a configuration adds nothing.
status, h, _ = http_request("GET", "/priv-site/index.html", {"Origin": APP})
assert status == 403 and "access-control-allow-origin" not in h, h
shop.delete_bucket_cors(Bucket="pub-site")
assert error(shop.get_bucket_cors, Bucket="pub-site")[0] == "NoSuchCORSConfiguration"
status, h, _ = http_request("GET", "/pub-site/index.html", {"Origin": APP})
assert status == 200 and "access-control-allow-origin" not in h, h
status, _, _ = preflight("/pub-site/index.html")
assert status == 403

# --- Cleanup ----------------------------------------------------------------------------
for bucket in ["pub-site", "priv-site"]:
    keys = [{"Key": o["Key"]} for o in shop.list_objects_v2(Bucket=bucket).get("Contents", [])]
    if keys:
        shop.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    shop.delete_bucket(Bucket=bucket)
print("boto3 access: all checks passed")
