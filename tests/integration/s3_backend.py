"""The S3 side of the suite: a throw-away Ceph RGW (tests/fixtures/rgw.sh)
and a boto3 client to look at the bucket behind the registry's back."""

import os
import secrets
import subprocess
from pathlib import Path

from httpd_harness import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
RGW_SH = REPO_ROOT / "tests" / "fixtures" / "rgw.sh"


class Rgw:
    def __init__(self, base_dir):
        self.dir = Path(base_dir) / "rgw"
        self.port = free_port()
        self.access_key = "OCIREGTEST" + secrets.token_hex(5).upper()
        self.secret_key = secrets.token_hex(20)
        self.bucket = "ocireg-it"
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.started = False

    def start(self):
        # One bucket index shard: ListObjectsV2 pages are then full (max-keys
        # keys unless at the end), as on AWS S3; a sharded RGW index answers
        # short pages (998 of 1000), and the listing tests count requests.
        extra = os.environ.get("RGW_EXTRA_CONF", "")
        env = dict(os.environ, RGW_EXTRA_CONF=(
            extra + "\nrgw_override_bucket_index_max_shards = 1").strip())
        p = subprocess.run(["bash", str(RGW_SH), "start", str(self.dir), str(self.port),
                            self.access_key, self.secret_key, self.bucket],
                           capture_output=True, text=True, timeout=300, env=env)
        if p.returncode != 0:
            raise RuntimeError(f"rgw.sh start failed:\n{p.stdout}\n{p.stderr}")
        self.started = True
        print(p.stdout.strip().splitlines()[-1] if p.stdout.strip() else "rgw started")
        return self

    def stop(self):
        if self.started:
            subprocess.run(["bash", str(RGW_SH), "stop", str(self.dir)],
                           capture_output=True, text=True, timeout=120)
            self.started = False

    def rgw_pid(self):
        return int((self.dir / "run" / "rgw.pid").read_text().strip())

    def cred_file(self, base_dir, name="s3.cred", secret=None):
        f = Path(base_dir) / name
        f.write_text(f"access_key = {self.access_key}\n"
                     f"secret_key = {secret or self.secret_key}\n")
        f.chmod(0o600)  # read by httpd at configuration time, as root
        return f

    def storage(self, base_dir, name, **kw):
        d = {"endpoint": self.endpoint, "bucket": self.bucket,
             "prefix": f"{name}-{secrets.token_hex(3)}/",
             "cred_file": str(kw.pop("cred_file", None) or self.cred_file(base_dir))}
        d.update(kw)
        return d

    def client(self):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.endpoint,
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key,
                            region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}))

    def multipart_uploads(self, prefix=""):
        c = self.client()
        out = []
        for u in c.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix).get("Uploads", []):
            parts = c.list_parts(Bucket=self.bucket, Key=u["Key"],
                                 UploadId=u["UploadId"]).get("Parts", [])
            out.append((u["Key"], u["UploadId"], [p["Size"] for p in parts]))
        return out

    def stop_gateway(self):
        """Stops radosgw only: the bucket's data stays."""
        subprocess.run(["bash", str(RGW_SH), "stop-gateway", str(self.dir)],
                       check=True, capture_output=True, text=True, timeout=120)

    def start_gateway(self):
        subprocess.run(["bash", str(RGW_SH), "start-gateway", str(self.dir)],
                       check=True, capture_output=True, text=True, timeout=120)
