// The app page's metrics: CPU and memory per instance, drawn with the
// vendored uPlot (static/vendor/uplot) from /apps/<app>/metrics.json, and
// refreshed at the data's own step while the page is visible.
(function () {
  "use strict";
  const panel = document.getElementById("app-metrics");
  if (!panel || typeof uPlot === "undefined") return;
  const status = document.getElementById("metrics-status");
  const cpuBox = document.getElementById("metrics-cpu");
  const memoryBox = document.getElementById("metrics-memory");
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d"];
  let span = "1h";
  let charts = [];
  let timer = null;

  function mib(bytes) {
    return bytes == null ? null : bytes / (1024 * 1024);
  }

  function options(title, unit, labels, width) {
    return {
      title: title,
      width: width,
      height: 220,
      scales: { y: { range: function (u, min, max) { return [0, Math.max(max * 1.1, 1)]; } } },
      axes: [{}, { label: unit, size: 60 }],
      series: [{}].concat(labels.map(function (label, i) {
        return { label: label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false };
      })),
    };
  }

  function draw(body) {
    charts.forEach(function (c) { c.destroy(); });
    charts = [];
    if (!body.times.length) {
      status.textContent = "No measurements yet: they appear a few seconds after an instance starts running.";
      return;
    }
    status.textContent = "";
    const width = Math.max(panel.clientWidth - 32, 300);
    const labels = body.series.map(function (s) { return s.label; });
    const cpu = [body.times].concat(body.series.map(function (s) { return s.cpu_percent; }));
    const memory = [body.times].concat(body.series.map(function (s) { return s.memory_bytes.map(mib); }));
    const memoryOptions = options("Memory", "MiB", labels, width);
    const limits = body.series.map(function (s) { return s.memory_limit_bytes; }).filter(Boolean);
    if (limits.length) {
      // The highest instance limit, dashed: how close memory gets to an OOM kill.
      const limit = mib(Math.max.apply(null, limits));
      memory.push(body.times.map(function () { return limit; }));
      memoryOptions.series.push({ label: "limit", stroke: "#6b7280", dash: [6, 4], width: 1 });
    }
    charts.push(new uPlot(options("CPU", "%", labels, width), cpu, cpuBox));
    charts.push(new uPlot(memoryOptions, memory, memoryBox));
  }

  function load() {
    clearTimeout(timer);
    if (document.hidden) return; // picked up again on visibilitychange
    fetch(panel.dataset.url + "?span=" + encodeURIComponent(span), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (r) {
        if (!r.ok) throw new Error("the server answered " + r.status);
        return r.json();
      })
      .then(function (body) {
        draw(body);
        timer = setTimeout(load, Math.max(body.step_s, 5) * 1000);
      })
      .catch(function (err) {
        status.textContent = "Metrics could not be loaded (" + err.message + "); retrying.";
        timer = setTimeout(load, 15000);
      });
  }

  panel.querySelectorAll("button[data-span]").forEach(function (button) {
    button.addEventListener("click", function () {
      span = button.dataset.span;
      panel.querySelectorAll("button[data-span]").forEach(function (b) {
        b.setAttribute("aria-pressed", String(b === button));
      });
      load();
    });
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) load();
  });
  load();
})();
