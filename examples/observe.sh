#!/usr/bin/env bash
# What a program sees of its system: run unchanged inside and outside capsules.
for i in 1 2 3; do
    printf 'host %-12s user %-8s uid %-5s date %s\n' \
        "$(hostname)" "$(id -un 2>/dev/null || echo '?')" "$(id -u)" "$(date -u '+%Y-%m-%d %H:%M:%S')"
    [ "$i" = 3 ] || sleep 1
done
