#!/usr/bin/env bash
# Call Xent with curl. Usage: XENT_URL=http://127.0.0.1:8000 [XENT_API_KEY=...] bash examples/curl.sh
set -euo pipefail
URL="${XENT_URL:-http://127.0.0.1:8000}"
headers=(-H "Content-Type: application/json")
if [[ -n "${XENT_API_KEY:-}" ]]; then headers+=(-H "Authorization: Bearer ${XENT_API_KEY}"); fi
post() { curl --silent --show-error "${headers[@]}" "$URL$1" --data "$2"; echo; }

# 1. Cross-entropy of two samples' logits (3 classes) against their labels, in nats.
post /v1/cross-entropy '{"logits": [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], "labels": [0, 2]}'

# 2. The same logits as a float32 Open Inference Protocol tensor, in bits, with per-sample losses.
post /v1/cross-entropy '{"logits": {"shape": [2, 3], "datatype": "FP32", "data": [2.0, 0.5, -1.0, 0.1, 0.2, 3.0]},
                         "labels": [0, 2], "base": 2, "per_sample": true}'

# 3. KL, JS and entropies between two batches of probabilities.
post /v1/divergence '{"p_probs": [[0.5, 0.5], [0.9, 0.1]], "q_probs": [[0.25, 0.75], [0.5, 0.5]]}'

# 4. A label out of range: 422 application/problem+json naming the field and index.
post /v1/cross-entropy '{"logits": [[2.0, 0.5, -1.0]], "labels": [3]}'
