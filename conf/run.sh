#!/bin/sh
# Renders conf/ocireg-run.conf.in and runs httpd in the foreground.
# usage: conf/run.sh REPO_DIR PORT DATA_DIR
set -eu
top=$1 port=$2 data=$3
case "$data" in /*) ;; *) data="$PWD/$data" ;; esac
rundir="$data/.httpd"
mkdir -p "$rundir" "$data"
user_group=""
if [ "$(id -u)" = 0 ]; then
    # httpd refuses to serve as root; its children run as www-data.
    user_group="User www-data
Group www-data"
fi
storage="OCIRegStorage filesystem \"$data\""
if [ -n "${S3_ENDPOINT:-}" ]; then
    # S3 / R2: keys go through the environment, never into httpd.conf.
    : "${S3_BUCKET:?S3_BUCKET is required with S3_ENDPOINT}"
    : "${S3_ACCESS_KEY:?S3_ACCESS_KEY is required with S3_ENDPOINT}"
    : "${S3_SECRET_KEY:?S3_SECRET_KEY is required with S3_ENDPOINT}"
    export OCIREG_S3_ACCESS_KEY="$S3_ACCESS_KEY" OCIREG_S3_SECRET_KEY="$S3_SECRET_KEY"
    storage="OCIRegStorage s3 $S3_ENDPOINT
OCIRegS3Bucket $S3_BUCKET
OCIRegS3Region ${S3_REGION:-auto}
OCIRegS3Credentials env
OCIRegS3SpoolDir \"$rundir\""
    [ -n "${S3_PART_SIZE:-}" ] && storage="$storage
OCIRegS3PartSize $S3_PART_SIZE"
    [ -n "${S3_PREFIX:-}" ] && storage="$storage
OCIRegS3Prefix $S3_PREFIX"
    # A plain http:// endpoint (a local RGW or MinIO) must be asked for.
    [ "${S3_ALLOW_INSECURE:-}" = 1 ] && storage="$storage
OCIRegS3AllowInsecure On"
    chmod 1777 "$rundir"
fi
# CONF_EXTRA: a file of directives for the <Location /v2> (auth rules).
extra=""
if [ -n "${CONF_EXTRA:-}" ]; then
    case "$CONF_EXTRA" in /*) ;; *) CONF_EXTRA="$PWD/$CONF_EXTRA" ;; esac
    [ -r "$CONF_EXTRA" ] || { echo "CONF_EXTRA=$CONF_EXTRA: no such readable file" >&2; exit 1; }
    extra="    Include \"$CONF_EXTRA\""
fi
# MIRROR: a pull-through mirror of that registry for every repository name
# (as docker's registry-mirrors uses it). Credentials go through the
# environment, never into httpd.conf.
mirror=""
if [ -n "${MIRROR:-}" ]; then
    case "$MIRROR" in
    *[[:space:]\"\\\'\<\>]*) echo "MIRROR=$MIRROR: not a registry URL" >&2; exit 1 ;;
    esac
    mirror="    OCIRegMirror * $MIRROR"
    if [ -n "${MIRROR_USER:-}${MIRROR_PASSWORD:-}" ]; then
        : "${MIRROR_USER:?MIRROR_USER is required with MIRROR_PASSWORD}"
        : "${MIRROR_PASSWORD:?MIRROR_PASSWORD is required with MIRROR_USER}"
        export OCIREG_MIRROR_USER="$MIRROR_USER" OCIREG_MIRROR_PASSWORD="$MIRROR_PASSWORD"
        mirror="$mirror credentials=env:OCIREG_MIRROR_USER,OCIREG_MIRROR_PASSWORD"
    fi
    [ -n "${MIRROR_TAG_TTL:-}" ] && mirror="$mirror tag-ttl=$MIRROR_TAG_TTL"
    case "$MIRROR" in
    [Hh][Tt][Tt][Pp]://*)
        # Plain http must be asked for, as for S3.
        if [ "${MIRROR_ALLOW_INSECURE:-}" != 1 ]; then
            echo "MIRROR=$MIRROR is plain http: set MIRROR_ALLOW_INSECURE=1 to allow it" >&2
            exit 1
        fi
        mirror="$mirror insecure" ;;
    esac
fi
conf="$rundir/httpd.conf"
sed -e "s|@RUNDIR@|$rundir|g" -e "s|@PORT@|$port|g" -e "s|@DATA@|$data|g" \
    -e "s|@MODDIR@|/usr/lib/apache2/modules|g" \
    -e "s|@MODULE@|${OCIREG_MODULE:-$top/build/mod_ocireg.so}|g" \
    "$top/conf/ocireg-run.conf.in" | awk -v ug="$user_group" \
    -v st="$storage" -v ex="$extra" -v mi="$mirror" \
    '{ if ($0 == "@USER_GROUP@") print ug; else if ($0 == "@STORAGE@") print st;
       else if ($0 == "@CONF_EXTRA@") print ex; else if ($0 == "@MIRROR@") print mi;
       else print }' > "$conf"
/usr/sbin/apache2 -t -f "$conf"
where=$data
[ -n "${S3_ENDPOINT:-}" ] && where="$S3_ENDPOINT bucket $S3_BUCKET"
[ -n "$mirror" ] && where="$where, a pull-through mirror of $MIRROR"
echo "mod_ocireg: registry on http://127.0.0.1:$port/v2/ storing in $where (Ctrl-C stops)"
exec /usr/sbin/apache2 -f "$conf" -DFOREGROUND
