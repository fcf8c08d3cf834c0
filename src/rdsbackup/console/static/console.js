// Live parts of the console, no build step: a section with data-poll is fetched again
// (1 s while something runs, 5 s when idle) and replaced in place; when the number of
// running jobs and tasks drops, the section named by data-refresh is fetched again too
// (a finished job's set appears without a reload). Forms with data-confirm ask first.
"use strict";
(function () {
  async function fetchInto(el, url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
    if (response.redirected || !response.ok) return false;  // signed out, or gone
    el.innerHTML = await response.text();
    return true;
  }
  function active(el) {
    const state = el.querySelector("[data-active]");
    return state ? Number(state.dataset.active) : 0;
  }
  function poll(el) {
    let before = active(el);
    async function tick() {
      let ok = false;
      try { ok = await fetchInto(el, el.dataset.poll); } catch (e) { ok = true; }
      if (!ok) return;
      const now = active(el);
      const target = el.dataset.refresh && document.getElementById(el.dataset.refresh);
      if (target && now < before) {
        try { await fetchInto(target, target.dataset.src); } catch (e) { /* next time */ }
      }
      before = now;
      setTimeout(tick, now > 0 ? 1000 : 5000);
    }
    setTimeout(tick, before > 0 ? 1000 : 5000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(poll);
    document.addEventListener("submit", function (event) {
      const form = event.target;
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
})();
