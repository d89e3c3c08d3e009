#!/usr/bin/env bash
# Make sure the system Chromium is there for the end-to-end test of `synthcalib serve`
# (tests/test_serve.py drives it through Playwright; Playwright's own browser downloads are not
# used). When none is found, installs Debian's `chromium` package with apt-get, through sudo when
# not root; fails with what to do when it cannot.
#
# Idempotent: does nothing when a browser is found where openvino_synthcalib/serve/browser.py
# looks for one: $SYNTHCALIB_CHROMIUM (a file), else chromium, chromium-browser or google-chrome
# on PATH.
set -euo pipefail

fail() {
    echo "error: $*" >&2
    echo "       the browser test of 'make test' needs Chromium: install it (Debian/Ubuntu: apt-get install chromium)" >&2
    echo "       or set SYNTHCALIB_CHROMIUM to a Chromium executable" >&2
    exit 1
}

if [ -n "${SYNTHCALIB_CHROMIUM:-}" ]; then
    [ -e "$SYNTHCALIB_CHROMIUM" ] || fail "SYNTHCALIB_CHROMIUM=$SYNTHCALIB_CHROMIUM does not exist"
    echo "browser: $SYNTHCALIB_CHROMIUM (SYNTHCALIB_CHROMIUM)"
    exit 0
fi

found() {
    command -v chromium || command -v chromium-browser || command -v google-chrome
}

if browser="$(found)"; then
    echo "browser: $browser"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || fail "no Chromium found, and no apt-get to install Debian's chromium package"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || fail "no Chromium found; installing it needs root, and sudo is not installed"
    if sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    elif [ -t 0 ]; then
        sudo=(sudo)  # asks for the password on this terminal
    else
        fail "no Chromium found; installing it needs root, and sudo asks for a password (no terminal to ask on)"
    fi
fi

echo "browser: no Chromium found, installing Debian's chromium package with apt-get"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || fail "apt-get update failed"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
    || fail "apt-get install chromium failed"
browser="$(found)" || fail "apt-get installed chromium, but no chromium is on PATH"
echo "browser: $browser ($("$browser" --version 2>/dev/null || echo "version unknown"))"
