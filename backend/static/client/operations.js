// Every GraphQL operation the reference client sends, each named and self-contained,
// so that each pastes into GraphiQL as it stands and graphql-codegen reads this file
// as its documents (codegen.ts). `gql` only marks the documents for tools.

const gql = String.raw;

export const SEND_CODE = gql`
  mutation SendCode($phone: String!) {
    sendCode(phone: $phone) {
      phone
      expiresAt
      retryAfter
      debugCode
      userErrors { code field message retryAfter }
    }
  }
`;

export const VERIFY_CODE = gql`
  mutation VerifyCode($phone: String!, $code: String!, $inviteCode: String) {
    verifyCode(phone: $phone, code: $code, inviteCode: $inviteCode) {
      token
      tokenExpiresAt
      refreshToken
      isNewUser
      profile { id phone inviteCode activatedInviteCode }
      userErrors { code field message retryAfter }
    }
  }
`;

export const REFRESH_TOKEN = gql`
  mutation RefreshToken($refreshToken: String!) {
    refreshToken(refreshToken: $refreshToken) {
      token
      tokenExpiresAt
      refreshToken
      userErrors { code field message }
    }
  }
`;

export const REVOKE_TOKEN = gql`
  mutation RevokeToken($refreshToken: String!) {
    revokeToken(refreshToken: $refreshToken) {
      revoked
      userErrors { code field message }
    }
  }
`;

export const ACTIVATE_INVITE = gql`
  mutation ActivateInvite($inviteCode: String!) {
    activateInvite(inviteCode: $inviteCode) {
      profile { id activatedInviteCode inviteActivatedAt }
      userErrors { code field message }
    }
  }
`;

export const ME = gql`
  query Me($first: Int!) {
    me {
      id
      phone
      inviteCode
      activatedInviteCode
      inviteActivatedAt
      referrals(first: $first) {
        totalCount
        edges { cursor node { phone activatedAt } }
        pageInfo { hasNextPage endCursor }
      }
      sessions { id createdAt lastUsedAt device current }
    }
  }
`;

export const REVOKE_SESSION = gql`
  mutation RevokeSession($id: ID!) {
    revokeSession(id: $id) {
      revoked
      userErrors { code field message }
    }
  }
`;

export const SIGN_OUT_EVERYWHERE = gql`
  mutation SignOutEverywhere($keepCurrent: Boolean!) {
    signOutEverywhere(keepCurrent: $keepCurrent) {
      revoked
      userErrors { code field message }
    }
  }
`;

export const MORE_REFERRALS = gql`
  query MoreReferrals($first: Int!, $after: String!) {
    me {
      id
      referrals(first: $first, after: $after) {
        totalCount
        edges { cursor node { phone activatedAt } }
        pageInfo { hasNextPage endCursor }
      }
    }
  }
`;

export const REFERRAL_ADDED = gql`
  subscription ReferralAdded {
    referralAdded { phone activatedAt }
  }
`;
