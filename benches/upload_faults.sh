#!/usr/bin/env bash
# Bytes of UploadPart bodies sent per byte of model.tar.gz while the local AWS fails UploadPart
# calls (issue #23's "uploads under errors"), counted by the emulator on the wire
# (`body_bytes` of GET /_sdop/calls: every request's declared body, faulted ones included).
#   benches/upload_faults.sh [SIZE_MIB [RUNS]]  (debug build; SIZE_MIB of random bytes, 88; RUNS 5)
#   SDOP_BIN=target/release/sdop benches/upload_faults.sh
# On the same package (a local file of pseudo-random bytes, so it does not compress), from
# scratch each time (no package, no state):
#   1. every 2nd UploadPart answered 500 (error500 0.5): `sdop apply --wait`, RUNS times
#      (the order of parallel parts and retries varies); goal: under 2.5x in every run
#   2. every UploadPart answered 500 (error500 1.0): one `sdop apply` without --wait; the
#      package is not built, and no multipart upload may be left open.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/local-aws.sh"
size_mib=${1:-88}
runs=${2:-5}
py=deploy/local-aws/.venv/bin/python
endpoint=$AWS_ENDPOINT_URL

python3 - "$work/checkpoint.safetensors" "$size_mib" <<'EOF'
import random, sys
with open(sys.argv[1], "wb") as f:
    f.write(random.Random(23).randbytes(int(sys.argv[2]) * 1024 * 1024))
EOF
mkdir -p "$work/manifests"
cat > "$work/manifests/package.yaml" <<EOF
apiVersion: sdop/v1alpha1
kind: Bucket
metadata: {name: models}
spec: {bucketName: sdop-upload-bench, region: us-east-1}
---
apiVersion: sdop/v1alpha1
kind: ModelArchive
metadata: {name: bench}
spec:
  output: s3://sdop-upload-bench/bench/model.tar.gz
  sources:
    - {local: $work/checkpoint.safetensors, path: Stable-diffusion/}
EOF

# report LABEL PACKAGE_BYTES SECONDS: the counters of the run just made, one line.
report() {
  curl -sf "$endpoint/_sdop/calls" | "$py" -c "
import json, sys
calls = json.load(sys.stdin)
label, package, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
api = calls['by_api']
count = lambda name: api.get(name, {}).get('count', 0)
sent = calls.get('body_bytes', {}).get('s3:UploadPart', {}).get('bytes', 0)
print(f'{label}: package {package} bytes; UploadPart bodies sent {sent} bytes = {sent / package:.2f}x '
      f'the package; UploadPart calls {count(\"s3:UploadPart\")} '
      f'({api.get(\"s3:UploadPart\", {}).get(\"faulted\", 0)} faulted); uploads started '
      f'{count(\"s3:CreateMultipartUpload\")}, aborted {count(\"s3:AbortMultipartUpload\")}, '
      f'completed {count(\"s3:CompleteMultipartUpload\")}; {seconds:.1f} s')
" "$@"
}
open_uploads() {
  "$py" -c "
import boto3
s3 = boto3.client('s3', endpoint_url='$endpoint', region_name='us-east-1')
print(len(s3.list_multipart_uploads(Bucket='sdop-upload-bench').get('Uploads', [])))"
}
faults() { curl -sf -X POST "$endpoint/_sdop/faults" -d "$1" > /dev/null; }
# fresh: no package in the bucket, no sdop state, counters at zero.
fresh() {
  "$py" -c "
import boto3
s3 = boto3.client('s3', endpoint_url='$endpoint', region_name='us-east-1')
if any(b['Name'] == 'sdop-upload-bench' for b in s3.list_buckets()['Buckets']):
    for o in s3.list_objects_v2(Bucket='sdop-upload-bench').get('Contents', []):
        s3.delete_object(Bucket='sdop-upload-bench', Key=o['Key'])"
  rm -rf "$SDOP_STATE_DIR"
  curl -sf -X DELETE "$endpoint/_sdop/calls" > /dev/null
}
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { print b - a }'; }

step "1. every 2nd UploadPart answered 500: sdop apply --wait, $runs runs ($size_mib MiB of random bytes)"
for run in $(seq 1 "$runs"); do
  fresh
  faults '{"error500": {"s3:UploadPart": 0.5}}'
  start=$(date +%s.%N)
  $sdop apply "$work/manifests" --wait --timeout 10m > "$work/apply-1.log" 2>&1 \
    || { tail -n 20 "$work/apply-1.log" >&2; echo "upload_faults: apply --wait failed" >&2; exit 1; }
  seconds=$(since "$start")
  package=$("$py" -c "
import boto3
s3 = boto3.client('s3', endpoint_url='$endpoint', region_name='us-east-1')
print(sum(o['Size'] for o in s3.list_objects_v2(Bucket='sdop-upload-bench').get('Contents', [])))")
  report "run $run, 50% UploadPart errors" "$package" "$seconds"
done

step "2. every UploadPart answered 500: one sdop apply without --wait"
fresh
faults '{"error500": {"s3:UploadPart": 1.0}}'
start=$(date +%s.%N)
rc=0; $sdop apply "$work/manifests" > "$work/apply-2.log" 2>&1 || rc=$?
seconds=$(since "$start")
report "100% UploadPart errors (apply exit $rc; the package of run 1's size)" "$package" "$seconds"
built=$("$py" -c "
import boto3
s3 = boto3.client('s3', endpoint_url='$endpoint', region_name='us-east-1')
print(len(s3.list_objects_v2(Bucket='sdop-upload-bench').get('Contents', [])))")
[[ $built == 0 ]] || { echo "upload_faults: a package was built although every UploadPart failed" >&2; exit 1; }
left=$(open_uploads)
echo "multipart uploads left open: $left"
[[ $left == 0 ]] || { echo "upload_faults: $left multipart upload(s) leaked" >&2; exit 1; }
