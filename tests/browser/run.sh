#!/usr/bin/env bash
# Usage: run.sh STATEROOM_BIN SCREENSHOT_PATH
#
# Runs the browser test (counter_test.mjs): installs playwright-core from package-lock.json with
# `npm ci` when node_modules/ is missing or does not match the lockfile, then runs the test with
# Debian's /usr/bin/chromium (apt package `chromium`). Playwright never downloads a browser here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found (apt-get install nodejs npm)" >&2; exit 1; }
done
[ -x /usr/bin/chromium ] || { echo "run.sh: /usr/bin/chromium not found (apt-get install chromium)" >&2; exit 1; }

# node_modules/.package-lock.json is npm's record of what is installed: the lockfile's packages
# less the root entry. Reinstall when it is missing or differs.
in_sync() {
  node -e '
    const fs = require("fs");
    const want = JSON.parse(fs.readFileSync("package-lock.json", "utf8")).packages;
    const have = JSON.parse(fs.readFileSync("node_modules/.package-lock.json", "utf8")).packages;
    delete want[""];
    const norm = (o) => JSON.stringify(Object.keys(o).sort().map((k) => [k, o[k].version, o[k].integrity]));
    process.exit(norm(want) === norm(have) ? 0 : 1);
  ' 2>/dev/null
}
if [ ! -f node_modules/.package-lock.json ] || ! in_sync; then
  echo "run.sh: installing playwright-core (npm ci)"
  npm ci --no-audit --no-fund
fi

exec node counter_test.mjs "$@"
