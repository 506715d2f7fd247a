// Lingjing console: what JavaScript adds to pages that work without it. Times in the
// viewer's time zone (the UTC value stays on hover), and charts drawn with uPlot from
// the numbers a page carries in `data-chart`. htmx (loaded beside this) refreshes the
// live parts; this re-runs on what it swaps in.
(function () {
  "use strict";

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var iso = el.getAttribute("datetime");
      if (!iso) return;
      var d = new Date(iso);
      if (isNaN(d.getTime())) return;
      el.textContent = d.toLocaleString(undefined, {
        year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
      });
    });
  }

  function charts(root) {
    if (typeof uPlot === "undefined") return;
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      if (el.getAttribute("data-drawn")) return;
      var d;
      try { d = JSON.parse(el.getAttribute("data-chart")); } catch (e) { return; }
      el.setAttribute("data-drawn", "1");
      var p95 = d.t.map(function () { return d.p95; });
      var opts = {
        width: Math.max(320, el.clientWidth || 900),
        height: 280,
        series: [
          {},
          { label: "Mbit/s", stroke: "#0550ae", width: 2, fill: "rgba(5,80,174,0.08)" },
          { label: "95th percentile", stroke: "#9a6700", width: 1, dash: [6, 4] },
          { label: "Hit ratio %", stroke: "#1a7f37", width: 1, scale: "%" }
        ],
        axes: [
          {},
          { label: "Mbit/s" },
          { side: 1, scale: "%", label: "hit %", grid: { show: false } }
        ],
        scales: { "%": { range: [0, 100] } }
      };
      new uPlot(opts, [d.t, d.mbps, p95, d.hit], el);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    charts(document);
  });
  document.addEventListener("htmx:afterSettle", function () {
    localTimes(document);
  });
})();
