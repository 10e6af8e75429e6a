#!/usr/bin/env bash
# Rebuilds postgres-3.4.9-certyo.2.tgz: postgres.js 3.4.9 from the npm
# registry with postgres-3.4.9.patch applied (see README.md). The tarball is
# committed, so `npm ci` needs neither this script nor the network for it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent postgres@3.4.9 >/dev/null
tar xzf postgres-3.4.9.tgz
cd package
patch -p1 --no-backup-if-mismatch <"$here/postgres-3.4.9.patch"
npm pkg set version=3.4.9-certyo.2
npm pack --silent --ignore-scripts --pack-destination "$here" >/dev/null
echo "built $here/postgres-3.4.9-certyo.2.tgz"
