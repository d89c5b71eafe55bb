#!/bin/sh
# Install Debian's chromium and chromium-driver for the page's browser test
# (tests/test_serve_browser.py). Idempotent: does nothing when both are present.
set -eu

CHROMIUM=/usr/bin/chromium
DRIVER=/usr/bin/chromedriver

if [ -x "$CHROMIUM" ] && [ -x "$DRIVER" ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install-chromium: $CHROMIUM or $DRIVER is missing and this user is neither root nor has sudo;" \
        "install the Debian packages 'chromium' and 'chromium-driver' as root." >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: apt-get not found; install chromium and its chromedriver with this system's" \
        "package manager so that $CHROMIUM and $DRIVER exist." >&2
    exit 1
fi

echo "install-chromium: installing chromium and chromium-driver with apt-get" >&2
$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver
