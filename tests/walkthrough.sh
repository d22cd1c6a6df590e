PORT=${PORT:-8000}   # the port `make run` serves on
API=http://127.0.0.1:$PORT/graphql/
PHONE=+375297654321  # not the number of the GraphiQL steps
INVITE=              # optional: the inviteCode that VerifyCode answered in GraphiQL

# gql BODY [CURL OPTIONS]: POST one request; print the answer, or say in one line why there is none.
gql() {
  body=$1; shift
  curl -s "$API" -H 'Content-Type: application/json' -d "$body" "$@" ||
    { echo "No answer from $API (curl exit $?): is make run serving on port $PORT?" >&2; return 1; }
}
# field OPERATION.NAME: print that field of the answer read, or say in one line why not.
field() {
  python3 -c 'import json, sys
operation, name = sys.argv[1].split(".")
text = sys.stdin.read()
try:
    answer = json.loads(text)
    errors = answer.get("errors") or answer["data"][operation].get("userErrors") or []
except (ValueError, AttributeError, KeyError, TypeError):
    sys.exit(operation + ": not an answer of this API: " + " ".join(text.split())[:100])
if errors:
    code = (errors[0].get("extensions") or {}).get("code") or errors[0].get("code")
    sys.exit(operation + ": " + str(code) + ": " + errors[0]["message"])
value = answer["data"][operation][name]
if value is None:
    sys.exit(operation + ": " + name + " is null")
print(value)' "$1"
}

(
set -e  # stop at the first step that fails; its one line says why

# 1. Ask for a code; the simulated SMS backend returns it as debugCode.
SENT=$(gql '{
  "query": "mutation SendCode($phone: String!) { sendCode(phone: $phone) { phone retryAfter debugCode userErrors { code field message retryAfter } } }",
  "variables": {"phone": "'"$PHONE"'"}}')
echo "$SENT"
CODE=$(printf '%s' "$SENT" | field sendCode.debugCode)

# 2. Sign in with that code and the invite code, if any.
SIGNED_IN=$(gql '{
  "query": "mutation VerifyCode($phone: String!, $code: String!, $inviteCode: String) { verifyCode(phone: $phone, code: $code, inviteCode: $inviteCode) { token tokenExpiresAt refreshToken isNewUser profile { phone inviteCode activatedInviteCode } userErrors { code field message } } }",
  "variables": {"phone": "'"$PHONE"'", "code": "'"$CODE"'", "inviteCode": "'"$INVITE"'"}}')
echo "$SIGNED_IN"
TOKEN=$(printf '%s' "$SIGNED_IN" | field verifyCode.token)
REFRESH=$(printf '%s' "$SIGNED_IN" | field verifyCode.refreshToken)

# 3. Who am I, and who joined with my code.
ME=$(gql '{
  "query": "query Me($first: Int!) { me { phone inviteCode activatedInviteCode referrals(first: $first) { totalCount edges { cursor node { phone activatedAt } } pageInfo { hasNextPage endCursor } } } }",
  "variables": {"first": 10}}' -H "Authorization: Bearer $TOKEN")
echo "$ME"
printf '%s' "$ME" | field me.phone >/dev/null

# 4. New tokens (what to do when a call answers UNAUTHENTICATED); the old refresh token is dead now.
REFRESHED=$(gql '{
  "query": "mutation RefreshToken($refreshToken: String!) { refreshToken(refreshToken: $refreshToken) { token tokenExpiresAt refreshToken userErrors { code field message } } }",
  "variables": {"refreshToken": "'"$REFRESH"'"}}')
echo "$REFRESHED"
TOKEN=$(printf '%s' "$REFRESHED" | field refreshToken.token)
REFRESH=$(printf '%s' "$REFRESHED" | field refreshToken.refreshToken)

# 5. Sign out.
SIGNED_OUT=$(gql '{
  "query": "mutation RevokeToken($refreshToken: String!) { revokeToken(refreshToken: $refreshToken) { revoked userErrors { code field message } } }",
  "variables": {"refreshToken": "'"$REFRESH"'"}}')
echo "$SIGNED_OUT"
printf '%s' "$SIGNED_OUT" | field revokeToken.revoked >/dev/null
)
