#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (cargo-fuzz, libFuzzer) for SECONDS each, one at a time,
# and prints per target the executions and crashes. Exits 1 if any target crashed (the input
# is kept in fuzz/artifacts/<target>/; replay it with `fuzz/target/<triple>/release/<target>
# <file>`).
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]     (default 20 s, all targets)
#
# Needs a nightly toolchain (`cargo +nightly`); without one it says so and exits 0: fuzzing
# is optional. Installs cargo-fuzz when missing. The build is its own workspace with its own
# target dir (fuzz/target): coverage instrumentation makes it unshareable.
# FUZZ_SANITIZER=address|none (default none: every crate of ours forbids `unsafe`, and the
# uninstrumented build runs ~2x faster); debug assertions and overflow checks are always on.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-20}
shift || true
sanitizer=${FUZZ_SANITIZER:-none}
all=(canonical_json ids did_key log_ops log_mutate bundle roam_api)
[ $# -gt 0 ] && targets=("$@") || targets=("${all[@]}")

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "== fuzz: no nightly toolchain (cargo +nightly); fuzzing skipped — it is optional"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

export CARGO_TARGET_DIR="$PWD/fuzz/target"
# The main workspace's versions, plus what only the fuzz workspace needs (libfuzzer-sys).
[ -e fuzz/Cargo.lock ] || cp Cargo.lock fuzz/Cargo.lock
unset RUSTFLAGS
echo "== fuzz: building ${#targets[@]} targets (sanitizer $sanitizer, debug assertions on)"
(cd fuzz && cargo +nightly fuzz build -s "$sanitizer" -a)
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin_dir="$CARGO_TARGET_DIR/$triple/release"

python3 fuzz/seed.py 2>/dev/null
if [ ! -e fuzz/corpus/roam_api/seed-0 ] && [ -x "$bin_dir/roam_api" ]; then
  mkdir -p fuzz/corpus/roam_api
  ROAM_FUZZ_SEEDS=fuzz/corpus/roam_api "$bin_dir/roam_api" -runs=0 fuzz/corpus/roam_api \
    >/dev/null 2>&1 || true
fi

summary=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  before=$(find "fuzz/artifacts/$t" -type f | wc -l)
  log="fuzz/artifacts/$t.log"
  echo "== fuzz $t: $secs s"
  rc=0
  "$bin_dir/$t" "fuzz/corpus/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  crashes=$(($(find "fuzz/artifacts/$t" -type f | wc -l) - before))
  if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
  if [ "$crashes" -ne 0 ]; then
    failed=1
    grep -E "panicked|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -8 || true
  fi
  summary+=("$(printf '%-16s %6ss %12s execs %8s/s %3s crashes' "$t" "$secs" "${execs:-?}" "${rate:-?}" "$crashes")")
done
echo "== fuzz summary"
printf '   %s\n' "${summary[@]}"
exit "$failed"
