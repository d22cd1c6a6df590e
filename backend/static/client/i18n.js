// Russian and English texts of the reference client, and the choice between them.
// Error texts are keyed by the API's error `code`; the server's `message` is only the
// fallback for a code this file does not know yet.

// Example numbers ({example}, {local}) are filled in by app.js, with no-break spaces and
// hyphens so that they never wrap in the middle.

const STORAGE_KEY = "language";
export const LANGUAGES = ["ru", "en"];

const TEXTS = {
  en: {
    "app.name": "Invites",
    "app.title.phone": "Sign in · Invites",
    "app.title.code": "Enter the code · Invites",
    "app.title.profile": "Your account · Invites",
    "app.title.loading": "Invites",
    "language.label": "Language",
    "noscript": "This page needs JavaScript.",

    "loading.title": "Loading…",
    "loading.lead": "Opening your account.",
    "loading.failed": "Couldn’t open your account.",
    "common.retry": "Try again",

    "phone.title": "Sign in",
    "phone.lead": "Enter your phone number and we’ll text you a 4-digit code. New here? The same code creates your account.",
    "phone.label": "Phone number",
    "phone.hint": "With the country code, e.g. {example}",
    "phone.hintLocal": "With the country code, e.g. {example}, or as dialled in {country}, e.g. {local}",
    "phone.submit": "Get code",
    "phone.submitBusy": "Sending the code…",
    "phone.submitIn": "Get code in {time}",
    "phone.required": "Enter your phone number.",
    "phone.haveCode": "Enter the code sent to {phone}",
    "invite.banner": "You’re invited! Code {code} will be applied when you sign up.",

    "code.title": "Enter the code",
    "code.lead": "We sent an SMS with a 4-digit code to {phone}.",
    "code.change": "Change number",
    "code.label": "Code from the SMS",
    "code.required": "The code is 4 digits.",
    "code.debug": "Demo server: no SMS is sent. Your code is {code}.",
    "code.invite": "Invite code (optional)",
    "code.inviteHint": "From a friend’s link. You can also add it later.",
    "code.submit": "Sign in",
    "code.submitBusy": "Checking…",
    "code.resend": "Send a new code",
    "code.resendBusy": "Sending…",
    "code.resendIn": "New code in {time}",
    "code.resent": "A new code is on its way.",

    "profile.title": "You’re signed in",
    "profile.lead": "Signed in as {phone}.",
    "profile.signOut": "Sign out",
    "profile.signOutBusy": "Signing out…",
    "profile.welcome": "Welcome! Your account is ready.",
    "profile.welcomeInvited": "Welcome! You joined with invite code {code}.",
    "profile.inviteSkipped": "You’re signed in, but invite code {code} wasn’t applied: {reason}",
    "skipped.INVITE_NOT_FOUND": "no one has this code.",
    "skipped.SELF_INVITE": "it’s your own code.",
    "skipped.INVITE_ALREADY_ACTIVATED": "you’ve already joined with another code.",
    "skipped.INVITE_CYCLE": "its owner joined through your invite.",
    "profile.myCode": "Your invite code",
    "profile.myCodeText": "Friends who sign up with your link or code show up below.",
    "profile.copyCode": "Copy code",
    "profile.codeCopied": "Code copied",
    "profile.link": "Your invite link",
    "profile.copyLink": "Copy link",
    "profile.linkCopied": "Link copied",
    "profile.share": "Share",
    "profile.shareText": "Join me: sign up with my invite code {code}",
    "profile.copyFailed": "Couldn’t copy. Select the text and copy it yourself.",
    "profile.joinedWith": "You joined with invite code {code} on {date}.",
    "profile.activateTitle": "Got an invite code?",
    "profile.joinedTitle": "You were invited",
    "profile.activateText": "Enter a friend’s code to join as their referral. You can do this once.",
    "profile.activateLabel": "Friend’s invite code",
    "profile.activateFromLink": "Filled in from the link you opened.",
    "profile.activate": "Activate",
    "profile.activateBusy": "Activating…",
    "profile.activateRequired": "Enter an invite code.",
    "profile.activated": "Done! You joined with invite code {code}.",
    "profile.newReferral": "{phone} has just joined with your code.",
    "profile.referrals": "Joined with your code",
    "profile.refresh": "Refresh",
    "profile.refreshBusy": "Refreshing…",
    "profile.more": "Show more",
    "profile.moreBusy": "Loading…",
    "profile.emptyTitle": "No one yet",
    "profile.emptyText": "Send your link to friends. When they sign up with it, they’ll appear here.",
    "profile.joinedAt": "joined {date}",
    "people": { one: "{n} person", other: "{n} people" },

    "devices.title": "Devices",
    "devices.text": "Where you’re signed in. A device you sign out here is signed out at once.",
    "devices.unknown": "Unknown device",
    "devices.current": "This device",
    "devices.lastUsed": "active {date}",
    "devices.signOut": "Sign out",
    "devices.signOutBusy": "Signing out…",
    "devices.signOutOthers": "Sign out everywhere else",
    "devices.signOutOthersBusy": "Signing out…",
    "devices.ended": "{device} is signed out.",
    "devices.endedOthers": "Signed out on every other device.",
    "notice.signedOut": "You’ve signed out.",
    "notice.sessionEnded": "Your session has ended. Sign in again.",

    "error.INVALID_PHONE": "Check the number: it needs the country code, e.g. {example}.",
    "error.INVALID_PHONE.local": "Check the number, e.g. {example} or {local}.",
    "error.RATE_LIMITED": "Too many codes requested for this number. Try again in {time}.",
    "error.INVALID_CODE": "Wrong code. Check the SMS and try again.",
    "error.CODE_EXPIRED": "This code no longer works. Send a new one.",
    "error.TOO_MANY_ATTEMPTS": "Too many wrong codes. Send a new one.",
    "error.TOO_MANY_ATTEMPTS.wait": "Too many wrong codes. Try again in {time}.",
    "error.INVITE_NOT_FOUND": "There’s no such invite code. Check it and try again.",
    "error.SELF_INVITE": "That’s your own invite code.",
    "error.INVITE_ALREADY_ACTIVATED": "You’ve already joined with another invite code.",
    "error.INVITE_CYCLE": "This person joined through your invite, so you can’t join through theirs.",
    "error.INVALID_TOKEN": "Your session has ended. Sign in again.",
    "error.SESSION_NOT_FOUND": "That device is already signed out.",
    "error.DELIVERY_FAILED": "We couldn’t deliver the SMS. Try again in {time}.",
    "error.REGION_NOT_ALLOWED": "We can’t send codes to numbers in this country yet.",
    "error.UNAUTHENTICATED": "Your session has ended. Sign in again.",
    "error.SERVICE_UNAVAILABLE": "The service is briefly unavailable. Try again in a moment.",
    "error.NETWORK": "No connection to the server. Check your internet and try again.",
    "error.UNKNOWN": "Something went wrong. Try again.",

    "time.seconds": "{n} s",
    "time.minutes": "{n} min",
    "time.hours": "{h} h {m} min",
  },

  ru: {
    "app.name": "Приглашения",
    "app.title.phone": "Вход · Приглашения",
    "app.title.code": "Код из SMS · Приглашения",
    "app.title.profile": "Ваш аккаунт · Приглашения",
    "app.title.loading": "Приглашения",
    "language.label": "Язык",
    "noscript": "Для этой страницы нужен JavaScript.",

    "loading.title": "Загрузка…",
    "loading.lead": "Открываем ваш аккаунт.",
    "loading.failed": "Не удалось открыть аккаунт.",
    "common.retry": "Повторить",

    "phone.title": "Вход",
    "phone.lead": "Введите номер телефона — мы пришлём SMS с кодом из 4 цифр. Впервые здесь? Тот же код создаст аккаунт.",
    "phone.label": "Номер телефона",
    "phone.hint": "С кодом страны, например {example}",
    "phone.hintLocal": "С кодом страны, например {example}, или как его набирают в стране {country}, например {local}",
    "phone.submit": "Получить код",
    "phone.submitBusy": "Отправляем код…",
    "phone.submitIn": "Получить код через {time}",
    "phone.required": "Введите номер телефона.",
    "phone.haveCode": "Ввести код, отправленный на {phone}",
    "invite.banner": "Вас пригласили! Код {code} применится при регистрации.",

    "code.title": "Введите код",
    "code.lead": "Мы отправили SMS с кодом из 4 цифр на номер {phone}.",
    "code.change": "Изменить номер",
    "code.label": "Код из SMS",
    "code.required": "Код — это 4 цифры.",
    "code.debug": "Демо-сервер: SMS не отправляется. Ваш код — {code}.",
    "code.invite": "Код приглашения (необязательно)",
    "code.inviteHint": "Из ссылки друга. Его можно ввести и позже.",
    "code.submit": "Войти",
    "code.submitBusy": "Проверяем…",
    "code.resend": "Отправить новый код",
    "code.resendBusy": "Отправляем…",
    "code.resendIn": "Новый код через {time}",
    "code.resent": "Новый код уже в пути.",

    "profile.title": "Вы вошли",
    "profile.lead": "Ваш номер: {phone}.",
    "profile.signOut": "Выйти",
    "profile.signOutBusy": "Выходим…",
    "profile.welcome": "Добро пожаловать! Аккаунт создан.",
    "profile.welcomeInvited": "Добро пожаловать! Вы присоединились по коду приглашения {code}.",
    "profile.inviteSkipped": "Вы вошли, но код приглашения {code} не применён: {reason}",
    "skipped.INVITE_NOT_FOUND": "такого кода нет.",
    "skipped.SELF_INVITE": "это ваш собственный код.",
    "skipped.INVITE_ALREADY_ACTIVATED": "вы уже присоединились по другому коду.",
    "skipped.INVITE_CYCLE": "его владелец пришёл по вашему приглашению.",
    "profile.myCode": "Ваш код приглашения",
    "profile.myCodeText": "Друзья, которые зарегистрируются по вашей ссылке или коду, появятся ниже.",
    "profile.copyCode": "Скопировать код",
    "profile.codeCopied": "Код скопирован",
    "profile.link": "Ваша ссылка-приглашение",
    "profile.copyLink": "Скопировать ссылку",
    "profile.linkCopied": "Ссылка скопирована",
    "profile.share": "Поделиться",
    "profile.shareText": "Присоединяйся: регистрируйся по моему коду {code}",
    "profile.copyFailed": "Не удалось скопировать. Выделите текст и скопируйте вручную.",
    "profile.joinedWith": "Вы присоединились по коду {code} ({date}).",
    "profile.activateTitle": "Есть код приглашения?",
    "profile.joinedTitle": "Вас пригласили",
    "profile.activateText": "Введите код друга, чтобы присоединиться по его приглашению. Это можно сделать один раз.",
    "profile.activateLabel": "Код приглашения друга",
    "profile.activateFromLink": "Подставлен из ссылки, по которой вы пришли.",
    "profile.activate": "Активировать",
    "profile.activateBusy": "Активируем…",
    "profile.activateRequired": "Введите код приглашения.",
    "profile.activated": "Готово! Вы присоединились по коду {code}.",
    "profile.newReferral": "{phone} только что присоединился по вашему коду.",
    "profile.referrals": "Присоединились по вашему коду",
    "profile.refresh": "Обновить",
    "profile.refreshBusy": "Обновляем…",
    "profile.more": "Показать ещё",
    "profile.moreBusy": "Загружаем…",
    "profile.emptyTitle": "Пока никого",
    "profile.emptyText": "Отправьте ссылку друзьям. Когда они зарегистрируются по ней, они появятся здесь.",
    "profile.joinedAt": "{date}",
    "people": { one: "{n} человек", few: "{n} человека", many: "{n} человек", other: "{n} человека" },

    "devices.title": "Устройства",
    "devices.text": "Где выполнен вход. Устройство, на котором вы выйдете здесь, выйдет сразу.",
    "devices.unknown": "Неизвестное устройство",
    "devices.current": "Это устройство",
    "devices.lastUsed": "активность: {date}",
    "devices.signOut": "Выйти",
    "devices.signOutBusy": "Выходим…",
    "devices.signOutOthers": "Выйти на всех других устройствах",
    "devices.signOutOthersBusy": "Выходим…",
    "devices.ended": "Выполнен выход на устройстве {device}.",
    "devices.endedOthers": "Выполнен выход на всех других устройствах.",
    "notice.signedOut": "Вы вышли из аккаунта.",
    "notice.sessionEnded": "Сеанс завершён. Войдите снова.",

    "error.INVALID_PHONE": "Проверьте номер: нужен код страны, например {example}.",
    "error.INVALID_PHONE.local": "Проверьте номер, например {example} или {local}.",
    "error.RATE_LIMITED": "Слишком много запросов кода для этого номера. Повторите через {time}.",
    "error.INVALID_CODE": "Неверный код. Проверьте SMS и попробуйте ещё раз.",
    "error.CODE_EXPIRED": "Этот код больше не действует. Запросите новый.",
    "error.TOO_MANY_ATTEMPTS": "Слишком много неверных попыток. Запросите новый код.",
    "error.TOO_MANY_ATTEMPTS.wait": "Слишком много неверных попыток. Повторите через {time}.",
    "error.INVITE_NOT_FOUND": "Такого кода приглашения нет. Проверьте его и попробуйте ещё раз.",
    "error.SELF_INVITE": "Это ваш собственный код приглашения.",
    "error.INVITE_ALREADY_ACTIVATED": "Вы уже присоединились по другому коду приглашения.",
    "error.INVITE_CYCLE": "Этот человек пришёл по вашему приглашению, поэтому его код вам не подходит.",
    "error.INVALID_TOKEN": "Сеанс завершён. Войдите снова.",
    "error.SESSION_NOT_FOUND": "На этом устройстве уже выполнен выход.",
    "error.DELIVERY_FAILED": "Не удалось доставить SMS. Повторите через {time}.",
    "error.REGION_NOT_ALLOWED": "Пока не можем отправлять коды на номера этой страны.",
    "error.UNAUTHENTICATED": "Сеанс завершён. Войдите снова.",
    "error.SERVICE_UNAVAILABLE": "Сервис ненадолго недоступен. Попробуйте через минуту.",
    "error.NETWORK": "Нет связи с сервером. Проверьте интернет и попробуйте ещё раз.",
    "error.UNKNOWN": "Что-то пошло не так. Попробуйте ещё раз.",

    "time.seconds": "{n} с",
    "time.minutes": "{n} мин",
    "time.hours": "{h} ч {m} мин",
  },
};

let current = pick();

/** The stored choice, else the first of ru* / en* among the browser's languages, else English. */
function pick() {
  let stored = null;
  try {
    stored = localStorage.getItem(STORAGE_KEY);
  } catch {
    // Storage can be blocked; the browser's languages still decide.
  }
  if (LANGUAGES.includes(stored)) return stored;
  for (const tag of navigator.languages || [navigator.language || ""]) {
    const base = tag.toLowerCase().split("-")[0];
    if (LANGUAGES.includes(base)) return base;
  }
  return "en";
}

export function language() {
  return current;
}

export function setLanguage(lang, { remember = true } = {}) {
  if (!LANGUAGES.includes(lang)) return;
  current = lang;
  if (remember) {
    try {
      localStorage.setItem(STORAGE_KEY, lang);
    } catch {
      // Not remembered across visits; the page still switches.
    }
  }
  document.documentElement.lang = lang;
}

function fill(text, params) {
  return text.replace(/\{(\w+)\}/g, (match, name) => (name in params ? String(params[name]) : match));
}

export function has(key) {
  return key in TEXTS[current] || key in TEXTS.en;
}

/** The text for `key` in the current language, with {name} placeholders filled. */
export function t(key, params = {}) {
  const text = TEXTS[current][key] ?? TEXTS.en[key] ?? key;
  return fill(text, params);
}

/** "1 person", "5 people"; "1 человек", "2 человека", "5 человек". */
export function plural(key, n) {
  const forms = TEXTS[current][key];
  const form = new Intl.PluralRules(current).select(n);
  return fill(forms[form] ?? forms.other, { n: n.toLocaleString(current) });
}

/** A wait in words: "42 s", "3 min", "2 h 5 min". */
export function duration(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return t("time.seconds", { n: s });
  if (s < 3600) return t("time.minutes", { n: Math.ceil(s / 60) });
  return t("time.hours", { h: Math.floor(s / 3600), m: Math.ceil((s % 3600) / 60) });
}

/** A countdown on a button: "0:42", "12:05", "5:00:00". */
export function clock(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  const pad = (n) => String(n).padStart(2, "0");
  if (s >= 3600) return `${Math.floor(s / 3600)}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
  return `${Math.floor(s / 60)}:${pad(s % 60)}`;
}

/** A country's name in the page's language: "BY" -> "Belarus", "Беларусь". */
export function country(region) {
  try {
    return new Intl.DisplayNames([current], { type: "region" }).of(region) || region;
  } catch {
    return region; // not a region code Intl knows
  }
}

export function date(iso) {
  return new Intl.DateTimeFormat(current, { dateStyle: "medium", timeStyle: "short" }).format(
    new Date(iso),
  );
}

/** Every element with data-i18n="key" gets its text; data-i18n-ATTR="key" sets ATTR. */
export function translatePage(root = document) {
  for (const element of root.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of root.querySelectorAll("[data-i18n-attrs]")) {
    for (const pair of element.dataset.i18nAttrs.split(",")) {
      const [attribute, key] = pair.split(":").map((part) => part.trim());
      element.setAttribute(attribute, t(key));
    }
  }
}
