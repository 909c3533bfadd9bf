# Sourced by scripts/demo and benches/*.sh: starts the local AWS emulator on a free loopback
# port with short lifecycle durations, points AWS_* and SDOP_STATE_DIR at it, and stops it on
# exit. Defines: $sdop (the sdop binary), $work (a temp dir), $AWS_ENDPOINT_URL.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# SDOP_BIN=target/release/sdop for benchmarks; the default builds the debug binary.
# The first build of the AWS SDK crates takes minutes: cargo's progress is shown.
if [[ -z ${SDOP_BIN:-} ]]; then
  echo "building sdop (the first build of the AWS SDKs takes about 5 minutes and 5 GiB)" >&2
  cargo build
fi
sdop=${SDOP_BIN:-./target/debug/sdop}
deploy/local-aws/up --install-only
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export SDOP_EMU_ENDPOINT_CREATE_SECONDS=${SDOP_EMU_ENDPOINT_CREATE_SECONDS:-3} \
  SDOP_EMU_ENDPOINT_UPDATE_SECONDS=${SDOP_EMU_ENDPOINT_UPDATE_SECONDS:-3} \
  SDOP_EMU_TRAINING_SECONDS=${SDOP_EMU_TRAINING_SECONDS:-5} SDOP_EMU_STACK_SECONDS=${SDOP_EMU_STACK_SECONDS:-2} \
  SDOP_EMU_CHECKPOINT_BYTES=${SDOP_EMU_CHECKPOINT_BYTES:-$((4 * 1024 * 1024))}
deploy/local-aws/up --port "$port" --quiet > "$work/local-aws.log" 2>&1 &
emulator=$!
trap 'kill $emulator 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 150); do grep -q "listening on" "$work/local-aws.log" && break; sleep 0.2; done
grep -q "listening on" "$work/local-aws.log" || { cat "$work/local-aws.log" >&2; exit 1; }
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \
  AWS_REGION=us-east-1 SDOP_STATE_DIR="$work/state"
if [[ -t 1 ]]; then
  step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  step() { printf '\n== %s\n' "$*"; }
fi
