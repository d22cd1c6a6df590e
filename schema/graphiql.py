"""The GraphiQL page: pinned copies of its scripts served by the project, a strict CSP.

strawberry's own page loads React and GraphiQL from a public CDN: with no internet it
never starts, and it puts third-party script into the page that holds a person's token.
This page loads only the files vendored in schema/static/graphiql/ (its README.md says
what they are and how to update them), through `{% static %}`, so under their hashed,
long-cached names. It opens on a walk-through of signing in.
"""

import json

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

# Where the page's files are under STATIC_URL; served only while GRAPHIQL is on
# (backend/middleware.py).
STATIC = "graphiql/"

# The walk-through's lines are at most 44 characters: the query editor of a 1280 px
# wide window shows 49 (tests/test_graphiql_layout.py).
EXAMPLE_DOCUMENT = """\
# Signing in, step by step. To run one
# operation, put the cursor inside it and
# press Ctrl-Enter (or use the run button).
# They share the variables below.
#
# 1. Run SendCode. With the simulated SMS
#    backend (the default of `make run`)
#    the answer comes after about a second,
#    with the code itself in debugCode.
mutation SendCode($phone: String!) {
  sendCode(phone: $phone) {
    phone
    expiresAt
    retryAfter
    debugCode
    userErrors {
      code field message retryAfter
    }
  }
}

# 2. Copy debugCode into "code" in the
#    variables and run VerifyCode. Put the
#    token it returns into the Headers tab
#    as {"Authorization": "Bearer <token>"}
#    and keep refreshToken for steps 5
#    and 6. (verifyCode also takes an
#    inviteCode.)
mutation VerifyCode(
  $phone: String!
  $code: String!
) {
  verifyCode(phone: $phone, code: $code) {
    token
    tokenExpiresAt
    refreshToken
    isNewUser
    profile { id phone inviteCode }
    userErrors {
      code field message retryAfter
    }
  }
}

# 3. Me needs the Authorization header
#    (without it: UNAUTHENTICATED). Your
#    inviteCode, and who signed up with it.
query Me {
  me {
    phone
    inviteCode
    activatedInviteCode
    inviteActivatedAt
    referrals(first: 20) {
      totalCount
      edges {
        cursor
        node { phone activatedAt }
      }
      pageInfo { hasNextPage endCursor }
    }
  }
}

# 4. Activate someone else's code: put it
#    into "inviteCode" in the variables.
#    Needs the header.
mutation ActivateInvite(
  $inviteCode: String!
) {
  activateInvite(inviteCode: $inviteCode) {
    profile {
      activatedInviteCode
      inviteActivatedAt
    }
    userErrors { code field message }
  }
}

# 5. The token lives 15 minutes. Put
#    refreshToken into the variables and
#    run RefreshToken for a new pair; the
#    old refresh token stops working.
mutation RefreshToken(
  $refreshToken: String!
) {
  refreshToken(
    refreshToken: $refreshToken
  ) {
    token
    tokenExpiresAt
    refreshToken
    userErrors { code field message }
  }
}

# 6. Sign out: revoke the refresh token.
mutation RevokeToken(
  $refreshToken: String!
) {
  revokeToken(refreshToken: $refreshToken) {
    revoked
    userErrors { code field message }
  }
}
"""

EXAMPLE_VARIABLES = {
    "phone": "+375291234567",
    "code": "debugCode from SendCode",
    "inviteCode": "someone else's inviteCode",
    "refreshToken": "refreshToken from VerifyCode",
}

EXAMPLE_HEADERS = {"Authorization": "Bearer <token>"}

# The <style> react-remove-scroll-bar (inside GraphiQL) adds while a dialog such as
# Settings is open. GraphiQL offers no way to give it a nonce; its text is fixed while
# the page has no scrollbar and no body margin (page.css). The browser test opens
# Settings, so a change to it shows there as a CSP error.
SCROLL_LOCK_STYLE_HASH = "'sha256-Y/huXlwoYkVyQlxwSVcCi1RCDGDCSVBzDt0hYP9qlTc='"

# Only this server, for everything. data: for fonts because GraphiQL's stylesheet
# carries its fonts as data: URLs; a font can neither run script nor reach a host.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        f"style-src 'self' {SCROLL_LOCK_STYLE_HASH}",
        "connect-src 'self'",
        "img-src 'self'",
        "font-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


def render_graphiql(request: HttpRequest) -> HttpResponse:
    """The GraphiQL page; its page.js starts GraphiQL from the JSON `graphiql-config`."""
    config = {
        "url": request.path,
        "query": EXAMPLE_DOCUMENT,
        "variables": json.dumps(EXAMPLE_VARIABLES, indent=2),
        "headers": json.dumps(EXAMPLE_HEADERS, indent=2),
    }
    response = HttpResponse(render_to_string("graphiql.html", {"graphiql": config}, request))
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response
