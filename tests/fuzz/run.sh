#!/bin/sh
# Runs one fuzz target for a number of seconds on a scratch copy of its
# committed corpus, so new inputs never land in tests/fuzz/corpus.
# Prints the target's "Done N runs" line; exits non-zero on any finding,
# leaving the crashing input in <dir>/artifacts.
# usage: run.sh <build/fuzz> <name> <seconds>
set -u
dir=$1 name=$2 secs=$3
src=tests/fuzz
work=$dir/work/$name
log=$dir/$name.log
rm -rf "$work"
mkdir -p "$work" "$dir/artifacts"
cp "$src/corpus/$name"/* "$work"/ 2>/dev/null || true
set -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$dir/artifacts/$name-" -print_final_stats=1
[ -f "$src/$name.dict" ] && set -- "$@" -dict="$src/$name.dict"
case $name in
    manifest|s3xml) set -- "$@" -max_len=65536 ;;
    *) set -- "$@" -max_len=4096 ;;
esac
"$dir/fuzz_$name" "$@" "$work" >"$log" 2>&1
rc=$?
done_line=$(grep -a '^Done [0-9]* runs' "$log" | tail -n 1)
if [ "$rc" -ne 0 ] || [ -z "$done_line" ]; then
    echo "fuzz_$name: FAILED (exit $rc), see $log" >&2
    grep -a -A 30 -m 1 'ERROR:\|runtime error\|deadly signal' "$log" >&2
    exit 1
fi
echo "fuzz_$name: $done_line"
