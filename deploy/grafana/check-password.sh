#!/bin/sh
# Grafana's entrypoint in docker-compose.yml: refuses to start Grafana with the admin password of
# deploy/.env.example, or any password the services would refuse as a token (the same rules as
# libs/livedub_protocol/tokens.py: 16 characters at least, no placeholder word, 6 distinct
# characters at least; tests/integration/test_deploy.py checks both agree), then runs "$@".
set -eu
password="${GF_SECURITY_ADMIN_PASSWORD:-}"
refuse() {
    echo "grafana: GRAFANA_ADMIN_PASSWORD is not usable: $1 (generate one, e.g. \`openssl rand -hex 24\`)" >&2
    exit 1
}
[ "${#password}" -ge 16 ] || refuse "shorter than 16 characters"
lowered=$(printf '%s' "$password" | tr '[:upper:]' '[:lower:]')
for word in change-me changeme replace-me your-token example placeholder secret; do
    case "$lowered" in *"$word"*) refuse "contains the placeholder '$word'" ;; esac
done
[ "$(printf '%s' "$password" | fold -w1 | sort -u | wc -l)" -ge 6 ] || refuse "too few distinct characters"
exec "$@"
