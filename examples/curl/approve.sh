#!/usr/bin/env bash
# A phone approves a challenge your backend pushed, with nothing but curl (and jq).
#
#   vphone serve &                     # http://127.0.0.1:8090, the built-in sandbox as the bank
#   bash examples/curl/approve.sh
#
# VPHONE_URL names the control API (default http://127.0.0.1:8090). "The backend" calls the
# bank directly with partner credentials: VPHONE_CLIENT_ID / VPHONE_CLIENT_SECRET (default:
# the built-in sandbox's demo partner). Secrets go to curl on its standard input (-K -),
# never on its command line. Exits 0 when the bank recorded the approval, 1 otherwise.
set -euo pipefail

CONTROL="${VPHONE_URL:-http://127.0.0.1:8090}"
CLIENT_ID="${VPHONE_CLIENT_ID:-vphone-demo}"
CLIENT_SECRET="${VPHONE_CLIENT_SECRET:-vphone-demo-secret}"
NAME="curl-$(date +%s)-$$"

fail() { echo "FAIL: $*" >&2; exit 1; }
# The control API: method, path, optional JSON body. Prints the JSON answer.
ctl() {
  curl -sS --fail-with-body --max-time 30 -X "$1" "$CONTROL$2" \
    -H 'content-type: application/json' ${3:+--data "$3"}
}
# The bank's API with the partner token: method, path, optional JSON body.
bank() {
  printf 'header = "Authorization: Bearer %s"\n' "$TOKEN" |
    curl -sS --fail-with-body --max-time 30 -K - -X "$1" "$API$2" \
      -H 'content-type: application/json' ${3:+--data "$3"}
}

API=$(ctl GET /info | jq -r .api_base)
echo "control API $CONTROL; bank $API"

# 1. A phone: a new person with a verified number, then bound (key + SMS code + signature).
ctl POST /phones "{\"name\":\"$NAME\"}" | jq -e '.phone.number_verified' >/dev/null
DEVICE=$(ctl POST "/phones/$NAME/bind" '{}' | jq -r .device_id)
echo "phone $NAME bound as device $DEVICE"
# A person decides on this phone (here: this script, through the API).
ctl PUT "/phones/$NAME/policy" '{"prompt":"manual"}' >/dev/null

# 2. The backend takes a partner token and creates a device-signing challenge.
TOKEN=$(printf 'user = "%s:%s"\n' "$CLIENT_ID" "$CLIENT_SECRET" |
  curl -sS --fail-with-body --max-time 30 -K - "$API/oauth2/token" \
    --data grant_type=client_credentials | jq -r .access_token)
CHALLENGE=$(bank POST /v1/mfa/challenges/devices "{\"device_id\":\"$DEVICE\"}" | jq -r .id)
echo "backend created challenge $CHALLENGE"

# 3. It reaches the phone (a push service in real life), which shows its approval sheet.
PUSH=$(ctl POST "/phones/$NAME/push" "{\"challenge_id\":\"$CHALLENGE\"}" | jq -r .id)
APPROVAL=$(ctl GET "/phones/$NAME/approvals?wait_ms=10000" | jq -r '.[0].id // empty')
[ -n "$APPROVAL" ] || fail "no approval became pending"

# 4. Approve, then wait for the phone to answer the bank.
ctl POST "/phones/$NAME/approvals/$APPROVAL/approve" | jq -e '.decision == "approved"' >/dev/null
RECORD=$(ctl GET "/phones/$NAME/pushes/$PUSH?wait_ms=10000")
echo "$RECORD" | jq -c '{state, outcome, answers}'
[ "$(echo "$RECORD" | jq -r .outcome)" = answered ] || fail "the push was not answered"

# 5. The bank accepted the signature: the device's key is marked as used.
USED=$(bank GET "/v1/mfa/devices/$DEVICE/keys" | jq -r '.keys[] | select(.key_purpose=="unrestricted") | .used_at')
[ -n "$USED" ] && [ "$USED" != null ] || fail "the bank did not record the signature"
echo "OK: the bank recorded the approval (key used at $USED)"

ctl DELETE "/phones/$NAME" >/dev/null
