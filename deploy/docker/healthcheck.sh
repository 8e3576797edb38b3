#!/bin/bash
# Container HEALTHCHECK: GET /healthz on the admin port with nothing but bash (/dev/tcp), since
# the image has no curl. Exit 0 when the answer's status line says 200, else 1.
# PROFILIS_HEALTH_ADDR=host:port overrides the address (default 127.0.0.1:8888).
addr=${PROFILIS_HEALTH_ADDR:-127.0.0.1:8888}
host=${addr%:*}
port=${addr##*:}
exec 3<>"/dev/tcp/${host}/${port}" || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$addr" >&3
IFS= read -r -t 2 status <&3 || exit 1
case "$status" in
  "HTTP/1."?" 200 "*) exit 0 ;;
  *) exit 1 ;;
esac
