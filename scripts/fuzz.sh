#!/usr/bin/env bash
# fuzz.sh: run every Go fuzz target in the repository for a set time each
# and record executions and findings in docs/benchmarks.md (the section
# between <!-- bench:fuzz --> and <!-- /bench:fuzz -->).
#
#   scripts/fuzz.sh                 # FUZZTIME=10s per target
#   FUZZTIME=10000000x scripts/fuzz.sh   # the goal: each target runs 10M execs
#   scripts/fuzz.sh FuzzJUnit       # only targets matching a regexp, which
#   scripts/fuzz.sh 'event FuzzParse$'  # is matched against "<package dir> <target>"
#
# Targets are found with `grep -rn 'func Fuzz' --include=*_test.go`. Seeds:
# each target's own f.Add seeds (most read ../shared/testdata already), plus,
# for targets that take one []byte or string argument and do not read
# ../shared/testdata, the files listed in SEEDS below, written into the Go
# fuzz cache (GOCACHE/fuzz/...), never into the repository. A crash makes
# `go test -fuzz` write the input to <package>/testdata/fuzz/<Target>/: commit
# it and it runs as a regression test with every `go test` from then on.
# FUZZ_PARALLEL (default 1) bounds the fuzzing workers: the machine is shared.
# FUZZ_MINIMIZETIME (go test -fuzzminimizetime, default 10s) bounds how long
# a worker shrinks each new interesting input. go test's own default, 60s,
# left both workers shrinking for minutes at a time early in a run, and go
# test counts only the last round of a minimization's executions, so a run
# from an empty corpus showed 0 execs/s for most of its first minutes.
# FUZZ_MAXTIME (a sleep(1) duration, e.g. 20m) stops a target that has not
# finished its FUZZTIME by then; its row says so and shows what it ran.
# The full output of a target that fails is kept in FUZZ_LOG_DIR (default
# /tmp/shiploop-fuzz-logs). The table keeps one row per target, each naming
# the run that made it: a run of some targets (a pattern) replaces their rows
# and keeps the others'. FUZZ_RECORD=0 prints the table and leaves
# docs/benchmarks.md alone.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZTIME=${FUZZTIME:-10s}
PARALLEL=${FUZZ_PARALLEL:-1}
MATCH=${1:-.}
RECORD=${FUZZ_RECORD:-1}
MAXTIME=${FUZZ_MAXTIME:-}
MINIMIZE=${FUZZ_MINIMIZETIME:-10s}
DOC=docs/benchmarks.md
LOGS=${FUZZ_LOG_DIR:-/tmp/shiploop-fuzz-logs}
mkdir -p "$LOGS"
GOCACHE=$(go env GOCACHE)

# SEEDS: "package-dir Target glob..." for targets without shared seeds. The
# YAML parsers get the SARIF files: JSON documents are YAML flow documents,
# deeply nested, so they reach paths the parsers' own seeds do not.
SEEDS=(
  "services/builds/pipeline FuzzParse ../shared/testdata/lint/sarif/*.sarif"
  "services/deploys/config FuzzParse ../shared/testdata/lint/sarif/*.sarif"
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
while IFS=: read -r file _ rest; do
  target=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' <<<"$rest")
  dir=$(dirname "${file#./}")
  [[ "$dir $target" =~ $MATCH ]] || continue
  log=$(mktemp)
  echo "== $dir $target ($FUZZTIME)" >&2
  t0=$(date +%s)
  # -timeout 0: go test's default 10m would end a long run as a failure.
  # In its own session, so that FUZZ_MAXTIME can interrupt go test and its
  # workers as Ctrl-C would: go test then reports what it ran and passes.
  setsid bash -c 'cd "$1" && shift && exec go test "$@"' _ "$dir" -timeout 0 -run '^$' -fuzz "^${target}\$" \
    -fuzztime "$FUZZTIME" -fuzzminimizetime "$MINIMIZE" -parallel "$PARALLEL" . >"$log" 2>&1 &
  pid=$!
  watch=""
  if [ -n "$MAXTIME" ]; then
    (sleep "$MAXTIME" && touch "$log.stopped" && kill -INT -- -"$pid" 2>/dev/null) &
    watch=$!
  fi
  wait "$pid"
  rc=$?
  if [ -n "$watch" ]; then
    # Ending its sleep ends the watcher (the && chain stops there).
    pkill -P "$watch" sleep 2>/dev/null
    wait "$watch" 2>/dev/null
  fi
  stopped=""
  if [ -e "$log.stopped" ]; then
    stopped=" (stopped at FUZZ_MAXTIME=$MAXTIME)"
    rm -f "$log.stopped"
    # An interrupted go test exits 1 after its own PASS/ok.
    grep -q '^ok ' "$log" && ! grep -q -- '--- FAIL' "$log" && rc=0
  fi
  wall=$(($(date +%s) - t0))
  execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  execs=${execs:-0}
  # go test prints elapsed as 45s, 3m19s or 1h2m3s.
  elapsed=$(grep -oE 'elapsed: ([0-9]+h)?([0-9]+m)?[0-9]+s' "$log" | tail -1 |
    awk '{t = $2; s = 0; if (t ~ /h/) { split(t, a, "h"); s += a[1] * 3600; t = a[2] }
          if (t ~ /m/) { split(t, a, "m"); s += a[1] * 60; t = a[2] }
          sub(/s/, "", t); print s + t}' || true)
  rate=""
  [ -n "$elapsed" ] && [ "$elapsed" -gt 0 ] && rate=$((execs / elapsed))
  if [ $rc -eq 0 ]; then
    finding="none$stopped"
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
  rows+=("| \`$dir\` | $target | $execs | ${rate:-?} | $wall | $FUZZTIME, $PARALLEL, minimize $MINIMIZE, $(date -u +'%Y-%m-%d %H:%M UTC') | $finding |")
  tail -3 "$log" >&2
  rm -f "$log"
done < <(grep -rn 'func Fuzz' --include=*_test.go . | grep -v '/\.' | sort)

cores=$(nproc)
load=$(cut -d' ' -f1 /proc/loadavg)
section=$(mktemp)
printf '%s\n' "${rows[@]}" >"$section.rows"
# The table keeps one row per target, each with the run that made it: a run
# of some targets replaces their rows and keeps the others'. Rows of targets
# that no longer exist are dropped.
grep -rn 'func Fuzz' --include=*_test.go . | grep -v '/\.' |
  sed -E 's|^\./([^:]*)/[^/:]*:[0-9]+:func (Fuzz[A-Za-z0-9_]*).*|\1 \2|' | sort >"$section.targets"
python3 - "$DOC" "$section.rows" "$section.targets" "$cores" "$load" "$RECORD" <<'PY'
import re, sys
doc, rows_file, targets_file, cores, load, record = sys.argv[1:7]
new = [l for l in open(rows_file).read().splitlines() if l.startswith('|')]
targets = [tuple(l.split()) for l in open(targets_file).read().splitlines() if l.strip()]
key = lambda row: tuple(c.strip().strip('`') for c in row.strip('|').split('|')[:2])
s = open(doc).read()
m = re.search(r'<!-- bench:fuzz -->.*?<!-- /bench:fuzz -->', s, flags=re.S)
old = {}
if m:
    for l in m.group(0).splitlines():
        if l.startswith('| `'):
            cells = l.strip('|').split('|')
            if len(cells) == 7:  # rows written before the run column are dropped
                old[key(l)] = l
for l in new:
    old[key(l)] = l
rows = [old[t] for t in targets if t in old]
execs = lambda r: int(r.strip('|').split('|')[2])
met = sum(1 for r in rows if execs(r) >= 10_000_000 and r.strip('|').split('|')[6].strip() == 'none')
missing = [f'{p} {t}' for p, t in targets if (p, t) not in old]
sec = ['<!-- bench:fuzz -->',
       f'`scripts/fuzz.sh`, one row per target, each from the run named in its row, on {cores} shared cores '
       f'(load average {load} at the end of the latest run). Execs are go test -fuzz\'s own count (seed corpus '
       'runs included); FUZZTIME ending in x is a count of executions, workers is FUZZ_PARALLEL, minimize is -fuzzminimizetime (rows without it used go test\'s 60s); execs/s is over '
       'go test\'s fuzzing time, wall s includes building the instrumented test binary. The goal is at least '
       '10 million executions per target without a crash.',
       '',
       '| package | target | execs | execs/s | wall s | run (FUZZTIME, workers, [minimize,] finished) | findings |',
       '|---|---|---|---|---|---|---|']
sec += rows
sec += ['', f'Total: {sum(map(execs, rows))} executions over {len(rows)} of {len(targets)} targets; '
        f'{met} reached 10 million without a finding.' + (f' Not run yet: {", ".join(missing)}.' if missing else ''),
        '<!-- /bench:fuzz -->']
sec = '\n'.join(sec)
print(sec)
if record != '1':
    sys.exit(0)
if m:
    s = s[:m.start()] + sec + s[m.end():]
else:
    s += ('\n## Fuzzing\n\nEvery `func Fuzz` target in the repository, run by `scripts/fuzz.sh` (see its header for\n'
          'options and seeds). A crash leaves its input under the package\'s testdata/fuzz/, where\n'
          '`go test` replays it as a regression test.\n\n' + sec + '\n')
open(doc, 'w').write(s)
PY
rm -f "$section.rows" "$section.targets"
rm -f "$section"
echo "fuzz: $total_execs execs over ${#rows[@]} targets, $failures failing" >&2
[ "$failures" -eq 0 ]
