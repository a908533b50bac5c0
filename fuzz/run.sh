#!/usr/bin/env bash
# Run every atheris harness for a share of SECONDS, one after the other.
#
#   fuzz/run.sh SECONDS [libFuzzer options...]
#
# Corpora grow in build/fuzz/corpus/<harness> (kept between runs), findings are written
# to build/fuzz/findings/, logs to build/fuzz/logs/. Prints one summary line per
# harness; exits 1 if any harness found something (an exception other than the expected
# error type, a timeout, an out-of-memory or a crash).
set -uo pipefail

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
  echo "usage: $0 SECONDS [libFuzzer options...]" >&2
  exit 2
fi
seconds=$1
shift

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out="$(dirname "$here")/build/fuzz"
python=${PYTHON:-python3}
mkdir -p "$out/findings" "$out/logs"
"$python" "$here/seeds.py" "$out/corpus" || exit 2

# Shares of the time: the weight loader has the most code behind it.
declare -A share=([weights]=20 [npz]=15 [roundtrip]=15 [idx]=15 [onnx]=12 [keras]=12 [torch]=11)
status=0
printf '%-8s %10s %8s %8s %8s %s\n' harness execs cov ft corpus result
for harness in weights npz roundtrip idx onnx keras torch; do
  budget=$(( seconds * share[$harness] / 100 ))
  (( budget < 1 )) && budget=1
  log="$out/logs/$harness.log"
  # rss_limit: a weight file may legitimately allocate what it holds, but no seed or
  # mutation here comes near 2 GB; beyond that is a resource-bomb finding.
  "$python" "$here/fuzz_$harness.py" \
    -max_total_time="$budget" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/findings/$harness-" "$@" "$out/corpus/$harness" > "$log" 2>&1
  code=$?
  stats=$(grep -E '^#[0-9]+' "$log" | tail -1)
  execs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')
  cov=$(grep -oE 'cov: [0-9]+' <<< "$stats" | grep -oE '[0-9]+')
  ft=$(grep -oE 'ft: [0-9]+' <<< "$stats" | grep -oE '[0-9]+')
  corpus=$(ls "$out/corpus/$harness" | wc -l)
  if (( code == 0 )); then
    result="no findings in ${budget}s"
  else
    result="FINDING (exit $code): $(grep -m1 -E 'finding signature|ERROR: libFuzzer' "$log"), see $log"
    status=1
  fi
  printf '%-8s %10s %8s %8s %8s %s\n' "$harness" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$corpus" "$result"
done
exit $status
