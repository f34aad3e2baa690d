#!/bin/sh
# Installs what `make bench` needs beyond `make deps`: the competitor
# (Debian's docker-registry, CNCF distribution 2.8), the load tools, skopeo,
# boto3 and the Ceph RGW of tests/fixtures/rgw.sh. Only what is missing.
set -eu
pkgs="docker-registry wrk apache2-utils skopeo python3 python3-boto3 curl openssl radosgw ceph-mon ceph-osd"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "make bench needs:$missing" >&2
    echo "run: sudo apt-get install -y --no-install-recommends$missing" >&2
    exit 1
fi
echo "installing:$missing"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
