// Calls to POST /graphql/ as any single-page app would make them, the tokens in
// sessionStorage, and the silent refresh: a call that answers top-level
// UNAUTHENTICATED refreshes the access token once and is repeated once.
//
// A duplicated tab starts with a copy of this tab's sessionStorage, so both hold one
// refresh token. The server gives two refreshes of it within its grace window the same
// new token; beyond that window the second would end the session. So a tab that
// refreshes tells the others (BroadcastChannel), and a tab still holding the token it
// replaced takes the new pair instead of refreshing the old one later.

import { language } from "./i18n.js";
import { REFRESH_TOKEN } from "./operations.js";

const ENDPOINT = "/graphql/";
const SESSION_KEY = "session";
const tabs = typeof BroadcastChannel === "function" ? new BroadcastChannel("tokens") : null;

/** A top-level GraphQL error (`extensions.code`), or NETWORK when no answer came. */
export class ApiError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

/** The refresh token is gone or refused: the person has to sign in again. */
export class SessionEnded extends Error {
  constructor() {
    super("UNAUTHENTICATED");
    this.code = "UNAUTHENTICATED";
  }
}

export const session = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    } catch {
      return null;
    }
  },
  save({ token, refreshToken }) {
    sessionStorage.setItem(SESSION_KEY, JSON.stringify({ token, refreshToken }));
  },
  clear() {
    sessionStorage.removeItem(SESSION_KEY);
  },
};

function operationName(query) {
  return /\b(?:query|mutation)\s+(\w+)/.exec(query)?.[1];
}

async function post(query, variables, token) {
  const headers = {
    "Content-Type": "application/json",
    Accept: "application/graphql-response+json, application/json",
    "Accept-Language": language(),
  };
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(ENDPOINT, {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables, operationName: operationName(query) }),
    });
  } catch {
    throw new ApiError("NETWORK");
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(response.status >= 500 ? "SERVICE_UNAVAILABLE" : "UNKNOWN");
  }
  if (body.errors?.length) {
    const [error] = body.errors;
    throw new ApiError(error.extensions?.code || "UNKNOWN", error.message);
  }
  return body.data;
}

let refreshing = null;

/** One refresh at a time: a rotated refresh token must not be sent twice. */
export function refresh() {
  refreshing ??= (async () => {
    const refreshToken = session.get()?.refreshToken;
    if (!refreshToken) throw new SessionEnded();
    const { refreshToken: payload } = await post(REFRESH_TOKEN, { refreshToken });
    if (payload.userErrors.length) {
      session.clear();
      throw new SessionEnded();
    }
    session.save(payload);
    tabs?.postMessage({ replaced: refreshToken, token: payload.token, refreshToken: payload.refreshToken });
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/**
 * Run one operation and return its `data`. Top-level errors throw ApiError; with
 * `auth`, the access token is sent and an expired one is refreshed without the
 * person noticing, and SessionEnded is thrown only when that fails.
 */
export async function request(query, variables = {}, { auth = false } = {}) {
  if (!auth) return post(query, variables);
  const token = session.get()?.token;
  if (!token) throw new SessionEnded();
  try {
    return await post(query, variables, token);
  } catch (error) {
    if (error.code !== "UNAUTHENTICATED") throw error;
  }
  // Another call may have refreshed meanwhile; then its token is the one to use.
  if (session.get()?.token === token) await refresh();
  try {
    return await post(query, variables, session.get()?.token);
  } catch (error) {
    if (error.code !== "UNAUTHENTICATED") throw error;
    session.clear();
    throw new SessionEnded();
  }
}

tabs?.addEventListener("message", ({ data }) => {
  if (data?.replaced && session.get()?.refreshToken === data.replaced) session.save(data);
});
