// Live loss chart of a training job. The WebSocket (htmx ws extension) swaps in
// #job-points with new points as JSON in data-points; we append them to a uPlot chart.
(function () {
  "use strict";
  var steps = [], loss = [], evalLoss = [], seen = {}, chart = null;

  function ensureChart() {
    var el = document.getElementById("loss-chart");
    if (chart || !el || typeof uPlot === "undefined") return chart;
    chart = new uPlot({
      width: Math.min(el.clientWidth || 800, 900), height: 260,
      scales: { x: { time: false } },
      // Whole steps only on the x-axis (uPlot would otherwise tick 1.25, 1.5 on a short run).
      axes: [{ label: "step", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000] }, {}],
      series: [{ label: "step" }, { label: "loss", stroke: "#2f6fdf" }, { label: "eval loss", stroke: "#d9822b" }],
    }, [steps, loss, evalLoss], el);
    return chart;
  }

  function addPoints() {
    var holder = document.getElementById("job-points");
    if (!holder) return;
    var points;
    try { points = JSON.parse(holder.getAttribute("data-points") || "[]"); } catch (e) { return; }
    points.forEach(function (p) {
      if (seen[p.step]) return;  // a reconnect replays everything
      seen[p.step] = true;
      var i = steps.length;
      while (i > 0 && steps[i - 1] > p.step) i--;
      steps.splice(i, 0, p.step); loss.splice(i, 0, p.loss); evalLoss.splice(i, 0, p.eval_loss);
    });
    if (ensureChart()) chart.setData([steps, loss, evalLoss]);
  }

  document.addEventListener("htmx:wsAfterMessage", addPoints);
  document.addEventListener("DOMContentLoaded", function () { ensureChart(); addPoints(); });
})();
