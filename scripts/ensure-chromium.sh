#!/usr/bin/env bash
# Make sure Chromium and chromedriver are installed for the browser test of the web page
# (tests/e2e/test_web_page.py). Installs Debian's packages with apt-get when missing and running as
# root; otherwise prints a note and the test skips, saying why.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1; }
if have chromium && have chromedriver; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && have apt-get; then
  echo "==> installing chromium and chromium-driver (browser test of the web page)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null
  exit 0
fi
echo "note: chromium/chromedriver not found and not root (or no apt-get): the web page's browser test will be" \
     "skipped; install them with: sudo apt-get install chromium chromium-driver" >&2
