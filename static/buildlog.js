// Follow a build's log over the WebSocket: the server replays earlier lines
// (deduplicated by sequence number) and then streams new ones and state.
(function () {
  "use strict";
  const log = document.getElementById("log");
  if (!log) return;
  const state = document.getElementById("state");
  const error = document.getElementById("error");
  let last = 0;
  log.querySelectorAll("span[data-seq]").forEach(function (s) {
    last = Math.max(last, Number(s.dataset.seq));
  });
  const FINAL = ["succeeded", "failed", "cancelled"];
  let done = FINAL.indexOf(state.textContent.trim()) >= 0;

  function addLine(seq, text) {
    if (seq <= last) return;
    last = seq;
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    const span = document.createElement("span");
    span.dataset.seq = String(seq);
    span.textContent = text + "\n";
    log.appendChild(span);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function connect(delay) {
    const proto = window.location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(proto + window.location.host + log.dataset.ws);
    ws.onmessage = function (e) {
      const msg = JSON.parse(e.data);
      if (msg.type === "line") addLine(msg.seq, msg.text);
      if (msg.type === "state") {
        state.textContent = msg.state;
        state.className = "state state-" + msg.state;
        if (msg.error) { error.textContent = msg.error; error.hidden = false; }
        if (msg.image) {
          document.getElementById("image-ref").textContent = msg.image;
          document.getElementById("image").hidden = false;
        }
        done = FINAL.indexOf(msg.state) >= 0;
        const cancel = document.getElementById("cancel");
        if (done && cancel) cancel.hidden = true;
      }
    };
    ws.onclose = function () {
      // Reconnect while the build runs; the replay fills any gap.
      if (!done) setTimeout(function () { connect(Math.min(delay * 2, 5000)); }, delay);
    };
  }
  connect(500);
})();
