// Lingjing demo: shows the origin clock, fetched through the CDN (never cached).
(function () {
  var el = document.getElementById("clock");
  fetch("/api/time")
    .then(function (r) { return r.json(); })
    .then(function (t) {
      el.textContent = "Origin time: " + new Date(t.now_ms).toISOString() + " (hit " + t.hits + ")";
    })
    .catch(function () { el.textContent = "Origin time: unavailable"; });
})();
