#!/usr/bin/env bash
# Long fuzzing runs of the C parsers (issue 8): builds the libFuzzer harnesses of tests/fuzz with
# clang (build-fuzz/, -fsanitize=fuzzer,address,undefined) and runs each for FUZZ_SECONDS
# (default 3600) from the committed corpus, then prints one table row per harness: executions,
# executions per second, new inputs found, coverage, and findings (crash/leak/timeout/oom files).
#
#   bench/fuzz.sh                      # an hour each
#   FUZZ_SECONDS=60 bench/fuzz.sh slip # one harness, one minute
#
# New inputs and findings go to bench/out/fuzz/<name>/ (not committed). To keep new coverage,
# minimise it into the corpus: build-fuzz/fuzz_<name> -merge=1 tests/fuzz/corpus/<name> bench/out/fuzz/<name>/new
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-3600}
cc=${FUZZ_CC:-clang-14}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(rfc2217 slip)

command -v "$cc" >/dev/null || { echo "fuzz: $cc not found (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 2; }
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER="$cc" -DMPCTL_FUZZ=ON -DMPCTL_LUA_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
for t in "${targets[@]}"; do cmake --build build-fuzz -j2 --target "fuzz_$t" >/dev/null; done

rows=()
for t in "${targets[@]}"; do
  out=bench/out/fuzz/$t
  mkdir -p "$out/new" "$out/findings"
  log=$out/log.txt
  echo "fuzz: $t for $seconds s (log: $log)" >&2
  set +e
  # One process (fork mode re-reads the corpus per job and runs ~40x slower here): the first
  # finding ends that harness's run, with the input saved under findings/.
  "build-fuzz/fuzz_$t" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
    -artifact_prefix="$out/findings/" "$out/new" "tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || true)
  new=$(find "$out/new" -type f | wc -l)
  findings=$(find "$out/findings" -type f | wc -l)
  rate=$(( ${execs:-0} / (seconds > 0 ? seconds : 1) ))
  rows+=("$(printf '| %-8s | %8s s | %12s | %8s/s | %6s | %5s | %3s (rc %s) |' \
    "$t" "$seconds" "${execs:-?}" "$rate" "$new" "${cov:-?}" "$findings" "$rc")")
done

echo
echo "| harness  | run time   | executions   | rate       | new    | cov   | findings     |"
echo "|----------|------------|--------------|------------|--------|-------|--------------|"
printf '%s\n' "${rows[@]}"
echo
echo "findings are in bench/out/fuzz/<harness>/findings/ (reproduce: build-fuzz/fuzz_<harness> FILE)"
