#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/<target>/ from the
requests the integration suite sends and the spec's examples. Run from the
repository root; the session seeds come from build/fuzz/session_seeds
(`make fuzz-seeds`), a tiny program that encodes real sessions."""
import hashlib, json, os, sys

ROOT = "tests/fuzz/corpus"
D1 = "sha256:" + hashlib.sha256(b"a").hexdigest()
D2 = "sha256:" + hashlib.sha256(b"b").hexdigest()
D512 = "sha512:" + hashlib.sha512(b"a").hexdigest()
UUID = "3f1d2c7e-5a4b-4c3d-9e8f-0123456789ab"


def write(target, items):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        os.unlink(os.path.join(d, old))
    for i, data in enumerate(items):
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, "seed-%03d" % i), "wb") as f:
            f.write(data)


names = [
    "library/ubuntu", "foo", "a/b/c", "my-repo_1.2__x", "it/cat/a",
    "iso/repo", "a--b", "BAD", "a//b", "../etc", "a/./b", "latest",
    "v1.0.0", "_tag", "-bad", "x" * 129, D1, D512, "sha256:short",
    "md5:abc", "SHA256:" + "A" * 64, "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
    UUID, UUID.upper(), ".INVALID_MANIFEST_NAME",
    "/v2/", "/v2", "/v2/_catalog", "/v2/foo/blobs/uploads/",
    "/v2/foo/blobs/uploads/" + UUID, "/v2/foo/manifests/latest",
    "/v2/foo/tags/list", "/v2/foo/referrers/" + D1,
    "/v2/library/ubuntu/blobs/" + D1, "/v2/a/blobs/uploads/../../../../etc/passwd",
    "/v2/a/blobs/uploads/blobs/uploads/x", "/v2/blobs/blobs/blobs",
    "/v2//etc/manifests/x", "/v2/a\x00/manifests/x",
    "/v2/foo/manifests/" + D512,
]
write("names", names)

ranges = [
    "0-999", "1000-4095", "bytes 0-99/100", "bytes=0-9", "bytes 0-9/*",
    "0-9223372036854775806", "0-9223372036854775807",
    "bytes 9223372036854775806-9223372036854775807/9223372036854775807",
    "99999999999999999999-1", "5-4", "bytes=0-", "bytes=-10", "bytes=10-20",
    "bytes=0-0,5-9", "bytes=-0", "bytes=9223372036854775807-",
    "n=10&last=foo", "n=0", "n=-1", "n=2147483648", "n=2&last=it/cat/a",
    "last=../../../../etc/passwd",
    "mount=" + D1 + "&from=library/ubuntu",
    "digest=" + D1.replace(":", "%3A"), "digest=" + D1 + "&digest=x",
    "_state=3", "_state=18446744073709551616", "artifactType=application/vnd.x+json",
    "artifactType=application%2Fvnd.example.sbom.v1", "n=%00", "n=%4", "digest",
    "&&&n=1&", "mount=&from=",
]
write("ranges", ranges)


def desc(mt, d=D1, size=1234, **kw):
    o = {"mediaType": mt, "size": size, "digest": d}
    o.update(kw)
    return o


OCI_M = "application/vnd.oci.image.manifest.v1+json"
OCI_I = "application/vnd.oci.image.index.v1+json"
DOCKER_M = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_L = "application/vnd.docker.distribution.manifest.list.v2+json"
image = {
    "schemaVersion": 2, "mediaType": OCI_M,
    "config": desc("application/vnd.oci.image.config.v1+json", D2, 7023),
    "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", D1, 32654),
               desc("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", D2)],
    "annotations": {"com.example.key1": "value1"},
}
artifact = {
    "schemaVersion": 2, "mediaType": OCI_M,
    "artifactType": "application/vnd.example.sbom.v1",
    "config": desc("application/vnd.oci.empty.v1+json",
                   "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", 2,
                   data="e30="),
    "layers": [desc("application/vnd.example.sbom.v1", D1)],
    "subject": desc(OCI_M, D2),
    "annotations": {"org.opencontainers.image.created": "2022-01-01T14:42:55Z",
                    "org.example.sbom.format": "json"},
}
index = {
    "schemaVersion": 2, "mediaType": OCI_I,
    "manifests": [desc(OCI_M, D1, platform={"architecture": "amd64", "os": "linux"}),
                  desc(OCI_M, D2, artifactType="application/vnd.example.signature.v1")],
}
docker = {"schemaVersion": 2, "mediaType": DOCKER_M,
          "config": desc("application/vnd.docker.container.image.v1+json", D2),
          "layers": [desc("application/vnd.docker.image.rootfs.diff.tar.gzip", D1),
                     desc("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", D2,
                          urls=["https://example.com/layer"])]}
dlist = {"schemaVersion": 2, "mediaType": DOCKER_L, "manifests": [desc(DOCKER_M, D1)]}
index_subject = dict(index, subject=desc(OCI_I, D1), artifactType="application/x")
noversion = dict(image); del noversion["schemaVersion"]
manifests = [
    OCI_M + "\n" + json.dumps(image),
    "\n" + json.dumps(artifact),
    OCI_I + "; charset=utf-8\n" + json.dumps(index),
    DOCKER_M + "\n" + json.dumps(docker),
    DOCKER_L + "\n" + json.dumps(dlist),
    "application/json\n" + json.dumps(index_subject),
    "application/octet-stream\n" + json.dumps({"schemaVersion": 2, "config": image["config"]}),
    OCI_I + "\n" + json.dumps(image),
    "\n" + json.dumps(noversion),
    "\n" + '{"schemaVersion":2,"schemaVersion":2}',
    "\n" + '{"x":[{},{},{},{},{}]}',
    "\n" + "[" * 64 + "]" * 64,
    "\n" + json.dumps(dict(artifact, subject=desc(OCI_M, "sha256:bad"))),
    "\n" + json.dumps(dict(artifact, annotations={"k": "\u00e9\u2028" * 8})),
    "text/plain\n{}",
]
write("manifest", manifests)

xml = '<?xml version="1.0" encoding="UTF-8"?>\n'
s3 = [
    "\x00" + xml + '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket</Name><Prefix>repos/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken><Contents><Key>repos/library/ubuntu/_manifests/tags/latest</Key><LastModified>2026-11-29T02:00:00.000Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>71</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>repos/a&amp;b</Key></Contents><CommonPrefixes><Prefix>repos/x/</Prefix></CommonPrefixes></ListBucketResult>',
    "\x00" + xml + '<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>',
    "\x05" + '<ListBucketResult><Contents><Key>ab</Key></Contents><Contents><Key></Key></Contents><Contents/></ListBucketResult>',
    "\x01" + xml + '<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>bucket</Bucket><Key>data/' + UUID + '</Key><UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId></InitiateMultipartUploadResult>',
    "\x01" + '<InitiateMultipartUploadResult><UploadId></UploadId></InitiateMultipartUploadResult>',
    "\x02" + xml + '<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>bucket</Bucket><Key>data/x</Key><UploadId>XXBsb2FkIElEIGZvciBlbHZpbmcncyVcdS1tb3ZpZS5tMnRzEEEwbG9hZA</UploadId><PartNumberMarker>1</PartNumberMarker><NextPartNumberMarker>3</NextPartNumberMarker><MaxParts>2</MaxParts><IsTruncated>true</IsTruncated><Part><PartNumber>3</PartNumber><LastModified>2010-11-10T20:48:33.000Z</LastModified><ETag>"aaaa18db4cc2f85cedef654fccc4a4x8"</ETag><Size>10485760</Size></Part><Part><PartNumber>2</PartNumber><ETag>"7778aef83f66abc1fa1e8477f296d394"</ETag><Size>5242880</Size></Part></ListPartsResult>',
    "\x02" + '<ListPartsResult><Part><PartNumber>-2147483648</PartNumber><ETag>a</ETag></Part><Part><PartNumber>2147483647</PartNumber><ETag>b</ETag></Part><Part><PartNumber>1</PartNumber></Part><Part><ETag>c</ETag><Size>99999999999999999999</Size></Part></ListPartsResult>',
    "\x03" + xml + '<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>bucket</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><NextKeyMarker>data/b</NextKeyMarker><NextUploadIdMarker>QpMtYWJpZGU</NextUploadIdMarker><MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated><Upload><Key>data/a</Key><UploadId>XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw</UploadId><Initiator><ID>x</ID></Initiator><StorageClass>STANDARD</StorageClass><Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload><Upload><Key>data/b</Key></Upload><Upload><UploadId>y</UploadId></Upload></ListMultipartUploadsResult>',
    "\x04" + xml + '<Error><Code>NoSuchKey</Code><Message>The resource you requested does not exist</Message><Resource>/mybucket/myfoto.jpg</Resource><RequestId>4442587FB7D0A2F9</RequestId></Error>',
    "\x04" + '<Error><Code>NoSuchUpload</Code><Message/></Error>',
    "\x04" + '<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>',
    "\x04" + '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><Error><Code>&b;</Code></Error>',
    "\x04" + '<Error><Code><![CDATA[X]]></Code><x:Message xmlns:x="urn:x">m</x:Message></Error>',
    "\x00" + '<a><b>',
    "\x04" + 'not xml at all',
    # From 0x80 the first byte is one byte, not UTF-8: bytes.
    b"\x80" + str.encode(xml + '<CopyObjectResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LastModified>2026-11-29T02:00:00.000Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag></CopyObjectResult>'),
    b"\x80" + str.encode('   \n\n' + xml + '<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>'),
    b"\x82" + str.encode('<CopyPartResult><ETag></ETag></CopyPartResult>'),
    b"\x81" + str.encode(xml + '<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Deleted><Key>a</Key></Deleted><Error><Key>b&amp;c</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error><Error><Key>d</Key><Code>NoSuchKey</Code></Error><Error><Code>SlowDown</Code></Error></DeleteResult>'),
    b"\x81" + str.encode('<DeleteResult/>'),
]
write("s3xml", s3)

sig = [
    "blobs/sha256/" + D1[7:] + "\n",
    "uploads/" + UUID + "/data\nuploadId=abc&partNumber=1",
    "repos/library/ubuntu/_manifests/tags/latest\nlist-type=2&prefix=repos%2F&delimiter=%2F",
    "data/x\nuploads",
    "a b+c/%/\u00e9/\x01\x7f\xff\nx=1&x=0&&=&a",
    "key\nX-Amz-Expires=300&X-Amz-Algorithm=AWS4-HMAC-SHA256",
    "20261129T020000Z\nuploadId=%zz&partNumber=%2",
    "//a//b/\n%41%42=%",
    "~-._\nuploads=&prefix=a%20b",
]
write("sigv4", sig)

H_ES = '{"typ":"JWT","alg":"ES256","kid":"ABCD:EFGH"}'
CLAIMS = ('{"iss":"iss","sub":"alice","aud":"aud","exp":1800000300,'
          '"nbf":1799999990,"iat":1799999990,"jti":"x","access":[{"type":'
          '"repository","name":"a/b","actions":["pull","push"]},{"type":'
          '"registry","name":"catalog","actions":["*"]}]}')
token = [
    H_ES + "\n" + CLAIMS,
    H_ES + "\n" + '{"iss":"iss","aud":["x","aud"],"exp":1800000001.5}',
    H_ES + "\n" + '{"iss":"iss","aud":"aud","exp":1,"nbf":1900000000}',
    H_ES + "\n" + '{"iss":"iss","aud":"aud","exp":1800000300,"access":[{"type":"repository","name":"a"}]}',
    '{"alg":"RS256","crit":["x"]}\n{}',
    '{"alg":"none"}\n' + CLAIMS,
    # compact tokens as a client sends them (signatures that never verify)
    "eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjF9." + "A" * 86,
    "eyJhbGciOiJSUzI1NiJ9.e30.AAAA",
    "eyJhbGciOiJub25lIn0.e30.",
    "a.b.c.d.e", "..", "e30=.e30.e30",
    # found by fuzzing: an exp beyond 64 bits
    H_ES + "\n" + '{"iss":"iss","aud":"aud","exp":1800e000300}',
]
write("token", token)

seeds = "build/fuzz/session_seeds"
if os.path.isdir(seeds):
    items = []
    for n in sorted(os.listdir(seeds)):
        with open(os.path.join(seeds, n), "rb") as f:
            items.append(f.read())
    items += [b"ocireg-lock/1 web1 1f2e3d4c5b6a7988 4242 1796000000000000\n",
              b"ocireg-lock/1 " + b"h" * 64 + b" ffffffffffffffff 9223372036854775807 -9223372036854775808",
              b"ocireg-lock/1 a 0 -1 0"]
    write("session", items)
else:
    print("no %s: run `make fuzz-seeds` first for the session corpus" % seeds,
          file=sys.stderr)
