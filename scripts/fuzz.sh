#!/usr/bin/env bash
# fuzz.sh: run every Go fuzz target in the repository for a set time each
# and record executions and findings in docs/benchmarks.md (the section
# between <!-- bench:fuzz --> and <!-- /bench:fuzz -->).
#
#   scripts/fuzz.sh                 # FUZZTIME=10s per target
#   FUZZTIME=10m scripts/fuzz.sh    # the issue's goal: >= 10M execs per target
#   scripts/fuzz.sh FuzzJUnit       # only targets whose name matches
#
# Targets are found with `grep -rn 'func Fuzz' --include=*_test.go`. Seeds:
# each target's own f.Add seeds (most read ../shared/testdata already), plus,
# for targets that take one []byte or string argument and do not read
# ../shared/testdata, the files listed in SEEDS below, written into the Go
# fuzz cache (GOCACHE/fuzz/...), never into the repository. A crash makes
# `go test -fuzz` write the input to <package>/testdata/fuzz/<Target>/: commit
# it and it runs as a regression test with every `go test` from then on.
# FUZZ_PARALLEL (default 1) bounds the fuzzing workers: the machine is shared.
# The full output of a target that fails is kept in FUZZ_LOG_DIR (default
# /tmp/shiploop-fuzz-logs). With a target pattern the table is printed, and
# docs/benchmarks.md is left alone (it records full runs only).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZTIME=${FUZZTIME:-10s}
PARALLEL=${FUZZ_PARALLEL:-1}
MATCH=${1:-.}
DOC=docs/benchmarks.md
LOGS=${FUZZ_LOG_DIR:-/tmp/shiploop-fuzz-logs}
mkdir -p "$LOGS"
GOCACHE=$(go env GOCACHE)

# SEEDS: "package-dir Target glob..." for targets without shared seeds. The
# YAML parsers get the SARIF files: JSON documents are YAML flow documents,
# deeply nested, so they reach paths the parsers' own seeds do not.
SEEDS=(
  "services/builds/pipeline FuzzParse ../shared/testdata/lint/sarif/*.sarif"
  "services/deploys FuzzParseConfig ../shared/testdata/lint/sarif/*.sarif"
)

# seed DIR TARGET FILE...: write FILEs as []byte corpus entries of TARGET.
seed() {
  local dir=$1 target=$2; shift 2
  local pkg
  pkg=$(cd "$dir" && go list . 2>/dev/null) || return 0
  local out="$GOCACHE/fuzz/$pkg/$target"
  mkdir -p "$out"
  python3 - "$out" "$@" <<'PY'
import hashlib, os, sys
out = sys.argv[1]
for p in sys.argv[2:]:
    try:
        data = open(p, 'rb').read()[:64 << 10]
    except OSError:
        continue
    lit = ''.join(chr(b) if 0x20 <= b < 0x7f and b not in (0x22, 0x5c) else '\\x%02x' % b for b in data)
    body = 'go test fuzz v1\n[]byte("%s")\n' % lit
    name = 'shared-' + hashlib.sha256(data).hexdigest()[:16]
    with open(os.path.join(out, name), 'w') as f:
        f.write(body)
PY
}

for s in "${SEEDS[@]}"; do
  read -r dir target globs <<<"$s"
  # shellcheck disable=SC2086
  [ -d "$dir" ] && seed "$dir" "$target" $globs
done

rows=()
total_execs=0
failures=0
start=$(date -u +'%Y-%m-%d %H:%M UTC')
while IFS=: read -r file _ rest; do
  target=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' <<<"$rest")
  [[ $target =~ $MATCH ]] || continue
  dir=$(dirname "${file#./}")
  log=$(mktemp)
  echo "== $dir $target ($FUZZTIME)" >&2
  (cd "$dir" && go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -parallel "$PARALLEL" . >"$log" 2>&1)
  rc=$?
  execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  execs=${execs:-0}
  elapsed=$(grep -oE 'elapsed: [0-9]+s' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  rate=""
  [ -n "$elapsed" ] && [ "$elapsed" -gt 0 ] && rate=$((execs / elapsed))
  if [ $rc -eq 0 ]; then
    finding="none"
  elif grep -q 'Failing input written to' "$log"; then
    finding="CRASH: $(grep -oE 'testdata/fuzz/[^ ]+' "$log" | head -1) ($(grep -m1 -E -- '--- FAIL|panic:|fuzz_test.go|_test.go:[0-9]+:' "$log" | tr '|' '/' | cut -c1-120))"
    failures=$((failures + 1))
  else
    why=$(grep -m1 -E 'hung|terminated unexpectedly|panic:|deadline|cannot|undefined|error' "$log" | tr '|' '/' | cut -c1-140)
    finding="failed without a crasher: ${why:-see log}"
    failures=$((failures + 1))
  fi
  [ $rc -ne 0 ] && cp "$log" "$LOGS/${dir//\//_}_${target}.log"
  total_execs=$((total_execs + execs))
  rows+=("| \`$dir\` | $target | $execs | ${rate:-?} | $finding |")
  tail -3 "$log" >&2
  rm -f "$log"
done < <(grep -rn 'func Fuzz' --include=*_test.go . | grep -v '/\.' | sort)

cores=$(nproc)
load=$(cut -d' ' -f1 /proc/loadavg)
section=$(mktemp)
{
  echo "<!-- bench:fuzz -->"
  echo "\`scripts/fuzz.sh\` with FUZZTIME=$FUZZTIME per target, FUZZ_PARALLEL=$PARALLEL worker(s), $start on $cores shared cores (load average $load at the end). Execs are go test -fuzz's own count (seed corpus runs included); the goal is at least 10 million per target without a crash, which needs FUZZTIME of about ten minutes or more per target at these rates."
  echo
  echo "| package | target | execs | execs/s | findings |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Total: $total_execs executions over ${#rows[@]} targets; $failures target(s) crashed or did not run."
  echo "<!-- /bench:fuzz -->"
} >"$section"

if [ "$MATCH" != "." ]; then
  cat "$section"
elif grep -q '<!-- bench:fuzz -->' "$DOC"; then
  python3 - "$DOC" "$section" <<'PY'
import re, sys
doc, sec = sys.argv[1], open(sys.argv[2]).read().strip()
s = open(doc).read()
s = re.sub(r'<!-- bench:fuzz -->.*?<!-- /bench:fuzz -->', lambda m: sec, s, flags=re.S)
open(doc, 'w').write(s)
PY
else
  {
    echo
    echo "## Fuzzing"
    echo
    echo "Every \`func Fuzz\` target in the repository, run by \`scripts/fuzz.sh\` (see its header for"
    echo "options and seeds). A crash leaves its input under the package's testdata/fuzz/, where"
    echo "\`go test\` replays it as a regression test."
    echo
    cat "$section"
  } >>"$DOC"
fi
rm -f "$section"
echo "fuzz: $total_execs execs over ${#rows[@]} targets, $failures failing; recorded in $DOC" >&2
[ "$failures" -eq 0 ]
