// The status page's only script: every 2 s it fetches /status/view (the same server-rendered, escaped view
// of a fresh /api/status document) and swaps it in. No framework, no build step, works offline.
// A gateway with an [http] token wants it as "Authorization: Bearer": open the page as /#token=... (the part
// after # never leaves the browser); the token is kept for this tab only.
(function () {
  "use strict";
  var main = document.getElementById("main");
  var live = document.getElementById("live");
  var busy = false;
  var match = /(?:^#|&)token=([^&]*)/.exec(window.location.hash);
  if (match) {
    window.sessionStorage.setItem("iotgw-token", decodeURIComponent(match[1]));
    window.history.replaceState(null, "", window.location.pathname);
  }
  var token = window.sessionStorage.getItem("iotgw-token");

  function show(text, bad) {
    live.textContent = text;
    live.className = bad ? "bad" : "muted";
  }

  function refresh() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    fetch("/status/view", {
      cache: "no-store",
      headers: token ? { Authorization: "Bearer " + token } : {},
    })
      .then(function (resp) {
        if (resp.status === 403) {
          throw new Error("this gateway wants its token: open /#token=...");
        }
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

  if (document.getElementById("waiting")) {
    refresh();
  }
  window.setInterval(refresh, 2000);
  document.addEventListener("visibilitychange", refresh);
})();
