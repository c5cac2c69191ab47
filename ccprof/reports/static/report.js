/* ccprof report: draw the embedded plotly figures and make tables sortable. No network. */
(function () {
  "use strict";
  function sortTable(th) {
    var table = th.closest("table"), tbody = table.tBodies[0];
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = th.getAttribute("aria-sort") !== "ascending";
    var numeric = th.getAttribute("data-sort") === "num";
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var x = a.cells[idx].getAttribute("data-v"), y = b.cells[idx].getAttribute("data-v");
      if (x === null) { x = a.cells[idx].textContent; }
      if (y === null) { y = b.cells[idx].textContent; }
      var c = numeric ? (parseFloat(x) || 0) - (parseFloat(y) || 0) : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  }
  document.addEventListener("click", function (e) {
    var th = e.target.closest && e.target.closest("th[data-sort]");
    if (th) { sortTable(th); }
  });
  var data = document.getElementById("ccprof-figures");
  var figs = data ? JSON.parse(data.textContent) : {};
  var config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["sendDataToCloud"] };
  var drawn = Object.keys(figs).map(function (id) {
    var el = document.getElementById("chart-" + id);
    if (!el || typeof Plotly === "undefined") { return Promise.resolve(); }
    return Plotly.newPlot(el, figs[id].data, figs[id].layout, config).then(function () {
      el.setAttribute("data-drawn", "1");
    });
  });
  Promise.all(drawn).then(function () {
    document.body.setAttribute("data-ready-ms", String(Math.round(performance.now())));
    document.body.setAttribute("data-charts-ready", "1");
  },
    function (err) { document.body.setAttribute("data-charts-ready", "error"); throw err; });
})();
