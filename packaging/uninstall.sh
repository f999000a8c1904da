#!/usr/bin/env bash
# Remove what packaging/install.sh installed (run as root).
#
#   packaging/uninstall.sh [--prefix /opt/lightspeed] [--purge]
#
# Stops and disables the services and removes the units, the sysusers and
# tmpfiles snippets, the documentation and PREFIX/venv. Configuration,
# credentials, records and state stay unless --purge is given (then
# /etc/lightspeed*, /var/lib/lightspeed*, and the users go too).
set -euo pipefail

PREFIX=/opt/lightspeed
PURGE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX="$2"; shift 2 ;;
        --purge) PURGE=1; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "uninstall.sh: unknown argument $1" >&2; exit 64 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "uninstall.sh: run as root" >&2; exit 77; }

UNITS="lightspeed-collector.service lightspeed.service lightspeed-ingest.service"
# shellcheck disable=SC2086
systemctl disable --now $UNITS 2>/dev/null || true
for unit in $UNITS; do
    rm -f "/etc/systemd/system/$unit" "/etc/systemd/system/$unit.d/50-venv-paths.conf"
done
rm -f /etc/sysusers.d/lightspeed.conf /etc/tmpfiles.d/lightspeed.conf
rm -rf /usr/share/doc/lightspeed "$PREFIX/venv"
systemctl daemon-reload
if [ "$PURGE" = 1 ]; then
    rm -rf /etc/lightspeed /etc/lightspeed-ingest /var/lib/lightspeed /var/lib/lightspeed-data /var/lib/lightspeed-ingest /var/cache/lightspeed
    userdel lightspeed-ingest 2>/dev/null || true
    groupdel lightspeed-ingest 2>/dev/null || true
    userdel lightspeed-collector 2>/dev/null || true
    userdel lightspeed 2>/dev/null || true
    groupdel lightspeed 2>/dev/null || true
fi
echo "uninstalled$( [ "$PURGE" = 1 ] && echo ', data purged' || echo '; /etc/lightspeed and /var/lib/lightspeed* kept (--purge removes them)')"
