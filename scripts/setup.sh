#!/usr/bin/env bash
# Installs the Debian 12 packages atask needs to build, test and benchmark.
# Idempotent and quiet when everything is present; needs root (or sudo) only
# when something is missing.
set -euo pipefail

packages=(
  g++ cmake ninja-build ccache pkg-config clang-format
  libboost1.81-dev libboost-json1.81-dev
  libspdlog-dev libfmt-dev
  doctest-dev libbenchmark-dev
  libssl-dev prometheus-cpp-dev  # job keys (SHA-256) and the control plane's metrics
  prometheus wrk                 # scraping and load-testing the control plane
  chromium                       # the dashboard's browser test (tests/http/browser)
  redis-server libhiredis-dev    # distributed mode: the broker the tests start, and its protocol
  libhowardhinnant-date-dev      # cron time zones (date/tz.h, libdate-tz3: IANA zones from tzdata)
  python3-croniter python3-tz    # the cron differential test's reference (croniter pulls python3-dateutil)
  libcli11-dev                   # the atask program's command line (header-only CLI11 2.1)
)
# The browser test needs node and npm. Debian's npm conflicts with a node from
# elsewhere (e.g. nodesource, which ships its own npm): take Debian's only
# when there is no node at all.
command -v node >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
