#!/usr/bin/env bash
# Make sure the MQTT tests' tools are installed: Mosquitto (mosquitto, mosquitto_passwd) and openssl (the TLS test's
# certificates). The tests start their own broker on a free port with their own config; nothing is started here.
# Idempotent (Debian/Ubuntu, as root or sudo).
set -euo pipefail
export PATH="$PATH:/usr/sbin"  # Debian installs the broker there, outside a normal user's PATH
missing=()
command -v mosquitto >/dev/null && command -v mosquitto_passwd >/dev/null || missing+=(mosquitto)
command -v openssl >/dev/null || missing+=(openssl)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "==> installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
(export DEBIAN_FRONTEND=noninteractive; $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}") >/dev/null
for tool in mosquitto mosquitto_passwd openssl; do
  command -v "$tool" >/dev/null || { echo "$tool is still missing after apt-get install" >&2; exit 1; }
done
