#!/bin/sh
# Keeps nginx's upstream file: each app host is `down` while its /readyz is not 200,
# so nginx (which has no active health checks of its own) routes around a host that
# cannot reach the database. Checks every second; reloads nginx when a host changes.
#   readyz-watch.sh UPSTREAM_FILE HOST:PORT...      (NGINX_RELOAD: default `nginx -s reload`)
# When no host is ready, all stay listed: trying beats refusing everyone.
set -u
upstream=$1
shift
last=
while :; do
    lines= ready=0
    for host in "$@"; do
        if curl -fsS -m 3 -o /dev/null "http://$host/readyz"; then
            lines="$lines    server $host max_fails=1 fail_timeout=5s;
" ready=$((ready + 1))
        else
            lines="$lines    server $host down;
"
        fi
    done
    [ "$ready" -eq 0 ] && lines=$(printf '%s' "$lines" | sed 's/ down;/ max_fails=1 fail_timeout=5s;/')
    if [ "$lines" != "$last" ]; then
        printf '%s' "$lines" >"$upstream.new" && mv "$upstream.new" "$upstream"
        ${NGINX_RELOAD:-nginx -s reload} && printf 'readyz-watch: %s ready\n%s' "$ready" "$lines"
        last=$lines
    fi
    sleep 1
done
