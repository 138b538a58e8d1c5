#!/bin/sh
# MediaMTX runOnReady / runOnNotReady -> media-service: `livedub-hook.sh ready|not-ready`.
#
# Why a script: MediaMTX up to 1.18.0 pastes $VARIABLES into a hook's command line before
# splitting it, so a publisher's query holding a quote stopped the hook, and a quote and a space
# added wget arguments (another URL that received the token, --post-file /proc/self/environ).
# The hook command names no variable; this script reads what MediaMTX passes in the environment
# and hands each value to wget as one argument ("$VAR" is never split or re-parsed).
#
# Environment (set on the MediaMTX process, which passes its own environment to hooks):
#   MEDIA_HOOK_URL    e.g. http://media-service:8080/v1/hooks/mediamtx
#   MEDIA_HOOK_TOKEN  media-service's hook-only token (MEDIA_HOOK_TOKEN there): /v1/hooks/* only
#   MTX_PATH, MTX_QUERY  set by MediaMTX (the path name holds only A-Z a-z 0-9 _ . - / ~)
#
# POSIX sh, `timeout` and `wget`: busybox (the Alpine-based bluenviron/mediamtx:*-ffmpeg images) or
# coreutils and GNU wget; only options both wgets know (busybox builds may lack wget -T).
set -eu

case "${1:-}" in
  ready|not-ready) ;;
  *) echo "usage: $0 ready|not-ready" >&2; exit 2 ;;
esac
: "${MEDIA_HOOK_URL:?MEDIA_HOOK_URL is not set}"
: "${MEDIA_HOOK_TOKEN:?MEDIA_HOOK_TOKEN is not set}"
: "${MTX_PATH:?MTX_PATH is not set (run by MediaMTX only)}"
# The hook talks to media-service directly, never through a proxy from the environment.
unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

exec timeout 15 wget -q -O /dev/null \
  --header "Content-Type: application/x-www-form-urlencoded" \
  --header "Authorization: Bearer $MEDIA_HOOK_TOKEN" \
  --post-data "${MTX_QUERY:-}" \
  "$MEDIA_HOOK_URL/$1?path=$MTX_PATH"
