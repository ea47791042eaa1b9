// Live overview: fetch the figures every 10 seconds and write them into the page, no reload.
(function () {
  "use strict";
  var root = document.querySelector("[data-live-url]");
  if (!root || !window.fetch) { return; }
  var url = root.getAttribute("data-live-url");
  var store = root.getAttribute("data-store");
  var EVERY_MS = 10000;
  var busy = false;

  function apply(payload) {
    if (payload.store !== store) {
      // The store was switched in another tab: show the right page rather than mixed figures.
      window.location.reload();
      return;
    }
    var display = payload.display || {};
    root.querySelectorAll("[data-figure]").forEach(function (element) {
      var key = element.getAttribute("data-figure");
      if (Object.prototype.hasOwnProperty.call(display, key)) {
        element.textContent = display[key];
      }
    });
    var consent = (payload.figures && payload.figures.consent) || {};
    root.querySelectorAll("[data-consent-bar]").forEach(function (bar) {
      var entry = consent[bar.getAttribute("data-consent-bar")];
      if (entry) { bar.style.width = (Math.min(entry.rate, 1) * 100).toFixed(1) + "%"; }
    });
  }

  function refresh() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (payload) {
        apply(payload);
        root.classList.remove("is-stale");
      })
      .catch(function () { root.classList.add("is-stale"); })
      .then(function () { busy = false; });
  }

  window.setInterval(refresh, EVERY_MS);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { refresh(); }
  });
})();
