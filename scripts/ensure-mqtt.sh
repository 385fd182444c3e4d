#!/usr/bin/env bash
# Make sure the MQTT tests' broker is installed: Mosquitto (mosquitto, mosquitto_passwd). The tests start their own
# broker on a free port with their own config; nothing is started here. Idempotent (Debian/Ubuntu, as root or sudo).
set -euo pipefail
export PATH="$PATH:/usr/sbin"  # Debian installs the broker there, outside a normal user's PATH
command -v mosquitto >/dev/null && command -v mosquitto_passwd >/dev/null && exit 0
echo "==> installing mosquitto"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
(export DEBIAN_FRONTEND=noninteractive; $SUDO apt-get update -qq && $SUDO apt-get install -y -qq mosquitto) >/dev/null
# the package's own service is not needed (the tests start theirs); where systemd runs it, it keeps port 1883
for tool in mosquitto mosquitto_passwd; do
  command -v "$tool" >/dev/null || { echo "$tool is still missing after apt-get install" >&2; exit 1; }
done
