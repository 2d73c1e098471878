#!/usr/bin/env bash
# Print the MODEL_VERSION that the engine Deployment serves now, read from the (hash-named)
# model-config ConfigMap that its pod template references. Prints nothing when the cluster
# has no engine Deployment yet (first rollout). Usage: deployed-model-version.sh [NAMESPACE]
set -euo pipefail
ns="${1:-paper-classifier}"

refs="$(kubectl -n "$ns" get deployment engine -o jsonpath='{range .spec.template.spec.initContainers[*]}{range .envFrom[*]}{.configMapRef.name}{"\n"}{end}{end}{range .spec.template.spec.containers[*]}{range .envFrom[*]}{.configMapRef.name}{"\n"}{end}{end}' 2>/dev/null)" || exit 0
cm="$(grep -E '^model-config(-[a-z0-9]+)?$' <<<"$refs" | head -n 1 || true)"
[ -n "$cm" ] || exit 0
kubectl -n "$ns" get configmap "$cm" -o jsonpath='{.data.MODEL_VERSION}'
