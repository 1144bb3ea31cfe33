#!/usr/bin/env bash
# Where the server's CPU goes during REST upserts, beside Grape's own Insert: runs
# `grape-bench qdrant --skip-grpc` and records a system-wide `perf` profile during round 2's
# Grape gRPC upserts and during its Qdrant REST upserts, then prints the `grape dev` process's
# samples by symbol for each, and the symbols that grew most.
#
#   cargo build --release --workspace && bench/profile-qdrant-upserts.sh
#
# Needs `perf` (linux-perf) and permission to profile the whole system (root, or
# kernel.perf_event_paranoid <= -1). Writes into $OUT (default /tmp/grape-profile).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/release"
out="${OUT:-/tmp/grape-profile}"
mkdir -p "$out"
: > "$out/bench.err"
"$bin/grape-bench" qdrant --skip-grpc --grape "$bin/grape" --out "$out/qdrant.json" 2> "$out/bench.err" > "$out/bench.out" &
bench=$!
wait_for() { until grep -q "$1" "$out/bench.err"; do sleep 0.05; done; }
rm -f "$out"/phase.data*
# One recording, started before round 2 (perf takes a moment to start) and switched to a
# second file when round 2's REST upserts start.
wait_for "round 1: server CPU"
perf record -a -F 1999 --switch-output=signal -o "$out/phase.data" 2>/dev/null &
recorder=$!
wait_for "round 2: Qdrant REST (Rust client): upserting"
kill -USR2 $recorder
wait_for "round 2: server CPU"
kill -INT $recorder
wait $recorder || true
files=$(ls "$out"/phase.data.* | sort)
mv $(echo "$files" | sed -n 1p) "$out/native.data"
mv $(echo "$files" | sed -n 2p) "$out/rest.data"
grep "round 2: server CPU" "$out/bench.err"
# `grape dev` is the process whose serving thread is `grape-serve-0`; stop it with the bench.
dev=$(perf script -i "$out/rest.data" -F comm,pid 2>/dev/null | awk '$1 == "grape-serve-0" && !pid { pid = $2 } END { print pid }')
kill $bench "$dev" 2>/dev/null || true
wait $bench 2>/dev/null || true
for phase in native rest; do
  perf report -i "$out/$phase.data" --pid "$dev" -n --sort sym --stdio 2>/dev/null |
    awk -v phase=$phase '/^ +[0-9]/ { s = ""; for (i = 3; i <= NF; i++) s = s " " $i; print phase "\t" $2 "\t" s }'
done > "$out/symbols.tsv"
python3 - "$out/symbols.tsv" <<'EOF'
import collections, sys
samples = collections.defaultdict(lambda: [0, 0])
for line in open(sys.argv[1]):
    phase, n, symbol = line.rstrip("\n").split("\t")
    samples[symbol.strip()][phase == "rest"] += int(n)
native, rest = (sum(v[i] for v in samples.values()) for i in (0, 1))
print(f"grape dev samples: Grape gRPC upserts {native}, Qdrant REST upserts {rest} ({rest / max(native, 1):.2f}x)")
print(" growth  gRPC  REST  symbol")
for symbol, (a, b) in sorted(samples.items(), key=lambda kv: kv[1][0] - kv[1][1])[:25]:
    print(f"{b - a:7d} {a:5d} {b:5d}  {symbol[:100]}")
EOF
