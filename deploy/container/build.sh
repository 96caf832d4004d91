#!/usr/bin/env bash
# The build steps of deploy/container/Containerfile, runnable without a container engine
# (.ci/deploy-check runs them): build the launchers and dpfctl in release with the locked
# dependencies, copy them into a staging root laid out like the image, and run the staged
# dataplane-launcher with --version and --dump-config.
#
#   deploy/container/build.sh STAGING_ROOT
#
# Uses $CARGO_TARGET_DIR (default: target/ of the workspace), so a CI run shares the release
# build with the benchmarks.
set -euo pipefail

staging=${1:?usage: deploy/container/build.sh STAGING_ROOT}
workspace=$(cd "$(dirname "$0")/../.." && pwd)
cd "$workspace"
binaries=(dataplane-launcher selector-launcher embedded-launcher dpfctl)

packages=()
for binary in "${binaries[@]}"; do packages+=(-p "$binary"); done
cargo build --release --locked "${packages[@]}"

target=${CARGO_TARGET_DIR:-$workspace/target}
case "$target" in /*) ;; *) target=$workspace/$target ;; esac
mkdir -p "$staging"
staging=$(cd "$staging" && pwd)
install -d -m 0755 "$staging/usr/local/bin"
install -d -m 0700 "$staging/data"
for binary in "${binaries[@]}"; do
  install -m 0755 "$target/release/$binary" "$staging/usr/local/bin/$binary"
done

bin=$staging/usr/local/bin
echo "staged into $staging:"
ls -l "$bin"

# The runtime libraries the image must provide (libpq: linked dynamically).
if command -v ldd >/dev/null 2>&1; then
  echo "shared libraries of dataplane-launcher:"
  ldd "$bin/dataplane-launcher" | sed 's/^/  /'
  if ldd "$bin/dataplane-launcher" | grep -q 'not found'; then
    echo "dataplane-launcher needs a library this machine lacks" >&2
    exit 1
  fi
fi

# The staged binaries answer, with the image's environment (Containerfile ENV).
for binary in dataplane-launcher selector-launcher embedded-launcher dpfctl; do
  "$bin/$binary" --version
done
dump=$(env -i PATH=/usr/bin:/bin \
  WEB_HTTP_HOST=0.0.0.0 WEB_HTTP_PORT=8282 DPF_DATA_DIR=/data \
  DPF_STORE_URL=sqlite:/data/dpf.db DPF_TRANSFER_FILE_ROOT=/data/files DPF_LOG_FORMAT=json \
  "$bin/dataplane-launcher" --dump-config)
echo "$dump"
for expected in 'web.http.host=0.0.0.0' 'dpf.data.dir=/data' 'dpf.store.url=sqlite:/data/dpf.db'; do
  # Lines read `key=value  # source`.
  if ! awk -v e="$expected" '$0 == e || index($0, e "  #") == 1 { found = 1 } END { exit !found }' <<<"$dump"; then
    echo "--dump-config of the staged dataplane-launcher lacks '$expected'" >&2
    exit 1
  fi
done
echo "container build steps: OK"
