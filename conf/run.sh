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
conf="$rundir/httpd.conf"
sed -e "s|@RUNDIR@|$rundir|g" -e "s|@PORT@|$port|g" -e "s|@DATA@|$data|g" \
    -e "s|@MODDIR@|/usr/lib/apache2/modules|g" \
    -e "s|@MODULE@|$top/build/mod_ocireg.so|g" \
    "$top/conf/ocireg-run.conf.in" | awk -v ug="$user_group" \
    '{ if ($0 == "@USER_GROUP@") print ug; else print }' > "$conf"
/usr/sbin/apache2 -t -f "$conf"
echo "mod_ocireg: registry on http://127.0.0.1:$port/v2/ storing in $data (Ctrl-C stops)"
exec /usr/sbin/apache2 -f "$conf" -DFOREGROUND
