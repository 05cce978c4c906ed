// VaultCraft console: times in the viewer's zone, charts drawn with uPlot, fragments fetched. No framework.
(function () {
  "use strict";

  var timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var at = new Date(el.getAttribute("datetime"));
      if (!isNaN(at)) { el.textContent = timeFormat.format(at); el.title = el.getAttribute("datetime"); }
    });
  }

  var PALETTE = ["#0969da", "#1a7f37", "#9a6700", "#cf222e", "#8250df", "#1b7c83", "#bc4c00", "#57606a"];
  var UNITS = { money: "", percent: " %", ms: " ms" };

  function drawChart(el) {
    var data;
    try { data = JSON.parse(el.getAttribute("data-points") || "{}"); } catch (e) { data = {}; }
    var xs = data.x || [], series = data.series || [];
    var drawn = 0;
    series.forEach(function (s) { s.values.forEach(function (v) { if (v !== null) { drawn += 1; } }); });
    if (!xs.length || typeof uPlot === "undefined") { el.setAttribute("data-drawn-points", "0"); return; }
    var unit = UNITS[data.unit] || "";
    var opts = {
      width: Math.max(320, el.clientWidth || 420),
      height: 220,
      series: [{}].concat(series.map(function (s, i) {
        return { label: s.label, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: false,
                 points: { show: xs.length < 60 },
                 value: function (u, v) { return v === null || v === undefined ? "—" : v.toLocaleString() + unit; } };
      })),
      axes: [{}, { values: function (u, ticks) { return ticks.map(function (v) { return v.toLocaleString() + unit; }); }, size: 70 }],
      scales: data.unit === "percent" ? { y: { range: [0, 100] } } : {},
    };
    // The range asked for, not the data's own span (one bucket alone would stretch over years).
    if (data.x_range) { opts.scales.x = { time: true, auto: false, range: data.x_range }; }
    el.innerHTML = "";
    new uPlot(opts, [xs].concat(series.map(function (s) { return s.values; })), el);
    // A browser test reads this to know the chart drew its data, not just that the element exists.
    el.setAttribute("data-drawn-points", String(drawn));
  }

  function fragments(root) {
    root.querySelectorAll("[data-fragment]").forEach(function (el) {
      fetch(el.getAttribute("data-fragment"), { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) { el.innerHTML = html; localTimes(el); el.setAttribute("data-loaded", "true"); })
        .catch(function () { el.innerHTML = "<p class='flash bad'>Could not ask the workers; retry by reloading.</p>"; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    document.querySelectorAll("[data-chart]").forEach(drawChart);
    fragments(document);
  });
})();
