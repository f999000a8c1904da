#!/usr/bin/env bash
# The Debian packages `make test` needs besides the venv: installed when run as root with apt-get,
# otherwise named in one line with the command that installs them (exit 1). `.ci/run` calls it too.
#   make        runs the targets             util-linux  mount, for the disk-full tests (tmpfs)
#   chromium    the browser the page tests drive through playwright
#   postgresql  the real server the PostgreSQL tests start (initdb, pg_ctl)
#   systemd-container, debootstrap   the booted container the unit tests run in
#   openssl     the ingest's self-signed test certificate      wrk   drives `make bench`
set -euo pipefail
declare -A needs=(
    [make]="command -v make"
    [util-linux]="command -v mount"
    [chromium]="test -x /usr/bin/chromium"
    [postgresql]="compgen -G '/usr/lib/postgresql/*/bin/initdb'"
    [systemd-container]="command -v systemd-nspawn"
    [debootstrap]="command -v debootstrap"
    [openssl]="command -v openssl"
    [wrk]="command -v wrk"
)
missing=()
for package in "${!needs[@]}"; do
    eval "${needs[$package]}" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "${EUID}" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing the Debian packages the tests need: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    exit 0
fi
echo "make test needs these Debian packages: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
exit 1
