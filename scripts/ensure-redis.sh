#!/usr/bin/env bash
# Make sure a Redis server answers on 127.0.0.1:6379 (installs and starts one if needed).
set -euo pipefail
ping() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
ping && exit 0
if ! command -v redis-server >/dev/null; then
  echo "==> installing redis-server"
  (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null
fi
echo "==> starting redis-server on 127.0.0.1:6379"
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
for _ in $(seq 1 50); do ping && exit 0; sleep 0.1; done
echo "redis-server did not answer on 127.0.0.1:6379" >&2
exit 1
