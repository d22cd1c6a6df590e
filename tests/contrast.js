// Contrast of every visible text against what is drawn behind it, from computed colours,
// for tests/test_browser.py. Run in the page as a function of { min, states, only, state }:
// - all text on the page as it is shown;
// - with `states`, each visible button also disabled, busy and both, and each notice and
//   message slot whose parent is shown, in each of its kinds (then put back as it was);
// - with `only` (an element), that element alone, in the state it is in (`state` names it).
// Returns { failures: ["what, where: ratio"], measured: [[what, state, words, ratio]] }.
//
// Colours are premultiplied RGBA; each element's background and opacity are composed
// from the text up to the canvas. No element of the page puts a background image or a
// gradient behind text, so backgrounds are flat colours.

({ min, states = false, only = null, state = "as shown" }) => {
  const parse = (value) => {
    const match = /^rgba?\(([^)]*)\)$/.exec(value);
    if (!match) throw new Error(`a colour this test cannot read: ${value}`);
    const [r, g, b, a = 1] = match[1].split(/[\s,/]+/).filter(Boolean).map(Number);
    return [r * a, g * a, b * a, a];
  };
  const over = (top, bottom) => top.map((v, i) => v + bottom[i] * (1 - top[3]));
  const fade = (pixel, opacity) => pixel.map((v) => v * opacity);
  const luminance = ([r, g, b]) => {
    const f = (v) => ((v /= 255) <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const css = (pixel) => `rgb(${pixel.slice(0, 3).map(Math.round).join(" ")})`;
  const visible = (el) => {
    const box = el.getBoundingClientRect();
    return box.width > 1 && box.height > 1 && el.checkVisibility({ visibilityProperty: true });
  };
  const hasText = (el) =>
    el.tagName === "INPUT"
      ? el.value !== ""
      : [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
  // Transitions (a button's background takes .15 s) jump to their end.
  const settle = () => {
    for (const animation of document.getAnimations()) {
      if (animation instanceof CSSTransition) animation.finish();
    }
  };
  const name = (el) => {
    if (el.id) return `#${el.id}`;
    const own = el.tagName.toLowerCase() + [...el.classList].map((c) => `.${c}`).join("");
    const holder = el.closest("[id]");
    return holder ? `${own} in #${holder.id}` : own;
  };

  const failures = [];
  const measured = [];
  const check = (root, state) => {
    for (const el of [root, ...root.querySelectorAll("*")]) {
      if (!hasText(el) || !visible(el)) continue;
      const style = getComputedStyle(el);
      let back = parse(style.backgroundColor);
      let text = over(parse(style.color), back);
      for (let node = el; node; node = node.parentElement) {
        if (node !== el) {
          const behind = parse(getComputedStyle(node).backgroundColor);
          text = over(text, behind);
          back = over(back, behind);
        }
        const opacity = Number(getComputedStyle(node).opacity);
        text = fade(text, opacity);
        back = fade(back, opacity);
      }
      text = over(text, [255, 255, 255, 1]);
      back = over(back, [255, 255, 255, 1]);
      const [lighter, darker] = [luminance(text), luminance(back)].sort((x, y) => y - x);
      const ratio = (lighter + 0.05) / (darker + 0.05);
      const words = (el.value || el.textContent).trim().slice(0, 40);
      measured.push([name(el), state, words, Math.round(ratio * 100) / 100]);
      if (ratio < min) {
        const colours = `${css(text)} on ${css(back)}`;
        failures.push(`${name(el)} ${state} "${words}": ${ratio.toFixed(2)}:1, ${colours}`);
      }
    }
  };

  settle();
  check(only || document.body, state);
  if (only || !states) return { failures, measured };

  const focused = document.activeElement;
  const buttonStates = [
    ["disabled", true, false],
    ["busy", true, true], // in a fieldset that busy() locks
    ["busy alone", false, true],
  ];
  for (const button of document.querySelectorAll("button")) {
    if (!visible(button)) continue;
    const was = [button.disabled, button.getAttribute("aria-busy")];
    for (const [state, disabled, busy] of buttonStates) {
      button.disabled = disabled;
      if (busy) button.setAttribute("aria-busy", "true");
      else button.removeAttribute("aria-busy");
      settle();
      check(button, state);
    }
    button.disabled = was[0];
    if (was[1] === null) button.removeAttribute("aria-busy");
    else button.setAttribute("aria-busy", was[1]);
  }
  const slots = ".notice, .banner, .field-error, .form-error, .hint, .copied, .debug";
  for (const slot of document.querySelectorAll(slots)) {
    if (!slot.parentElement || !visible(slot.parentElement)) continue;
    const was = { hidden: slot.hidden, className: slot.className, children: [...slot.childNodes] };
    slot.hidden = false;
    if (!slot.textContent.trim()) slot.textContent = "A message of this kind";
    const kinds = slot.classList.contains("notice") ? ["info", "ok", "warn"] : [""];
    for (const kind of kinds) {
      if (kind) slot.className = `notice ${kind}`;
      settle();
      check(slot, kind ? `notice ${kind}` : "shown");
    }
    slot.hidden = was.hidden;
    slot.className = was.className;
    slot.replaceChildren(...was.children);
  }
  settle();
  focused?.focus({ preventScroll: true });
  return { failures, measured };
}
