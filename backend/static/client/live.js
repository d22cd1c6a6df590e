// Live referrals: the referralAdded subscription over WebSocket, spoken in
// graphql-transport-ws (the protocol of the graphql-ws library) without a library.
// The access token goes in connection_init's payload. When the server closes with
// 4403 (the token expired or was refused), the socket opens again as soon as the page
// has a newer token (any call of the page refreshes it), or after two minutes refreshes it
// itself; on any other loss it opens again after 1, 2, 5, 10, then 30 s; 4429 (too
// many of this person's tabs) stops it. After every reconnection `onReconnect` runs,
// to catch up on what came while the socket was down.

import { refresh, session } from "./api.js";
import { REFERRAL_ADDED } from "./operations.js";

const BACKOFF = [1000, 2000, 5000, 10000, 30000];
const OWN_REFRESH_AFTER = 120000; // ms a closed socket waits for the page's own refresh

export function watchReferrals({ onReferral, onReconnect }) {
  let socket = null;
  let stopped = false;
  let failures = 0;
  let timer = null;

  function url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/graphql/`;
  }

  function again(delay) {
    if (stopped) return;
    timer = setTimeout(open, delay);
  }

  function open() {
    const token = session.get()?.token;
    if (stopped || !token) return;
    const ws = new WebSocket(url(), "graphql-transport-ws");
    socket = ws;
    let acknowledged = false;
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "connection_init", payload: { Authorization: `Bearer ${token}` } }));
    };
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "ping") ws.send(JSON.stringify({ type: "pong" }));
      else if (message.type === "connection_ack") {
        acknowledged = true;
        if (failures > 0) onReconnect?.();
        failures = 0;
        ws.send(JSON.stringify({ id: "referrals", type: "subscribe", payload: { query: REFERRAL_ADDED } }));
      } else if (message.type === "next" && message.payload?.data?.referralAdded) {
        onReferral(message.payload.data.referralAdded);
      }
    };
    ws.onclose = (event) => {
      if (socket === ws) socket = null;
      if (stopped || event.code === 4429) return;
      failures += 1;
      if (event.code === 4403) waitForToken(token, acknowledged);
      else again(BACKOFF[Math.min(failures - 1, BACKOFF.length - 1)]);
    };
  }

  function waitForToken(expired, acknowledged) {
    const since = Date.now();
    const check = () => {
      if (stopped) return;
      if (session.get()?.token !== expired) open();
      else if (acknowledged && Date.now() - since > OWN_REFRESH_AFTER) {
        refresh().then(open, stop);
      } else timer = setTimeout(check, 1000);
    };
    check();
  }

  function stop() {
    stopped = true;
    clearTimeout(timer);
    socket?.close(1000);
    socket = null;
  }

  open();
  return stop;
}
