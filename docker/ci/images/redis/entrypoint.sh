#!/bin/sh
# As the official image: a bare `redis-server` (or one given only options) listens on every
# interface with protected mode off, runs as the redis user and keeps its files in /data.
set -e
if [ "${1#-}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = redis-server ]; then
  shift
  case "${1:-}" in
    ""|-*) set -- redis-server --protected-mode no --bind '*' '-::*' "$@" ;;
    *) set -- redis-server "$@" ;;
  esac
  if [ "$(id -u)" = 0 ]; then
    chown -R redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
  fi
fi
exec "$@"
