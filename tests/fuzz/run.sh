#!/bin/sh
# Builds the libFuzzer targets and runs each in turn for a while:
#   tests/fuzz/run.sh [seconds] [parse|chunked|proxy|ws ...]  (default: 30 s, all four)
# Needs clang with its fuzzer runtime. The growing corpus and any crash files
# go to tests/fuzz/build/; the seeds in tests/fuzz/corpus/ are only read.
set -eu

secs=${1:-30}
[ $# -gt 0 ] && shift
targets=${*:-parse chunked proxy ws}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$here/build"
cc=${CC:-clang}
mkdir -p "$out"

for t in $targets; do
    bin="$out/fuzz_$t"
    $cc -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=all -I"$root/csrc" -o "$bin" "$here/fuzz_$t.c" \
        "$root/csrc/fk_parse.c" "$root/csrc/fk_chunked.c" "$root/csrc/fk_proxy.c" \
        "$root/csrc/fk_ws.c"
    dict="$here/$t.dict"
    [ -e "$dict" ] || dict="$here/http.dict"
    mkdir -p "$out/corpus_$t"
    log="$out/fuzz_$t.log"
    status=0
    (cd "$out" && "$bin" -max_total_time="$secs" -print_final_stats=1 -dict="$dict" \
        -artifact_prefix="$out/crash_${t}_" "$out/corpus_$t" "$here/corpus/$t") >"$log" 2>&1 ||
        status=$?
    echo "== fuzz_$t: ${secs} s"
    grep -E '^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb' \
        "$log" || true
    if [ "$status" -ne 0 ]; then
        echo "fuzz_$t FAILED (exit $status), see $log"
        grep -E 'ERROR|SUMMARY|Test unit written' "$log" || true
        exit "$status"
    fi
done
