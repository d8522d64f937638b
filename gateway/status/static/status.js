// The status page's only script: every 2 s it fetches /status/view (the same server-rendered, escaped view
// of a fresh /api/status document) and swaps it in. No framework, no build step, works offline.
(function () {
  "use strict";
  var token = new URLSearchParams(window.location.search).get("token");
  var url = "/status/view" + (token ? "?token=" + encodeURIComponent(token) : "");
  var main = document.getElementById("main");
  var live = document.getElementById("live");
  var busy = false;

  function show(text, bad) {
    live.textContent = text;
    live.className = bad ? "bad" : "muted";
  }

  function refresh() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    fetch(url, { cache: "no-store" })
      .then(function (resp) {
        if (!resp.ok) {
          throw new Error("HTTP " + resp.status);
        }
        return resp.text();
      })
      .then(function (text) {
        main.innerHTML = text; // rendered and escaped by the gateway (gateway/status/page.py)
        show("live", false);
      })
      .catch(function (err) {
        show("not updating: " + err.message, true);
      })
      .finally(function () {
        busy = false;
      });
  }

  window.setInterval(refresh, 2000);
  document.addEventListener("visibilitychange", refresh);
})();
