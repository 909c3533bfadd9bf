#!/usr/bin/env bash
# Benchmarks of the `sdop run` daemon (issue #6); see benches/daemon.py for what each measures.
#   SDOP_BIN=target/release/sdop benches/daemon.sh [latency|overhead|idle|all]
# Emulator durations for the chain (overhead): training 40 s, endpoint creation 20 s, unless set.
export SDOP_EMU_TRAINING_SECONDS=${SDOP_EMU_TRAINING_SECONDS:-40} \
  SDOP_EMU_ENDPOINT_CREATE_SECONDS=${SDOP_EMU_ENDPOINT_CREATE_SECONDS:-20}
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/local-aws.sh"
deploy/local-aws/.venv/bin/python benches/daemon.py "$sdop" "$work" "${1:-all}"
