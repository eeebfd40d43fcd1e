#!/bin/sh
# Headless Chromium for the report test (tests/test_report_html.py opens report.html in it).
# Installs Debian's `chromium` package only when it is missing, and never fails the build:
# without root/sudo or a package mirror the test skips and says why.
set -u
for browser in chromium chromium-browser google-chrome; do
    if command -v "$browser" >/dev/null 2>&1; then
        exit 0
    fi
done
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "ensure-chromium: chromium missing and no root to install it; the report browser test will skip"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: no apt-get here; install chromium to run the report browser test"
    exit 0
fi
echo "ensure-chromium: installing Debian's chromium (once) for the report test"
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } >/tmp/ensure-chromium.log 2>&1; then
    echo "ensure-chromium: apt-get install chromium failed (see /tmp/ensure-chromium.log); the report browser test will skip"
fi
exit 0
