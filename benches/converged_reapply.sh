#!/usr/bin/env bash
# AWS calls of a converged re-apply of manifests/ (issues #4 and #23): reads per resource
# (#23's goal: at most 1.5) and mutations (must be 0), counted by the local AWS on the wire.
# RUST_LOG=sdop::aws=debug on an apply shows which resource makes which call.
#   benches/converged_reapply.sh            (debug build)
#   SDOP_BIN=target/release/sdop benches/converged_reapply.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/local-aws.sh"
python3 scripts/stand-in-checkout.py manifests/all-in-one-ai
python3 scripts/stand-in-checkpoints.py manifests/checkpoints
step "converge manifests/"
$sdop apply manifests/ > /dev/null || true
deploy/local-aws/.venv/bin/python scripts/demo-seed.py > /dev/null
deploy/local-aws/.venv/bin/python scripts/demo-seed.py --webui-first-start > /dev/null &
$sdop apply manifests/ --wait --timeout 5m > /dev/null
# The whole workshop's convergence (first apply, then apply --wait), counted too: issue #23
# found 536 of its 915 requests were HeadObject.
curl -sf "$AWS_ENDPOINT_URL/_sdop/calls" | python3 -c "
import json, sys
calls = json.load(sys.stdin)
total = calls['total']['read'] + calls['total']['mutate']
head = calls['by_api'].get('s3:HeadObject', {}).get('count', 0)
print(f'converging the workshop: {total} requests, {calls[\"total\"][\"read\"]} reads, {head} HeadObject')
"
curl -sf -X DELETE "$AWS_ENDPOINT_URL/_sdop/calls" > /dev/null
step "re-apply (converged)"
start=$(date +%s.%N)
$sdop apply manifests/ --wait > /dev/null
end=$(date +%s.%N)
resources=$($sdop get -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
curl -sf "$AWS_ENDPOINT_URL/_sdop/calls" | python3 -c "
import json, sys
calls = json.load(sys.stdin)
reads, mutations = calls['total']['read'], calls['total']['mutate']
print(f'resources: $resources  reads: {reads}  reads/resource: {reads / $resources:.2f}  mutations: {mutations}  wall: {$end - $start:.2f}s')
for api, c in sorted(calls['by_api'].items()):
    print(f'  {api:40} {c[\"count\"]}')
"
