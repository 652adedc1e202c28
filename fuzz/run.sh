#!/usr/bin/env bash
# Runs the fuzz targets (all, or those named) for $FUZZ_SECONDS each (default 600), two at a
# time, on nightly Rust with cargo-fuzz (`cargo install cargo-fuzz`; no sanitizer: the code
# under test is safe Rust, and libFuzzer's -rss_limit_mb and -timeout still catch runaway
# allocations and hangs). Seeds come from ./seeds.sh; findings land in artifacts/<target>/;
# each target's log is logs/<target>.log, and the last lines printed are each run's totals.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-600}
all=(cifar_batch image_decode image_folder checkpoint manifest train_config search_spec state_dict)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
[ -d corpus ] || ./seeds.sh
cargo +nightly fuzz build -s none
mkdir -p logs
run() {
  local target=$1 max_len
  case $target in
    state_dict) max_len=200000 ;;
    image_decode | image_folder | checkpoint) max_len=65536 ;;
    *) max_len=16384 ;;
  esac
  mkdir -p "corpus/$target" "artifacts/$target"
  local start=$SECONDS
  # Temporary image folders in memory, when the machine has /dev/shm.
  TMPDIR=$([ -d /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}") \
    cargo +nightly fuzz run -s none "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 -max_len="$max_len" \
    -print_final_stats=1 -artifact_prefix="artifacts/$target/" >"logs/$target.log" 2>&1 || true
  local runs
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$target.log" | grep -o '[0-9]*$' || echo "?")
  echo "$target: $runs executions in $((SECONDS - start)) s, corpus $(ls "corpus/$target" | wc -l), findings $(ls "artifacts/$target" | wc -l)"
}
export -f run
export seconds
printf '%s\n' "${targets[@]}" | xargs -P 2 -I{} bash -c 'run {}'
