// Phone numbers the way people write them: "+375291234567" -> "+375 29 123-45-67".
// A small table of common country codes and national number shapes (X is a digit);
// anything else, or a length the table does not know, stays in E.164.

const SHAPES = {
  1: ["XXX XXX-XXXX"], // US, Canada
  7: ["XXX XXX-XX-XX"], // Russia, Kazakhstan
  33: ["X XX XX XX XX"], // France
  34: ["XXX XX XX XX"], // Spain
  39: ["XXX XXX XXXX"], // Italy, mobile
  44: ["XXXX XXXXXX"], // United Kingdom
  48: ["XXX XXX XXX"], // Poland
  49: ["XXX XXXXXXX", "XXXX XXXXXXX"], // Germany, mobile
  86: ["XXX XXXX XXXX"], // China, mobile
  90: ["XXX XXX XX XX"], // Turkey
  91: ["XXXXX XXXXX"], // India
  370: ["XXX XXXXX"], // Lithuania
  371: ["XX XXX XXX"], // Latvia
  372: ["XXX XXXX", "XXXX XXXX"], // Estonia
  373: ["XXX XX XXX"], // Moldova
  374: ["XX XXX XXX"], // Armenia
  375: ["XX XXX-XX-XX"], // Belarus
  380: ["XX XXX-XX-XX"], // Ukraine
  992: ["XX XXX XXXX"], // Tajikistan
  994: ["XX XXX XX XX"], // Azerbaijan
  995: ["XXX XX XX XX"], // Georgia
  996: ["XXX XXX XXX"], // Kyrgyzstan
  998: ["XX XXX-XX-XX"], // Uzbekistan
};

/** "+375291234567" -> "+375 29 123-45-67"; an unknown shape comes back unchanged. */
export function formatPhone(e164) {
  if (typeof e164 !== "string" || !/^\+[1-9]\d{6,14}$/.test(e164)) return e164;
  const digits = e164.slice(1);
  // Country codes are prefix-free, so at most one of the 1-3 digit prefixes is one.
  for (const length of [1, 2, 3]) {
    const shapes = SHAPES[digits.slice(0, length)];
    if (!shapes) continue;
    const national = digits.slice(length);
    const shape = shapes.find((s) => s.replace(/[^X]/g, "").length === national.length);
    if (!shape) return e164;
    let i = 0;
    return `+${digits.slice(0, length)} ${shape.replace(/X/g, () => national[i++])}`;
  }
  return e164;
}
