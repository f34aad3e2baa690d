#!/bin/sh
# Installs the Debian packages mod_ocireg needs: `run` to build and serve,
# `test` to also run every test. Only what is missing is installed.
set -eu
run_pkgs="apache2 apache2-dev libapr1-dev libaprutil1-dev libjansson-dev libssl-dev libcurl4-openssl-dev make gcc pkg-config"
test_pkgs="$run_pkgs libcmocka-dev clang-14 libfuzzer-14-dev libclang-rt-14-dev python3 python3-pytest python3-requests python3-boto3 skopeo apache2-utils curl openssl radosgw ceph-mon ceph-osd slapd ldap-utils docker-registry"
# slapd: the LDAP tests start their own on 127.0.0.1 with a private
# configuration and database; a system slapd the package may start is not used.
# docker-registry (CNCF distribution): the mirror tests' upstreams, each
# started on 127.0.0.1 with its own configuration; a system one is not used.
case "${1:-run}" in
    run) pkgs=$run_pkgs ;;
    test) pkgs=$test_pkgs ;;
    *) echo "usage: $0 run|test" >&2; exit 2 ;;
esac
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "mod_ocireg needs:$missing" >&2
    echo "run: sudo apt-get install -y --no-install-recommends$missing" >&2
    exit 1
fi
echo "installing:$missing"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
# The docker-registry package starts a system registry on *:5000 where an
# init system lets it; the tests never use it, and nothing of theirs should
# listen beyond loopback: stopped again if this run installed it.
case " $missing " in
    *" docker-registry "*)
        if [ -x /etc/init.d/docker-registry ]; then
            /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
        fi ;;
esac
