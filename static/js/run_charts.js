// Charts of a teaching run: mastery (probe accuracy) per skill per round, and exam accuracy per
// round against the base model. The run's WebSocket (htmx ws extension) swaps in #run-chart-data
// with the whole series as JSON in data-chart (escaped by the template); we redraw from it.
(function () {
  "use strict";
  var COLORS = ["#2f6fdf", "#d9822b", "#1e7b34", "#b3261e", "#7a3fbf", "#0f8a8a", "#8a6d0f", "#555"];
  var charts = {};

  function draw(id, series, x, ys) {
    var el = document.getElementById(id);
    if (!el || typeof uPlot === "undefined") return;
    if (charts[id]) { charts[id].destroy(); }
    el.textContent = "";
    if (!x.length) { el.textContent = "No finished round yet."; return; }
    charts[id] = new uPlot({
      width: Math.min(el.clientWidth || 800, 900), height: 220,
      scales: { x: { time: false }, y: { range: [0, 1] } },
      axes: [{ label: "round", incrs: [1] }, { values: function (u, vals) { return vals.map(function (v) { return Math.round(v * 100) + "%"; }); } }],
      series: [{ label: "round" }].concat(series),
    }, [x].concat(ys), el);
  }

  function redraw() {
    var holder = document.getElementById("run-chart-data");
    if (!holder) return;
    var data;
    try { data = JSON.parse(holder.getAttribute("data-chart") || "{}"); } catch (e) { return; }
    var x = data.rounds || [];
    var skills = data.skills || [];
    draw("mastery-chart", skills.map(function (s, i) {
      return { label: s, stroke: COLORS[i % COLORS.length], points: { show: true } };
    }), x, skills.map(function (s) { return data.probe[s] || []; }));
    draw("exam-chart", [
      { label: "exam accuracy", stroke: "#2f6fdf", width: 2, points: { show: true } },
      { label: "base model", stroke: "#888", dash: [6, 4], points: { show: true } },
    ], x, [data.exam || [], data.base || []]);
  }

  document.addEventListener("htmx:wsAfterMessage", redraw);
  document.addEventListener("DOMContentLoaded", redraw);
})();
