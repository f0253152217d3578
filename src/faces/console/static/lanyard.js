// Lanyard console: progressive enhancement only. Every page works without this file.
// - [data-poll="URL"]: fetch the same-origin JSON at URL every few seconds and update the
//   elements inside marked [data-key="..."] (their [data-field] children) until nothing is pending.
// - form[data-confirm="question"]: ask before submitting a dangerous form.
// - [data-print]: print the page. [data-back]: go back.
(function () {
  "use strict";

  function pollOnce(root) {
    var url = root.getAttribute("data-poll");
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error("status " + r.status); } return r.json(); })
      .then(function (data) {
        (data.items || []).forEach(function (item) {
          var row = root.querySelector('[data-key="' + CSS.escape(item.key) + '"]');
          if (!row) { return; }
          Object.keys(item.fields || {}).forEach(function (name) {
            var cell = row.querySelector('[data-field="' + name + '"]');
            if (cell && cell.textContent !== item.fields[name]) { cell.textContent = item.fields[name]; }
          });
          if (item.css) {
            var badge = row.querySelector("[data-field=status]");
            if (badge) { badge.className = "status " + item.css; }
          }
        });
        var live = root.querySelector("[data-live-summary]");
        if (live && data.summary) { live.textContent = data.summary; }
        if (data.new_items && !root.getAttribute("data-reloaded")) {
          // Something new arrived that the page has no row for yet (e.g. evidence): reload once.
          root.setAttribute("data-reloaded", "1");
          window.location.reload();
        }
        return !data.done;
      });
  }

  function startPolling(root) {
    var tries = 0;
    function tick() {
      tries += 1;
      pollOnce(root).then(function (more) {
        if (more && tries < 400) { window.setTimeout(tick, 3000); }
      }).catch(function () {
        if (tries < 400) { window.setTimeout(tick, 10000); }
      });
    }
    window.setTimeout(tick, 1500);
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-poll]"), startPolling);
    Array.prototype.forEach.call(document.querySelectorAll("form[data-confirm]"), function (f) {
      f.addEventListener("submit", function (e) {
        if (!window.confirm(f.getAttribute("data-confirm"))) { e.preventDefault(); }
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-print]"), function (b) {
      b.hidden = false;
      b.addEventListener("click", function () { window.print(); });
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-back]"), function (a) {
      a.addEventListener("click", function (e) {
        if (window.history.length > 1) { e.preventDefault(); window.history.back(); }
      });
    });
  });
})();
