// An app's live log: history, then live lines over the WebSocket, with
// filters, pause/resume and download. Every "lines" frame is acknowledged
// once shown: the server sends at most a few frames ahead and tells us how
// many lines it had to drop ("dropped") if we fall behind. A socket that
// drops (a restarted server, a network blip) reconnects with the highest
// sequence number the page had ("since"): the server sends what came after
// it and the page keeps what it shows, so no line is missed or shown twice.
(function () {
  "use strict";
  const panel = document.getElementById("app-logs");
  if (!panel) return;
  const out = document.getElementById("app-log");
  const status = document.getElementById("log-status");
  const form = document.getElementById("log-filters");
  const pauseButton = document.getElementById("log-pause");
  const download = document.getElementById("log-download");
  const MAX_SHOWN = 5000; // lines kept on the page; older ones are removed
  const MAX_HELD = 20000; // lines held while paused; beyond that they are counted, not kept
  let ws = null;
  let paused = false;
  let held = [];
  let heldDropped = 0;
  let closedByUs = false;
  let lastSeq = 0; // every line up to this one is on the page, held, or counted dropped
  let applied = filterValues(); // the filter the server applies

  function filterValues() {
    const data = new FormData(form);
    const values = {};
    ["process", "instance", "source", "q"].forEach(function (k) {
      values[k] = String(data.get(k) || "");
    });
    return values;
  }

  function query(values) {
    const params = new URLSearchParams();
    Object.keys(values).forEach(function (k) { if (values[k]) params.set(k, values[k]); });
    const text = params.toString();
    return text ? "?" + text : "";
  }

  function notice(text) {
    const div = document.createElement("div");
    div.className = "log-notice";
    div.textContent = "— " + text + " —";
    out.appendChild(div);
  }

  // Insert in time order: a line from a slower host may arrive a little late.
  function place(row) {
    const div = document.createElement("div");
    div.className = "log-line source-" + row[2] + (row[5] === "stderr" ? " stderr" : "");
    div.dataset.time = row[1];
    div.dataset.seq = String(row[0]);
    const who = row[4] ? row[2] + "[" + row[4] + "]" : row[2];
    div.textContent = row[1].slice(0, 23).replace("T", " ") + " " + who + ": " + row[6];
    let before = null;
    let node = out.lastElementChild;
    for (let steps = 0; node && steps < 200; steps++, node = node.previousElementSibling) {
      if (!node.dataset.time || node.dataset.time <= row[1]) break;
      before = node;
    }
    out.insertBefore(div, before);
  }

  function show(rows) {
    const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    rows.forEach(place);
    while (out.childElementCount > MAX_SHOWN) out.removeChild(out.firstElementChild);
    if (atBottom) out.scrollTop = out.scrollHeight;
  }

  function receive(msg) {
    if (msg.type === "lines") {
      msg.lines.forEach(function (row) { if (row[0] > lastSeq) lastSeq = row[0]; });
      if (paused) {
        const room = Math.max(0, MAX_HELD - held.length);
        held = held.concat(msg.lines.slice(0, room));
        heldDropped += msg.lines.length - Math.min(room, msg.lines.length);
        status.textContent = "Paused (" + (held.length + heldDropped) + " new line" + (held.length + heldDropped === 1 ? "" : "s") + " held)";
      } else {
        show(msg.lines);
      }
      ws.send(JSON.stringify({ type: "ack", batch: msg.batch }));
    } else if (msg.type === "dropped") {
      notice(msg.count + " lines dropped (this page fell behind)");
    } else if (msg.type === "hello") {
      if (!msg.resumed) {
        out.textContent = "";
        lastSeq = 0;
      }
    } else if (msg.type === "replayed") {
      status.textContent = paused ? "Paused" : "Live";
      if (msg.upto > lastSeq) lastSeq = msg.upto;
      if (!msg.count && !out.childElementCount) notice("no stored lines match yet; new ones appear here");
    } else if (msg.type === "error") {
      status.textContent = msg.message;
    }
  }

  function connect(delay) {
    const proto = window.location.protocol === "https:" ? "wss://" : "ws://";
    const values = Object.assign({}, applied);
    download.href = panel.dataset.download + query(values);
    if (lastSeq) values.since = String(lastSeq);
    ws = new WebSocket(proto + window.location.host + panel.dataset.ws + query(values));
    ws.onopen = function () { delay = 500; };
    ws.onmessage = function (e) { receive(JSON.parse(e.data)); };
    ws.onclose = function (e) {
      if (closedByUs) { closedByUs = false; return; }
      if (e.code === 4403) { status.textContent = "You cannot see this app's logs."; return; }
      status.textContent = "Disconnected; reconnecting…";
      setTimeout(function () { connect(Math.min(delay * 2, 10000)); }, delay);
    };
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    const values = filterValues();
    applied = values;
    download.href = panel.dataset.download + query(values);
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(Object.assign({ type: "filter" }, values)));
    } else {
      lastSeq = 0; // a new filter while reconnecting: its history, not a resume
    }
  });

  pauseButton.addEventListener("click", function () {
    paused = !paused;
    pauseButton.textContent = paused ? "Resume" : "Pause";
    status.textContent = paused ? "Paused" : "Live";
    if (!paused) {
      if (heldDropped) notice(heldDropped + " lines dropped while paused");
      show(held);
      held = [];
      heldDropped = 0;
    }
  });

  connect(500);
})();
