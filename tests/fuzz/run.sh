#!/bin/sh
# Short libFuzzer regression run for ctest: FUZZER CORPUS SECONDS. New inputs go to a temporary
# folder (libFuzzer writes into its first folder), so the committed corpus is only read.
set -eu
fuzzer=$1 corpus=$2 seconds=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$fuzzer" -max_total_time="$seconds" -max_len=4096 -seed=1 -print_final_stats=1 \
  -artifact_prefix="${FUZZ_ARTIFACTS:-$PWD}/" "$tmp" "$corpus"
