// The reference client: sign in with a phone and a one-time code, share an invite
// code, see who joined with it. Plain ES modules, no build step.
//
// Errors: each userError goes next to the field its `field` names, and the client
// branches on `code` only; the texts are this client's own (i18n.js), the server's
// `message` is the fallback for a code it does not know.

import { SessionEnded, request, session } from "./api.js";
import {
  clock,
  country,
  date,
  duration,
  has,
  language,
  plural,
  setLanguage,
  t,
  translatePage,
} from "./i18n.js";
import {
  ACTIVATE_INVITE,
  ME,
  MORE_REFERRALS,
  REVOKE_SESSION,
  REVOKE_TOKEN,
  SEND_CODE,
  SIGN_OUT_EVERYWHERE,
  VERIFY_CODE,
} from "./operations.js";
import { watchReferrals } from "./live.js";
import { formatPhone } from "./phone.js";

const PAGE_SIZE = 10;
const INVITE_KEY = "invite";
const INVITE_ERRORS = new Set([
  "INVITE_NOT_FOUND",
  "SELF_INVITE",
  "INVITE_ALREADY_ACTIVATED",
  "INVITE_CYCLE",
]);

// Where each form shows the error for each `field`: [the control to mark and focus, its message].
const FIELDS = {
  "phone-form": { phone: ["phone", "phone-error"] },
  "code-form": {
    code: ["code", "code-error"],
    inviteCode: ["invite", "invite-error"],
    phone: ["change-number", "sent-to-error"],
  },
  "activate-form": { inviteCode: ["activate", "activate-error"] },
};

const $ = (id) => document.getElementById(id);

const state = {
  step: "loading",
  phone: null, // E.164 the last code went to
  codeExpiresAt: 0,
  debugCode: null,
  invite: null, // from a share link, until it is used
  cooldowns: new Map(), // the number's digits -> when another code may be asked for (ms)
  notice: null, // { key, params, kind, reason }
  me: null,
  referrals: null, // { totalCount, edges, pageInfo }, null while loading
  startupFailed: null,
};
const busyButtons = new Set();
const shownErrors = new Map(); // message element id -> the error it shows

// What the phone field accepts

const DEFAULT_EXAMPLE = "+375 29 123-45-67";

/** A number written so that it never wraps: no-break spaces and hyphens. */
const unbroken = (number) => number.replace(/ /g, "\u00a0").replace(/-/g, "\u2011");

/**
 * The examples for the phone field's hint and errors. The server says what it takes (the
 * page's `data-` attributes on the field): with a default region, that country's
 * numbers without the country code too.
 */
function phoneRules() {
  const { defaultRegion, example = DEFAULT_EXAMPLE, localExample = "" } = $("phone").dataset;
  return {
    local: Boolean(defaultRegion && localExample),
    example,
    params: {
      example: unbroken(example),
      local: unbroken(localExample),
      country: defaultRegion ? country(defaultRegion) : "",
    },
  };
}

// Texts of errors

function errorText(error) {
  if (error.key) return t(error.key);
  if (error.code === "INVALID_PHONE") {
    const rules = phoneRules();
    return t(rules.local ? "error.INVALID_PHONE.local" : "error.INVALID_PHONE", rules.params);
  }
  const wait = error.until ? (error.until - Date.now()) / 1000 : error.retryAfter || 0;
  const code = error.code === "INTERNAL_SERVER_ERROR" ? "UNKNOWN" : error.code;
  if (code === "TOO_MANY_ATTEMPTS" && wait > 0) {
    return t("error.TOO_MANY_ATTEMPTS.wait", { time: duration(wait) });
  }
  if (has(`error.${code}`)) return t(`error.${code}`, { time: duration(wait) });
  return error.message || t("error.UNKNOWN");
}

/** Why an invite was left out of a sign-in, as the end of a sentence. */
function skipReason(error) {
  return has(`skipped.${error.code}`) ? t(`skipped.${error.code}`) : errorText(error);
}

function withDeadline(error) {
  return error.retryAfter ? { ...error, until: Date.now() + error.retryAfter * 1000 } : error;
}

function showMessage(slotId, error) {
  const slot = $(slotId);
  shownErrors.set(slotId, error);
  slot.textContent = errorText(error);
  slot.hidden = false;
}

let pendingFocus = null; // a control to focus once its fieldset is no longer busy

function focusControl(control) {
  if (control.closest("fieldset:disabled")) {
    pendingFocus = control;
    return;
  }
  control.focus({ preventScroll: true });
  if (control.tagName === "INPUT") control.select();
  // The field with its message, which sits below it: on a phone, focusing the control
  // alone can leave the message under the edge of the screen.
  (control.closest(".field, .sent-to") || control).scrollIntoView({ block: "nearest" });
}

function fieldError(controlId, slotId, error, { focus = true } = {}) {
  const control = $(controlId);
  showMessage(slotId, error);
  if (control.tagName === "INPUT") control.setAttribute("aria-invalid", "true");
  if (focus) focusControl(control);
}

function clearError(slotId) {
  shownErrors.delete(slotId);
  $(slotId).hidden = true;
  $(slotId).textContent = "";
  const control = document.querySelector(`[aria-describedby~="${slotId}"]`);
  control?.removeAttribute("aria-invalid");
}

function clearErrors(formId) {
  for (const [, slotId] of Object.values(FIELDS[formId] || {})) clearError(slotId);
  clearError(`${formId}-error`);
}

/** Each userError next to its field (the first one focused), the rest above the button. */
function showUserErrors(formId, errors) {
  let focused = false;
  for (const raw of errors) {
    const error = withDeadline(raw);
    const target = FIELDS[formId]?.[error.field];
    if (target) {
      fieldError(target[0], target[1], error, { focus: !focused });
      focused = true;
    } else {
      showMessage(`${formId}-error`, error);
    }
  }
}

/** A top-level error or no connection: said above the button; a lost session signs out. */
function failed(error, slotId) {
  if (error instanceof SessionEnded) {
    endSession("notice.sessionEnded");
    return;
  }
  if (!error.code) console.error(error); // a bug in this client, not an answer
  showMessage(slotId, { code: error.code || "UNKNOWN", message: error.message });
}

/** A notice says what just happened; the person's next action makes it old news. */
function dismissNotice() {
  if (!state.notice) return;
  state.notice = null;
  renderIntro();
}

// Busy states and countdowns

/** Run `action` with the button showing it is busy and its form's fields locked. */
async function busy(button, action) {
  const fieldset = button.closest("fieldset");
  const focused = document.activeElement;
  busyButtons.add(button.id);
  button.setAttribute("aria-busy", "true");
  if (fieldset) fieldset.disabled = true;
  pendingFocus = null;
  renderButtons();
  try {
    return await action();
  } finally {
    busyButtons.delete(button.id);
    button.removeAttribute("aria-busy");
    if (fieldset) fieldset.disabled = false;
    renderButtons();
    // Locking the fields dropped the focus; give it back where the person needs it.
    const target = pendingFocus || (fieldset?.contains(focused) ? focused : null);
    pendingFocus = null;
    if (target && target.offsetParent !== null && document.activeElement === document.body) {
      focusControl(target);
    }
  }
}

const digits = (phone) => (phone || "").replace(/\D/g, "");

function setCooldown(phones, seconds) {
  if (!seconds) return;
  for (const phone of phones) {
    if (digits(phone)) state.cooldowns.set(digits(phone), Date.now() + seconds * 1000);
  }
}

function waitFor(phone) {
  const until = state.cooldowns.get(digits(phone)) || 0;
  return Math.max(0, (until - Date.now()) / 1000);
}

function setLabel(id, text) {
  $(id).querySelector(".label").textContent = text;
}

function renderButtons() {
  const isBusy = (id) => busyButtons.has(id);
  const sendWait = waitFor($("phone").value);
  setLabel(
    "send",
    isBusy("send")
      ? t("phone.submitBusy")
      : sendWait > 0
        ? t("phone.submitIn", { time: clock(sendWait) })
        : t("phone.submit"),
  );
  $("send").disabled = isBusy("send") || sendWait > 0;

  const resendWait = waitFor(state.phone);
  setLabel("verify", isBusy("verify") ? t("code.submitBusy") : t("code.submit"));
  setLabel(
    "resend",
    isBusy("resend")
      ? t("code.resendBusy")
      : resendWait > 0
        ? t("code.resendIn", { time: clock(resendWait) })
        : t("code.resend"),
  );
  $("resend").disabled = isBusy("resend") || isBusy("verify") || resendWait > 0;

  setLabel("refresh", isBusy("refresh") ? t("profile.refreshBusy") : t("profile.refresh"));
  setLabel("more", isBusy("more") ? t("profile.moreBusy") : t("profile.more"));
  setLabel(
    "activate-submit",
    isBusy("activate-submit") ? t("profile.activateBusy") : t("profile.activate"),
  );
  setLabel("sign-out", isBusy("sign-out") ? t("profile.signOutBusy") : t("profile.signOut"));
  $("sign-out").disabled = isBusy("sign-out");
  setLabel(
    "sign-out-others",
    isBusy("sign-out-others") ? t("devices.signOutOthersBusy") : t("devices.signOutOthers"),
  );
  $("sign-out-others").disabled = isBusy("sign-out-others");
  for (const button of document.querySelectorAll(".end-session")) {
    setLabel(button.id, isBusy(button.id) ? t("devices.signOutBusy") : t("devices.signOut"));
    button.disabled = isBusy(button.id) || isBusy("sign-out-others");
  }
  setLabel("retry", isBusy("retry") ? t("loading.title") : t("common.retry"));
  $("retry").disabled = isBusy("retry");
  for (const id of ["refresh", "more"]) $(id).disabled = isBusy(id);
}

// Rendering

/** Fill an element with a text whose {phone} is the number, bold and grouped. */
function withPhone(element, key, phone, params = {}) {
  const [before, after = ""] = t(key, { ...params, phone: "\u0000" }).split("\u0000");
  const strong = document.createElement("strong");
  strong.className = "phone";
  strong.textContent = formatPhone(phone);
  element.replaceChildren(before, strong, after);
}

function renderIntro() {
  const step = state.startupFailed ? "failed" : state.step;
  const title = {
    loading: "loading.title",
    failed: "loading.failed",
    phone: "phone.title",
    code: "code.title",
    profile: "profile.title",
  }[step];
  $("title").textContent = t(title);
  document.title = t(`app.title.${state.step}`);
  const lead = $("lead");
  if (state.step === "code") withPhone(lead, "code.lead", state.phone);
  else if (state.step === "profile" && state.me) withPhone(lead, "profile.lead", state.me.phone);
  else lead.textContent = step === "failed" ? "" : t(`${state.step}.lead`);
  lead.hidden = !lead.textContent;

  const notice = $("notice");
  const shown = state.startupFailed
    ? { text: errorText(state.startupFailed), kind: "warn" }
    : state.notice && {
        text: t(state.notice.key, {
          ...state.notice.params,
          reason: state.notice.reason ? skipReason(state.notice.reason) : "",
        }),
        kind: state.notice.kind,
      };
  notice.hidden = !shown;
  notice.textContent = shown ? shown.text : "";
  notice.className = `notice ${shown?.kind || ""}`;
  $("retry").hidden = !state.startupFailed;
}

function renderSignIn() {
  const rules = phoneRules();
  $("phone-hint").textContent = t(rules.local ? "phone.hintLocal" : "phone.hint", rules.params);
  $("phone").placeholder = rules.example;
  const banner = $("invite-banner");
  banner.hidden = !state.invite;
  if (state.invite) $("invite-banner-text").textContent = t("invite.banner", { code: state.invite });
  renderBackToCode();
  const debug = $("debug-code");
  debug.hidden = !state.debugCode;
  if (state.debugCode) {
    const [before, after = ""] = t("code.debug", { code: "\u0000" }).split("\u0000");
    const strong = document.createElement("strong");
    strong.textContent = state.debugCode;
    debug.replaceChildren(before, strong, after);
  }
}

/** "Enter the code sent to ...", while the code sent in this visit still lives. */
function renderBackToCode() {
  const back = $("back-to-code");
  back.hidden = !(state.phone && state.codeExpiresAt > Date.now());
  if (!back.hidden) withPhone(back, "phone.haveCode", state.phone);
}

function personItem({ node }) {
  const item = document.createElement("li");
  item.tabIndex = -1;
  const avatar = document.createElement("span");
  avatar.className = "avatar";
  avatar.innerHTML = '<svg class="icon" aria-hidden="true"><use href="#i-user"/></svg>';
  const person = document.createElement("span");
  person.className = "person";
  const phone = document.createElement("span");
  phone.className = "person-phone";
  phone.textContent = formatPhone(node.phone);
  const when = document.createElement("time");
  when.className = "person-date";
  when.dateTime = node.activatedAt;
  when.textContent = t("profile.joinedAt", { date: date(node.activatedAt) });
  person.append(phone, when);
  item.append(avatar, person);
  return item;
}

const deviceName = (session) =>
  session.device && session.device !== "Unknown" ? session.device : t("devices.unknown");

/** One signed-in device: this one marked, the others with their own "Sign out". */
function deviceItem(session) {
  const item = document.createElement("li");
  item.tabIndex = -1;
  item.dataset.session = session.id;
  const icon = document.createElement("span");
  icon.className = "avatar";
  icon.innerHTML = '<svg class="icon" aria-hidden="true"><use href="#i-device"/></svg>';
  const about = document.createElement("span");
  about.className = "person";
  const name = document.createElement("span");
  name.className = "person-phone";
  name.textContent = deviceName(session);
  const when = document.createElement("time");
  when.className = "person-date";
  when.dateTime = session.lastUsedAt;
  when.textContent = t("devices.lastUsed", { date: date(session.lastUsedAt) });
  about.append(name, when);
  item.append(icon, about);
  if (session.current) {
    const mark = document.createElement("span");
    mark.className = "count";
    mark.textContent = t("devices.current");
    about.append(mark);
  } else {
    const end = document.createElement("button");
    end.type = "button";
    end.className = "button ghost small end-session";
    end.id = `end-session-${session.id}`;
    end.innerHTML = '<span class="spinner" aria-hidden="true"></span><span class="label"></span>';
    end.setAttribute("aria-label", `${t("devices.signOut")}: ${deviceName(session)}`);
    end.addEventListener("click", () => endDevice(session, end));
    item.append(end);
  }
  return item;
}

function renderDevices() {
  const sessions = state.me?.sessions || [];
  $("devices").replaceChildren(...sessions.map(deviceItem));
  $("sign-out-others").hidden = !sessions.some((session) => !session.current);
}

function renderProfile() {
  const me = state.me;
  if (!me) return;
  renderDevices();
  $("my-code").textContent = me.inviteCode;
  $("share-link").value = shareLink(me.inviteCode);
  showLinkEnd();
  $("share").hidden = typeof navigator.share !== "function";

  const activated = Boolean(me.activatedInviteCode);
  $("activate-title").textContent = t(activated ? "profile.joinedTitle" : "profile.activateTitle");
  $("activate-form").hidden = activated;
  $("joined-with").hidden = !activated;
  if (activated) {
    $("joined-with").textContent = t("profile.joinedWith", {
      code: me.activatedInviteCode,
      date: me.inviteActivatedAt ? date(me.inviteActivatedAt) : "",
    });
  }
  const fromLink = !activated && state.invite && state.invite !== me.inviteCode;
  $("activate-hint").hidden = !(fromLink && $("activate").value === state.invite);

  const referrals = state.referrals;
  const count = $("referral-count");
  count.hidden = !referrals;
  $("referrals-empty").hidden = !referrals || referrals.totalCount > 0;
  $("more").hidden = !referrals?.pageInfo.hasNextPage;
  if (!referrals) return;
  count.textContent = referrals.totalCount.toLocaleString(language());
  count.title = plural("people", referrals.totalCount);
  $("referrals").replaceChildren(...referrals.edges.map(personItem));
}

function render() {
  document.documentElement.lang = language();
  for (const option of document.querySelectorAll(".switch-option")) {
    option.setAttribute("aria-pressed", String(option.dataset.lang === language()));
  }
  translatePage();
  renderIntro();
  renderSignIn();
  renderProfile();
  renderButtons();
  for (const [slotId, error] of shownErrors) $(slotId).textContent = errorText(error);
}

function go(step, { focus } = {}) {
  state.step = step;
  $("phone-form").hidden = step !== "phone";
  $("code-form").hidden = step !== "code";
  $("profile").hidden = step !== "profile";
  $("sign-out").hidden = step !== "profile";
  $("app").classList.toggle("wide", step === "profile");
  $("app").classList.toggle("single", step !== "profile");
  if (step !== "code") stopWebOtp();
  render();
  focus?.focus();
}

// The invite code of a share link

function normalizeInvite(raw) {
  return (raw || "")
    .toUpperCase()
    .replace(/[^0-9A-Z]/g, "")
    .slice(0, 16);
}

function shareLink(code) {
  return `${location.origin}/?invite=${encodeURIComponent(code)}`;
}

/** A link too long for its field is cut at its start, not at the code at its end. */
function showLinkEnd() {
  const field = $("share-link");
  field.scrollLeft = field.scrollWidth;
}

function readInvite() {
  const fromUrl = new URLSearchParams(location.search).get("invite");
  if (fromUrl !== null && normalizeInvite(fromUrl)) {
    sessionStorage.setItem(INVITE_KEY, normalizeInvite(fromUrl));
  }
  return sessionStorage.getItem(INVITE_KEY);
}

function forgetInvite() {
  state.invite = null;
  sessionStorage.removeItem(INVITE_KEY);
  if (new URLSearchParams(location.search).has("invite")) history.replaceState(null, "", "/");
}

// WebOTP: a phone's browser can hand over the code of an SMS that ends "@domain #code".

let otpRequest = null;

function startWebOtp() {
  stopWebOtp();
  if (!("OTPCredential" in window) || !navigator.credentials?.get) return;
  otpRequest = new AbortController();
  navigator.credentials
    .get({ otp: { transport: ["sms"] }, signal: otpRequest.signal })
    .then((otp) => {
      if (!otp?.code || state.step !== "code") return;
      $("code").value = digits(otp.code).slice(0, 4);
      submitWhenWhole();
    })
    .catch(() => {}); // refused, aborted or not available: the person types the code
}

function stopWebOtp() {
  otpRequest?.abort();
  otpRequest = null;
}

/**
 * The 4th digit signs in, typed, pasted or filled in by the browser, as Telegram, WhatsApp
 * and Google do; not while an invite code is half typed (the person presses Sign in).
 */
function submitWhenWhole() {
  if (!/^[0-9]{4}$/.test($("code").value)) return;
  const invite = normalizeInvite($("invite").value);
  if (invite && invite.length < 6) return;
  $("code-form").requestSubmit();
}

// Actions

async function sendCode() {
  clearErrors("phone-form");
  state.notice = null;
  const typed = $("phone").value.trim();
  if (!typed) {
    fieldError("phone", "phone-error", { key: "phone.required" });
    return;
  }
  if (waitFor(typed) > 0) return;
  await busy($("send"), async () => {
    const { sendCode: sent } = await request(SEND_CODE, { phone: typed });
    if (sent.userErrors.length) {
      for (const error of sent.userErrors) setCooldown([typed], error.retryAfter);
      showUserErrors("phone-form", sent.userErrors);
      return;
    }
    codeSent(sent, typed);
    $("code").value = "";
    $("invite").value = state.invite || "";
    go("code", { focus: $("code") });
    startWebOtp();
  }).catch((error) => failed(error, "phone-form-error"));
  renderIntro();
}

function codeSent(sent, typed) {
  state.phone = sent.phone;
  state.debugCode = sent.debugCode;
  state.codeExpiresAt = Date.parse(sent.expiresAt) || 0;
  setCooldown([typed, sent.phone], sent.retryAfter);
}

async function resendCode() {
  clearErrors("code-form");
  state.notice = null;
  await busy($("resend"), async () => {
    const { sendCode: sent } = await request(SEND_CODE, { phone: state.phone });
    if (sent.userErrors.length) {
      for (const error of sent.userErrors) setCooldown([state.phone], error.retryAfter);
      showUserErrors("code-form", sent.userErrors);
      return;
    }
    codeSent(sent, state.phone);
    state.notice = { key: "code.resent", kind: "ok" };
    $("code").value = "";
    render();
    $("code").focus();
    startWebOtp();
  }).catch((error) => failed(error, "code-form-error"));
}

async function verifyCode() {
  clearErrors("code-form");
  state.notice = null;
  const code = $("code").value.trim();
  if (!/^[0-9]{4}$/.test(code)) {
    fieldError("code", "code-error", { key: "code.required" });
    return;
  }
  const invite = normalizeInvite($("invite").value) || null;
  stopWebOtp();
  await busy($("verify"), async () => {
    const phone = state.phone;
    let { verifyCode: answer } = await request(VERIFY_CODE, { phone, code, inviteCode: invite });
    const refused = invite && answer.userErrors.find((error) => INVITE_ERRORS.has(error.code));
    if (refused) {
      // The code is still live after an invite is refused: sign in without the invite.
      ({ verifyCode: answer } = await request(VERIFY_CODE, { phone, code, inviteCode: null }));
    }
    if (answer.userErrors.length) {
      for (const error of answer.userErrors) setCooldown([phone], error.retryAfter);
      showUserErrors("code-form", answer.userErrors);
      render();
      return;
    }
    session.save(answer);
    if (invite) forgetInvite();
    if (refused) {
      state.notice = {
        key: "profile.inviteSkipped",
        params: { code: invite },
        reason: refused,
        kind: "warn",
      };
    } else if (answer.isNewUser) {
      state.notice = answer.profile.activatedInviteCode
        ? {
            key: "profile.welcomeInvited",
            params: { code: answer.profile.activatedInviteCode },
            kind: "ok",
          }
        : { key: "profile.welcome", kind: "ok" };
    }
    state.phone = null;
    state.debugCode = null;
    state.codeExpiresAt = 0;
    state.me = answer.profile;
    state.referrals = null;
    go("profile", { focus: $("title") });
    await loadProfile($("refresh"));
  }).catch((error) => failed(error, "code-form-error"));
}

// The referralAdded subscription while a profile is shown: a friend who joins appears
// at once, without reloading (live.js).
let stopLive = null;

function startLive() {
  stopLive ??= watchReferrals({
    onReferral(node) {
      const referrals = state.referrals;
      if (!referrals) return;
      const edges = referrals.pageInfo.hasNextPage ? referrals.edges : [...referrals.edges, { node }];
      state.referrals = { ...referrals, totalCount: referrals.totalCount + 1, edges };
      state.notice = { key: "profile.newReferral", params: { phone: formatPhone(node.phone) }, kind: "ok" };
      render();
    },
    onReconnect: catchUp,
  });
}

/** After the socket was down: read the profile again only if referrals came meanwhile,
 * so a list the person has expanded stays as it is. */
async function catchUp() {
  if (!state.referrals) return;
  try {
    const { me } = await request(ME, { first: PAGE_SIZE }, { auth: true });
    if (me.referrals.totalCount === state.referrals?.totalCount) return;
    state.me = me;
    state.referrals = me.referrals;
    render();
  } catch {
    // The next reconnection, or the Refresh button, tries again.
  }
}

function stopLiveReferrals() {
  stopLive?.();
  stopLive = null;
}

async function loadProfile(button) {
  clearError("referrals-error");
  const load = async () => {
    const { me } = await request(ME, { first: PAGE_SIZE }, { auth: true });
    state.me = me;
    state.referrals = me.referrals;
    startLive();
    if (state.invite === me.inviteCode || me.activatedInviteCode) forgetInvite();
    else if (state.invite && !$("activate").value) $("activate").value = state.invite;
    render();
  };
  try {
    await (button ? busy(button, load) : load());
  } catch (error) {
    failed(error, "referrals-error");
  }
}

async function loadMore() {
  clearError("referrals-error");
  dismissNotice();
  const after = state.referrals.pageInfo.endCursor;
  await busy($("more"), async () => {
    const { me } = await request(MORE_REFERRALS, { first: PAGE_SIZE, after }, { auth: true });
    const shown = state.referrals.edges.length;
    state.referrals = {
      totalCount: me.referrals.totalCount,
      edges: [...state.referrals.edges, ...me.referrals.edges],
      pageInfo: me.referrals.pageInfo,
    };
    renderProfile();
    $("referrals").children[shown]?.focus();
  }).catch((error) => failed(error, "referrals-error"));
}

async function activateInvite() {
  clearErrors("activate-form");
  dismissNotice();
  const inviteCode = normalizeInvite($("activate").value);
  if (!inviteCode) {
    fieldError("activate", "activate-error", { key: "profile.activateRequired" });
    return;
  }
  await busy($("activate-submit"), async () => {
    const { activateInvite: answer } = await request(
      ACTIVATE_INVITE,
      { inviteCode },
      { auth: true },
    );
    if (answer.userErrors.length) {
      showUserErrors("activate-form", answer.userErrors);
      return;
    }
    state.me = { ...state.me, ...answer.profile };
    forgetInvite();
    state.notice = {
      key: "profile.activated",
      params: { code: answer.profile.activatedInviteCode },
      kind: "ok",
    };
    render();
    $("title").focus();
  }).catch((error) => failed(error, "activate-form-error"));
}

function deviceStatus(key, params = {}) {
  $("devices-status").textContent = t(key, params);
  clearTimeout(deviceStatus.timer);
  deviceStatus.timer = setTimeout(() => {
    $("devices-status").textContent = "";
  }, 6000);
}

/** The devices left once `ended` are signed out; a device already gone goes too. */
function forgetDevices(ended) {
  state.me = { ...state.me, sessions: state.me.sessions.filter((s) => !ended(s)) };
  renderProfile();
  renderButtons();
}

async function endDevice(device, button) {
  clearError("devices-error");
  dismissNotice();
  await busy(button, async () => {
    const { revokeSession: answer } = await request(
      REVOKE_SESSION,
      { id: device.id },
      { auth: true },
    );
    const [error] = answer.userErrors;
    if (error && error.code !== "SESSION_NOT_FOUND") {
      showMessage("devices-error", error);
      return;
    }
    forgetDevices((session) => session.id === device.id);
    deviceStatus(error ? "error.SESSION_NOT_FOUND" : "devices.ended", {
      device: deviceName(device),
    });
    $("devices-title").focus();
  }).catch((error) => failed(error, "devices-error"));
}

async function signOutOthers() {
  clearError("devices-error");
  dismissNotice();
  await busy($("sign-out-others"), async () => {
    const { signOutEverywhere: answer } = await request(
      SIGN_OUT_EVERYWHERE,
      { keepCurrent: true },
      { auth: true },
    );
    if (answer.userErrors.length) {
      showMessage("devices-error", answer.userErrors[0]);
      return;
    }
    forgetDevices((session) => !session.current);
    deviceStatus("devices.endedOthers");
    $("devices-title").focus();
  }).catch((error) => failed(error, "devices-error"));
}

function endSession(noticeKey) {
  stopLiveReferrals();
  session.clear();
  state.me = null;
  state.referrals = null;
  state.startupFailed = null;
  state.notice = { key: noticeKey, kind: "info" };
  // Nothing of the last sign-in stays in the fields: with the number gone, so is its
  // resend countdown on "Get code".
  for (const id of ["phone", "code", "invite", "activate"]) $(id).value = "";
  for (const slotId of [...shownErrors.keys()]) clearError(slotId);
  go("phone", { focus: $("phone") });
}

async function signOut() {
  await busy($("sign-out"), async () => {
    const refreshToken = session.get()?.refreshToken;
    if (refreshToken) await request(REVOKE_TOKEN, { refreshToken }).catch(() => {});
  });
  endSession("notice.signedOut");
}

async function copy(text, button, doneKey) {
  dismissNotice();
  let copied = false;
  try {
    await navigator.clipboard.writeText(text);
    copied = true;
  } catch {
    // No clipboard API (or refused): the old way, through a selection.
    const area = document.createElement("textarea");
    area.value = text;
    area.className = "sprite";
    document.body.append(area);
    area.select();
    copied = document.execCommand("copy");
    area.remove();
  }
  const status = $("copied");
  status.textContent = t(copied ? doneKey : "profile.copyFailed");
  button.classList.toggle("done", copied);
  button.querySelector("use")?.setAttribute("href", copied ? "#i-check" : "#i-copy");
  clearTimeout(copy.timer);
  copy.timer = setTimeout(() => {
    status.textContent = "";
    for (const id of ["copy-code", "copy-link"]) {
      $(id).classList.remove("done");
      $(id).querySelector("use").setAttribute("href", "#i-copy");
    }
  }, 4000);
}

async function startup() {
  state.startupFailed = null;
  if (!session.get()) {
    go("phone", { focus: $("phone") });
    return;
  }
  go("loading");
  try {
    const { me } = await request(ME, { first: PAGE_SIZE }, { auth: true });
    state.me = me;
    state.referrals = me.referrals;
    startLive();
    if (state.invite === me.inviteCode || me.activatedInviteCode) forgetInvite();
    else if (state.invite) $("activate").value = state.invite;
    go("profile", { focus: $("title") });
  } catch (error) {
    if (error instanceof SessionEnded) {
      endSession("notice.sessionEnded");
      return;
    }
    state.startupFailed = { code: error.code || "UNKNOWN", message: error.message };
    render();
  }
}

// Wiring

function wire() {
  for (const option of document.querySelectorAll(".switch-option")) {
    option.addEventListener("click", () => {
      setLanguage(option.dataset.lang);
      render();
    });
  }
  const onSubmit = (formId, action) =>
    $(formId).addEventListener("submit", (event) => {
      event.preventDefault();
      action();
    });
  onSubmit("phone-form", sendCode);
  onSubmit("code-form", verifyCode);
  onSubmit("activate-form", activateInvite);

  $("phone").addEventListener("input", () => {
    clearError("phone-error");
    renderButtons();
  });
  $("code").addEventListener("input", () => {
    const value = digits($("code").value).slice(0, 4);
    if (value !== $("code").value) $("code").value = value;
    clearError("code-error");
    submitWhenWhole();
  });
  // A pasted SMS ("Your code: 1234") would be cut to its first 4 characters: its digits instead.
  $("code").addEventListener("paste", (event) => {
    const pasted = digits(event.clipboardData?.getData("text"));
    if (pasted.length < 4) return; // part of a code: pasted as usual
    event.preventDefault();
    $("code").value = pasted.slice(0, 4);
    clearError("code-error");
    submitWhenWhole();
  });
  for (const id of ["invite", "activate"]) {
    $(id).addEventListener("input", () => {
      const value = normalizeInvite($(id).value).slice(0, 6);
      if (value !== $(id).value) $(id).value = value;
      clearError(`${id}-error`);
      if (id === "activate") $("activate-hint").hidden = true;
    });
  }
  $("change-number").addEventListener("click", () => {
    clearErrors("code-form");
    state.notice = null;
    go("phone", { focus: $("phone") });
    $("phone").select();
  });
  $("back-to-code").addEventListener("click", () => {
    clearErrors("phone-form");
    state.notice = null;
    go("code", { focus: $("code") });
    startWebOtp();
  });
  $("resend").addEventListener("click", resendCode);
  $("refresh").addEventListener("click", () => {
    dismissNotice();
    loadProfile($("refresh"));
  });
  $("more").addEventListener("click", loadMore);
  $("sign-out").addEventListener("click", signOut);
  $("sign-out-others").addEventListener("click", signOutOthers);
  $("retry").addEventListener("click", () => busy($("retry"), startup));
  $("copy-code").addEventListener("click", () =>
    copy(state.me.inviteCode, $("copy-code"), "profile.codeCopied"),
  );
  $("copy-link").addEventListener("click", () =>
    copy(shareLink(state.me.inviteCode), $("copy-link"), "profile.linkCopied"),
  );
  $("share").addEventListener("click", () => {
    dismissNotice();
    const code = state.me.inviteCode;
    navigator
      .share({ title: t("app.name"), text: t("profile.shareText", { code }), url: shareLink(code) })
      .catch(() => {}); // the person closed the share sheet
  });
  $("share-link").addEventListener("focus", () => $("share-link").select());
  new ResizeObserver(showLinkEnd).observe($("share-link")); // shown, turned, resized

  // Countdowns on the send buttons, and the "enter the code" link going stale.
  setInterval(() => {
    if (state.step === "phone" || state.step === "code") {
      renderButtons();
      renderBackToCode();
    }
  }, 1000);
}

setLanguage(language(), { remember: false });
state.invite = readInvite();
wire();
document.documentElement.classList.remove("booting");
startup();
