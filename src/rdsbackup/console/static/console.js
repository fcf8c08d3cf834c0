// Live parts of the console, no build step: a section with data-poll is fetched again
// (1 s while something runs, 5 s when idle) and replaced in place; when the fragment's
// data-sets mark changes (a set appeared, failed, was verified or deleted), the section
// named by data-refresh is fetched again too: a finished job's set appears without a
// reload. Forms with data-confirm ask first.
"use strict";
(function () {
  async function fetchInto(el, url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
    if (response.redirected || !response.ok) return false;  // signed out, or gone
    el.innerHTML = await response.text();
    return true;
  }
  function state(el) {
    const s = el.querySelector("[data-active]");
    return s ? { active: Number(s.dataset.active), sets: s.dataset.sets } : { active: 0, sets: "" };
  }
  function poll(el) {
    let shown = state(el).sets;
    async function tick() {
      let ok = false;
      try { ok = await fetchInto(el, el.dataset.poll); } catch (e) { ok = true; }
      if (!ok) return;
      const now = state(el);
      const target = el.dataset.refresh && document.getElementById(el.dataset.refresh);
      if (target && now.sets !== shown) {
        try {
          if (await fetchInto(target, target.dataset.src)) shown = now.sets;
        } catch (e) { /* next time */ }
      }
      setTimeout(tick, now.active > 0 ? 1000 : 5000);
    }
    setTimeout(tick, state(el).active > 0 ? 1000 : 5000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(poll);
    document.addEventListener("submit", function (event) {
      const form = event.target;
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
})();
