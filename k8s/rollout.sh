#!/usr/bin/env bash
# Roll the production engines and gateways to another published model version.
#
#   k8s/rollout.sh [--dry-run] [--overlay DIR] [--timeout DURATION] MODEL_VERSION
#
# 1. writes MODEL_VERSION into the overlay's model.env (the one line ^MODEL_VERSION=),
# 2. renders the overlay with kustomize and checks the new version is in the output,
# 3. applies it and waits for both Deployments to finish their rolling update.
# The ConfigMap model-config carries a content hash in its name, so a new version changes the
# pod templates of the engine and gateway Deployments: their init containers fetch the new
# version and the RollingUpdate (maxSurge 1, maxUnavailable 0) swaps pods only once the new
# ones are ready. If the rollout does not finish in time the script fails and says how to go
# back (kubectl rollout undo, or this script with the previous version).
#
# --dry-run stops after step 2 and prints the rendered manifests (no cluster needed; the
# overlay file is still edited, so run it on a copy when you only want to look).
# Environment: KUBECTL (default: kubectl on PATH), NAMESPACE (default: paper-classifier).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
overlay="${here}/overlays/prod"
dry_run=0
timeout="20m"
kubectl="${KUBECTL:-kubectl}"
namespace="${NAMESPACE:-paper-classifier}"

usage() {
    sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

version=""
while (($#)); do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --overlay) overlay="${2:?--overlay needs a directory}"; shift ;;
        --timeout) timeout="${2:?--timeout needs a duration such as 20m}"; shift ;;
        -h|--help) usage ;;
        -*) echo "unknown option: $1" >&2; usage ;;
        *)
            [[ -z "$version" ]] || { echo "only one MODEL_VERSION, got '$version' and '$1'" >&2; exit 2; }
            version="$1" ;;
    esac
    shift
done
[[ -n "$version" ]] || usage
# The same rule as the model registry's version names: it becomes an S3 key segment and a
# ConfigMap value, so no slashes, spaces or shell metacharacters.
if [[ ! "$version" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]]; then
    echo "invalid MODEL_VERSION '$version' (letters, digits, '.', '_', '-'; at most 64)" >&2
    exit 2
fi

model_env="${overlay}/model.env"
[[ -f "$model_env" ]] || { echo "no ${model_env}" >&2; exit 1; }
if [[ "$(grep -c '^MODEL_VERSION=' "$model_env")" != 1 ]]; then
    echo "${model_env} must hold exactly one MODEL_VERSION= line" >&2
    exit 1
fi
command -v "$kubectl" >/dev/null || { echo "kubectl not found (set KUBECTL)" >&2; exit 1; }

previous="$(sed -n 's/^MODEL_VERSION=//p' "$model_env")"
sed -i.bak "s/^MODEL_VERSION=.*/MODEL_VERSION=${version}/" "$model_env"
rm -f "${model_env}.bak"

rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT
"$kubectl" kustomize "$overlay" >"$rendered"
if ! grep -q "^  MODEL_VERSION: ${version}\$" "$rendered" \
        && ! grep -q "^  MODEL_VERSION: \"${version}\"\$" "$rendered"; then
    echo "rendered manifests do not carry MODEL_VERSION ${version}" >&2
    exit 1
fi

if ((dry_run)); then
    cat "$rendered"
    echo "dry run: ${model_env}: ${previous} -> ${version}; nothing applied" >&2
    exit 0
fi

echo "rolling out model ${version} (was ${previous}) to namespace ${namespace}" >&2
"$kubectl" apply -f "$rendered"
for deployment in engine gateway; do
    if ! "$kubectl" -n "$namespace" rollout status "deployment/${deployment}" --timeout="$timeout"; then
        echo "deployment/${deployment} did not finish rolling out within ${timeout}." >&2
        echo "The old pods keep serving (maxUnavailable: 0). To go back:" >&2
        echo "  k8s/rollout.sh ${previous}    or    ${kubectl} -n ${namespace} rollout undo deployment/${deployment}" >&2
        exit 1
    fi
done
echo "model ${version} is live; commit ${model_env#"${here}/../"}" >&2
