#!/usr/bin/env bash
# Install lightspeed, lightspeed-collector and lightspeed-ingest as systemd services (run as root).
#
#   packaging/install.sh [--role all|server|collector|ingest] [--prefix /opt/lightspeed] [--venv DIR]
#                        [--python python3]
#
# --role says what this host runs (default all):
#   all        the API server, the collector and lightspeed-ingest: lightspeed[server], ~1.6 GB
#   server     the API server and the collector that ships its records: lightspeed[server]
#   collector  the collector alone (records arrive from elsewhere): the base package, no PyTorch
#   ingest     lightspeed-ingest alone (the receiving side): the base package, no PyTorch
# Creates a virtual environment in PREFIX/venv with the project installed from
# this checkout (or uses an existing one with --venv), then installs, for the role's services:
#   /etc/systemd/system/lightspeed.service, lightspeed-collector.service, lightspeed-ingest.service
#   /etc/sysusers.d/lightspeed.conf  (users lightspeed, lightspeed-collector; group lightspeed;
#                                     user and group lightspeed-ingest)
#   /etc/tmpfiles.d/lightspeed.conf  (/var/lib/lightspeed-data and its record directories)
#   /etc/lightspeed/lightspeed.yaml  (from config/lightspeed.production.yaml; kept if present)
#   /etc/lightspeed/lightspeed.env   (environment overrides; kept if present)
#   /etc/lightspeed/credentials/     (secrets for LoadCredential=; empty files are created, never overwritten)
#   /etc/lightspeed-ingest/ingest.yaml, ingest.env, credentials/  (the same, for lightspeed-ingest)
#   /usr/share/doc/lightspeed/       (the documentation, also the local answer provider's documents)
# It does not start anything. Undo with packaging/uninstall.sh.
set -euo pipefail

SOURCE="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/lightspeed
VENV=""
PYTHON=python3
ROLE=all
while [ $# -gt 0 ]; do
    case "$1" in
        --role) ROLE="$2"; shift 2 ;;
        --prefix) PREFIX="$2"; shift 2 ;;
        --venv) VENV="$2"; shift 2 ;;
        --python) PYTHON="$2"; shift 2 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 64 ;;
    esac
done
case "$ROLE" in
    all) SERVICES="lightspeed lightspeed-collector lightspeed-ingest"; PACKAGE="$SOURCE[server]" ;;
    server) SERVICES="lightspeed lightspeed-collector"; PACKAGE="$SOURCE[server]" ;;
    collector) SERVICES="lightspeed-collector"; PACKAGE="$SOURCE" ;;
    ingest) SERVICES="lightspeed-ingest"; PACKAGE="$SOURCE" ;;
    *) echo "install.sh: --role must be all, server, collector or ingest, not '$ROLE'" >&2; exit 64 ;;
esac
has() { case " $SERVICES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 77; }

if [ -z "$VENV" ]; then
    VENV="$PREFIX/venv"
    echo "creating $VENV (role $ROLE: $SERVICES)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet "$PACKAGE"
fi
for tool in $SERVICES; do
    [ -x "$VENV/bin/$tool" ] || { echo "install.sh: $VENV/bin/$tool is missing" >&2; exit 66; }
done
if has lightspeed && ! "$VENV/bin/python" -c 'import torch, sentence_transformers' 2>/dev/null; then
    echo "install.sh: role $ROLE runs the API server, and $VENV lacks its extra: pip install '$SOURCE[server]'" >&2
    exit 66
fi

install -d -m 0755 /etc/systemd/system /etc/sysusers.d /etc/tmpfiles.d /usr/share/doc/lightspeed
# What the services must read: the venv, the Python it was made from and, for an editable
# install, the source. ProtectHome= and PrivateTmp= hide /home, /root and /tmp from them, so a
# venv there gets a drop-in that binds exactly those paths back, read-only.
NEEDED="$("$VENV/bin/python" -c 'import os, sys, lightspeed
print(os.path.realpath(sys.prefix)); print(os.path.realpath(sys.base_prefix))
print(os.path.dirname(os.path.dirname(os.path.realpath(lightspeed.__file__))))')"
HIDDEN=""
for path in $NEEDED; do
    case "$path" in /home/*|/root/*|/tmp/*|/var/tmp/*) HIDDEN="$HIDDEN $path" ;; esac
done
for service in $SERVICES; do
    unit="$service.service"
    sed "s#/opt/lightspeed/venv#$VENV#g" "$SOURCE/packaging/systemd/$unit" > "/etc/systemd/system/$unit"
    chmod 0644 "/etc/systemd/system/$unit"
    rm -f "/etc/systemd/system/$unit.d/50-venv-paths.conf"
    if [ -n "$HIDDEN" ]; then
        install -d -m 0755 "/etc/systemd/system/$unit.d"
        {
            echo "# Written by install.sh: the venv lives where ProtectHome=/PrivateTmp= would hide it."
            echo "[Service]"
            case "$HIDDEN" in *" /home/"*|*" /root/"*) echo "ProtectHome=tmpfs" ;; esac
            for path in $HIDDEN; do echo "BindReadOnlyPaths=$path"; done
        } > "/etc/systemd/system/$unit.d/50-venv-paths.conf"
    fi
done
install -m 0644 "$SOURCE/packaging/sysusers.d/lightspeed.conf" /etc/sysusers.d/lightspeed.conf
install -m 0644 "$SOURCE/packaging/tmpfiles.d/lightspeed.conf" /etc/tmpfiles.d/lightspeed.conf
systemd-sysusers /etc/sysusers.d/lightspeed.conf
systemd-tmpfiles --create /etc/tmpfiles.d/lightspeed.conf
cp -r "$SOURCE/docs/." /usr/share/doc/lightspeed/

if has lightspeed || has lightspeed-collector; then
install -d -m 0750 -o root -g lightspeed /etc/lightspeed
if [ ! -e /etc/lightspeed/lightspeed.yaml ]; then
    install -m 0640 -o root -g lightspeed "$SOURCE/config/lightspeed.production.yaml" /etc/lightspeed/lightspeed.yaml
fi
if [ ! -e /etc/lightspeed/lightspeed.env ]; then
    printf '%s\n' "# Environment for both services: LIGHTSPEED__SECTION__KEY=value overrides the YAML file." \
        "# DO_NOT_TRACK=1 forces telemetry off." > /etc/lightspeed/lightspeed.env
    chmod 0640 /etc/lightspeed/lightspeed.env
    chgrp lightspeed /etc/lightspeed/lightspeed.env
fi
install -d -m 0700 /etc/lightspeed/credentials
for secret in api-keys.yaml openai-api-key telemetry-token ingress-token database-password; do
    [ -e "/etc/lightspeed/credentials/$secret" ] || install -m 0600 /dev/null "/etc/lightspeed/credentials/$secret"
done
fi

if has lightspeed-ingest; then
install -d -m 0750 -o root -g lightspeed-ingest /etc/lightspeed-ingest
if [ ! -e /etc/lightspeed-ingest/ingest.yaml ]; then
    install -m 0640 -o root -g lightspeed-ingest "$SOURCE/config/ingest.production.yaml" /etc/lightspeed-ingest/ingest.yaml
fi
if [ ! -e /etc/lightspeed-ingest/ingest.env ]; then
    echo "# Environment for lightspeed-ingest: LIGHTSPEED__INGEST__KEY=value overrides the YAML file." \
        > /etc/lightspeed-ingest/ingest.env
    chmod 0640 /etc/lightspeed-ingest/ingest.env
    chgrp lightspeed-ingest /etc/lightspeed-ingest/ingest.env
fi
install -d -m 0700 /etc/lightspeed-ingest/credentials
for secret in upload-tokens admin-key telemetry-keys database-password; do
    [ -e "/etc/lightspeed-ingest/credentials/$secret" ] || install -m 0600 /dev/null "/etc/lightspeed-ingest/credentials/$secret"
done
fi
# The registry takes telemetry only from key holders (telemetry.require_api_key in ingest.yaml): make
# one key, and give it to this host's server as its registry token, unless either file has one already.
if has lightspeed && has lightspeed-ingest && [ ! -s /etc/lightspeed-ingest/credentials/telemetry-keys ] \
    && [ ! -s /etc/lightspeed/credentials/telemetry-token ]; then
    key=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))')
    echo "$key" > /etc/lightspeed-ingest/credentials/telemetry-keys
    echo "$key" > /etc/lightspeed/credentials/telemetry-token
fi

systemctl daemon-reload
echo "installed (role $ROLE: $SERVICES). Next:"
if has lightspeed; then
    cat <<DONE
  1. edit /etc/lightspeed/lightspeed.yaml (check it: $VENV/bin/lightspeed check-config --config /etc/lightspeed/lightspeed.yaml)
  2. put admin and user keys in /etc/lightspeed/credentials/api-keys.yaml, the ingress token in .../ingress-token
  3. systemctl enable --now lightspeed lightspeed-collector
DONE
elif has lightspeed-collector; then
    cat <<DONE
  1. edit /etc/lightspeed/lightspeed.yaml: user_data_collection (the record folders) and data_collector
  2. put the ingress token in /etc/lightspeed/credentials/ingress-token
  3. systemctl enable --now lightspeed-collector
DONE
fi
if has lightspeed-ingest; then
    cat <<DONE
  the receiving side: edit /etc/lightspeed-ingest/ingest.yaml, put the collectors' tokens in
  /etc/lightspeed-ingest/credentials/upload-tokens and an admin key in .../admin-key, then
     systemctl enable --now lightspeed-ingest
DONE
fi
