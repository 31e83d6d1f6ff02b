#!/bin/sh
# Make sure Debian's Chromium is at /usr/bin/chromium for the browser tests (Playwright drives it; its own
# browser download does not work on these machines). Installs with apt-get when missing and we are root;
# never fails the build: without a browser the browser tests skip with a reason.
set -u
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "ensure_chromium: /usr/bin/chromium is missing and we are not root; browser tests will be skipped" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: no apt-get on this machine; browser tests will be skipped" >&2
    exit 0
fi
echo "ensure_chromium: installing Debian's chromium (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
if apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; then
    echo "ensure_chromium: $(/usr/bin/chromium --version 2>/dev/null)" >&2
else
    echo "ensure_chromium: apt-get install chromium failed; browser tests will be skipped" >&2
fi
exit 0
