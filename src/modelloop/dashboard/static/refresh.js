/* modelloop ui: partial updates, served from the package (no CDN, no inline script: the CSP allows
   script from 'self' only).

   An element with data-refresh="URL" (and data-every="SECONDS", 5 by default) is fetched again from URL
   after that many seconds, and replaced by the element with the same id in the answer, which is HTML the
   server rendered and escaped. An answer whose element has no data-refresh ends the updates (the part is
   done computing); a failed fetch is tried again later, less often. Without JavaScript the page works as
   before: its <noscript> refresh reloads the whole page while a part is computing. */
(function () {
  "use strict";
  var MAX_WAIT = 60000;

  function schedule(id, wait) {
    window.setTimeout(function () { refresh(id, wait); }, wait);
  }

  function start(element) {
    if (element.id && element.hasAttribute("data-refresh")) {
      var seconds = Number(element.getAttribute("data-every")) || 5;
      schedule(element.id, seconds * 1000);
    }
  }

  function refresh(id, wait) {
    var element = document.getElementById(id);
    if (!element || !element.hasAttribute("data-refresh")) return;
    fetch(element.getAttribute("data-refresh"), {
      credentials: "same-origin", cache: "no-store", headers: {"Accept": "text/html"}
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(id);
      if (!fresh) throw new Error("the answer has no #" + id);
      fresh = document.importNode(fresh, true);
      element.replaceWith(fresh);
      start(fresh);
    }).catch(function () {
      schedule(id, Math.min(wait * 2, MAX_WAIT));      /* the server restarts, a network blip: later */
    });
  }

  document.querySelectorAll("[data-refresh]").forEach(start);
})();
