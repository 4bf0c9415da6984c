#!/usr/bin/env bash
# What a program sees of its system: run unchanged inside and outside capsules.
# Each copy also writes its host name to the same hard-coded path, /srv/app/owner,
# and reads it back: every capsule reads its own, and the host has no such file.
state=/srv/app/owner
if [ -n "${CAPSULE_NAME:-}" ]; then  # set in every capsule the loader starts
    mkdir -p /srv/app && hostname > "$state"
fi
for i in 1 2 3; do
    printf 'host %-12s user %-8s uid %-5s date %s  %s: %s\n' \
        "$(hostname)" "$(id -un 2>/dev/null || echo '?')" "$(id -u)" \
        "$(date -u '+%Y-%m-%d %H:%M:%S')" "$state" "$(cat "$state" 2>/dev/null || echo '(none)')"
    [ "$i" = 3 ] || sleep 1
done
