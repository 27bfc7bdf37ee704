#!/usr/bin/env bash
# npm run build:native: build/job-init (static: no loader runs in it) and
# build/spawn.node, the addon that starts it (src/native-spawn/spawn.c).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
cc -std=c11 -Wall -Wextra -Werror -O2 -static -o build/job-init src/native-init/*.c

# Node's headers (node_api.h and libuv's uv.h) where node-gyp finds them to
# build better-sqlite3: npm's nodedir, beside the node binary (official
# tarballs, NodeSource, nvm; Debian's libnode-dev), or node-gyp's cache.
node_prefix=$(node -p 'require("path").resolve(process.execPath, "../..")')
node_version=$(node -p 'process.versions.node')
candidates=(
  ${npm_config_nodedir:+"$npm_config_nodedir/include/node"}
  "$node_prefix/include/node"
  "${XDG_CACHE_HOME:-$HOME/.cache}/node-gyp/$node_version/include/node"
  /usr/include/node
)
headers=
for dir in "${candidates[@]}"; do
  if [ -f "$dir/node_api.h" ] && [ -f "$dir/uv.h" ]; then headers=$dir; break; fi
done
if [ -z "$headers" ]; then
  echo "build:native: Node's headers (node_api.h, uv.h) not found in: ${candidates[*]}" >&2
  echo "build:native: install them (Debian: libnode-dev; or npx node-gyp install) or set npm_config_nodedir" >&2
  exit 1
fi
cc -std=gnu11 -Wall -Wextra -Werror -O2 -fPIC -shared -I"$headers" -o build/spawn.node src/native-spawn/spawn.c
