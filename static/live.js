// Live events (paas/hosts/consumers.py): instance, release, deploy-progress,
// app and host changes update the rows of the page in place, no reload.
// The app page watches its app ([data-live-app]), the dashboard every app it
// lists ([data-live-apps] tr[data-app]), the hosts page the hosts
// ([data-live-hosts]). Every subscription is answered with the current state,
// so a reconnect (with backoff) also repairs whatever was missed meanwhile.
// Text from events is only ever set as textContent, never as HTML.
(function () {
  "use strict";
  const appRoot = document.querySelector("[data-live-app]");
  const appsTable = document.querySelector("[data-live-apps]");
  const hostsTable = document.querySelector("[data-live-hosts]");
  const subscriptions = [];
  if (appRoot) subscriptions.push({ type: "subscribe", app: appRoot.dataset.liveApp });
  if (appsTable) {
    appsTable.querySelectorAll("tr[data-app]").forEach(function (tr) {
      subscriptions.push({ type: "subscribe", app: tr.dataset.app });
    });
  }
  if (hostsTable) subscriptions.push({ type: "subscribe", hosts: true });
  if (!subscriptions.length) return;

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function find(selector, attr, value) {
    // Attribute values come from the server; compare them, never build selectors.
    const all = document.querySelectorAll(selector + "[" + attr + "]");
    for (let i = 0; i < all.length; i++) {
      if (all[i].getAttribute(attr) === String(value)) return all[i];
    }
    return null;
  }

  function badge(prefix, state, label) {
    return el("span", label, "state state-" + prefix + state);
  }

  function instanceStateCell(cell, e) {
    cell.replaceChildren(badge("", e.state, e.state_label));
    if (e.oom_killed) cell.append(" (out of memory)");
    else if (e.exit_code) cell.append(" (exit " + e.exit_code + ")");
    if (e.restart_count) cell.append(" ", el("small", "restarted " + e.restart_count + "×"));
    cell.closest("tr, li").dataset.state = e.state;
  }

  function instanceRow(e) {
    const tr = document.createElement("tr");
    tr.dataset.instance = e.name;
    const name = el("td");
    name.append(el("code", e.name));
    const published = el("td", null, "i-published");
    const actions = el("td");
    const template = document.getElementById("instance-actions");
    if (template) {
      actions.append(template.content.cloneNode(true));
      actions.querySelectorAll("input[name=instance]").forEach(function (input) {
        input.value = e.name;
      });
    }
    tr.append(name, el("td", "v" + e.release), el("td", e.host), published,
              el("td", null, "i-state"), actions);
    return tr;
  }

  function onInstance(e) {
    const table = document.getElementById("instances");
    if (table) {
      let tr = find("#instances tr", "data-instance", e.name);
      if (e.gone) {
        const byId = find("#instances tr", "data-instance-id", e.id);
        if (byId) byId.remove();
        return;
      }
      if (!tr) {
        // In the page's order: process type, slot, release.
        tr = instanceRow(e);
        tr.dataset.sort = e.process_type + "." + pad(e.index) + "." + pad(e.release);
        const after = Array.prototype.find.call(table.tBodies[0].rows, function (row) {
          return row.dataset.sort > tr.dataset.sort;
        });
        table.tBodies[0].insertBefore(tr, after || null);
        table.hidden = false;
      }
      tr.dataset.instanceId = String(e.id);
      const published = tr.querySelector(".i-published");
      if (e.published) published.replaceChildren(el("code", e.published));
      instanceStateCell(tr.querySelector(".i-state"), e);
    }
    if (hostsTable) onPlaced(e);
  }

  // The hosts page lists, per host, the instances meant to run there.
  function onPlaced(e) {
    let li = e.gone ? find("#hosts li", "data-instance-id", e.id)
                    : find("#hosts li", "data-instance", e.name);
    const row = e.gone ? null : find("#hosts tr", "data-host", e.host);
    if (li && (e.gone || e.desired !== "running" || li.closest("tr") !== row)) {
      li.remove(); // gone, stopped, or moved to another host
      li = null;
    }
    if (e.gone || e.desired !== "running" || !row) return;
    if (!li) {
      li = el("li");
      li.dataset.instance = e.name;
      li.dataset.instanceId = String(e.id);
      li.append(el("code", e.name), " ", el("span", null, "state"));
      let list = row.querySelector(".placed ul");
      if (!list) {
        const details = el("details", null, "placed");
        details.append(el("summary", "which"), (list = el("ul")));
        row.querySelector(".instances").after(details);
      }
      list.append(li);
    }
    const span = li.querySelector(".state");
    span.textContent = e.state_label;
    span.className = "state state-" + e.state;
    li.dataset.state = e.state;
  }

  function releaseRow(e) {
    const tr = document.createElement("tr");
    tr.dataset.release = String(e.number);
    const action = el("td", null, "r-action");
    const template = document.getElementById("release-action");
    if (template) {
      action.append(template.content.cloneNode(true));
      action.querySelector("input[name=number]").value = String(e.number);
      action.querySelector("button").textContent = "Roll back to " + e.label;
    }
    tr.append(el("td", e.label), el("td", null, "r-state"), el("td", e.description),
              el("td", e.created_at), action);
    return tr;
  }

  function onRelease(e) {
    const table = document.getElementById("release-rows");
    if (!table) return;
    let tr = find("#release-rows tr", "data-release", e.number);
    if (!tr) {
      tr = releaseRow(e);
      const newer = Array.prototype.find.call(table.tBodies[0].rows, function (row) {
        return Number(row.dataset.release) < e.number;
      });
      table.tBodies[0].insertBefore(tr, newer || null);
      table.hidden = false;
      const none = document.getElementById("no-release");
      if (none) none.hidden = true;
    }
    tr.dataset.state = e.state;
    const cell = tr.querySelector(".r-state");
    cell.replaceChildren(badge("", e.state, e.state_label));
    if (e.error) cell.append(el("pre", e.error, "error"));
    const form = tr.querySelector(".r-action form");
    if (form) form.hidden = e.state === "current";
  }

  function pad(n) {
    return String(n).padStart(6, "0");
  }

  function onBuild(e) {
    const table = document.getElementById("build-rows");
    if (!table) return;
    let tr = find("#build-rows tr", "data-build", e.id);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.build = e.id;
      tr.dataset.number = String(e.number);
      const link = el("a", "#" + e.number);
      link.href = e.url;
      const first = el("td");
      first.append(link);
      tr.append(first, el("td", null, "b-state"), el("td", e.source), el("td", e.created_at));
      const older = Array.prototype.find.call(table.tBodies[0].rows, function (row) {
        return Number(row.dataset.number) < e.number;
      });
      table.tBodies[0].insertBefore(tr, older || null);
      table.hidden = false;
      const none = document.getElementById("no-build");
      if (none) none.hidden = true;
    }
    tr.dataset.state = e.state;
    tr.querySelector(".b-state").replaceChildren(badge("", e.state, e.state));
  }

  function onDeploy(e) {
    const p = document.getElementById("deploy-progress");
    if (!p) return;
    p.textContent = "v" + e.release + ": " + e.text;
    p.dataset.step = e.step;
    p.hidden = false;
  }

  function onApp(e) {
    const tr = find("#apps tr", "data-app", e.name);
    if (!tr) return;
    const status = tr.querySelector(".app-status");
    status.textContent = e.status;
    status.className = "state state-app-" + e.status.replace(/\s+/g, "-") + " app-status";
    const release = tr.querySelector(".app-release");
    if (e.current_release) release.textContent = "v" + e.current_release;
    const deployed = tr.querySelector(".app-deployed");
    const shown = deployed.querySelector("time");
    if (e.last_deploy_at && (!shown || Date.parse(shown.dateTime) !== Date.parse(e.last_deploy_at))) {
      const time = el("time", "just now");
      time.dateTime = e.last_deploy_at;
      time.title = e.last_deploy_at.slice(0, 19).replace("T", " ") + " UTC";
      deployed.replaceChildren(time);
    }
    const cell = tr.querySelector(".instances");
    if (!e.wanted) {
      cell.replaceChildren(el("span", "none", "muted"));
    } else {
      cell.replaceChildren(e.running + "/" + e.wanted + " running");
      if (e.crashed) cell.append(" ", el("span", e.crashed + " crashed", "state state-failed"));
    }
  }

  function onHost(e) {
    const tr = find("#hosts tr", "data-host", e.name);
    if (!tr) return;
    tr.dataset.state = e.state;
    const cell = tr.querySelector(".h-state");
    cell.querySelector(".state").replaceWith(badge("host-", e.state, e.state_label));
    const error = cell.querySelector(".error-text");
    error.textContent = e.last_error.length > 80 ? e.last_error.slice(0, 79) + "…" : e.last_error;
    error.title = e.last_error;
    error.hidden = !e.last_error;
    tr.querySelector(".instances").textContent = e.running + "/" + e.instances + " running";
    // Drain and make ready are one button that swaps with the state.
    const toggle = tr.querySelector("button[name=action][value=drain], button[name=action][value=ready]");
    if (toggle) {
      const draining = e.state === "draining";
      toggle.value = draining ? "ready" : "drain";
      toggle.textContent = draining ? "Make ready" : "Drain";
    }
    if (e.heartbeat_at) {
      const age = Math.max(0, Math.round((Date.now() - Date.parse(e.heartbeat_at)) / 1000));
      tr.querySelector(".h-heartbeat").replaceChildren(el("span", age + " s ago"));
    }
  }

  const handlers = { build: onBuild, instance: onInstance, release: onRelease, deploy: onDeploy,
                     app: onApp, host: onHost };

  function connect(delay) {
    const proto = window.location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(proto + window.location.host + "/ws/events/");
    ws.onopen = function () {
      delay = 500;
      subscriptions.forEach(function (s) { ws.send(JSON.stringify(s)); });
    };
    ws.onmessage = function (m) {
      const msg = JSON.parse(m.data);
      if (msg.type === "event" && handlers[msg.kind]) handlers[msg.kind](msg);
      if (msg.type === "subscribed") document.body.dataset.live = "on";
    };
    ws.onclose = function (m) {
      document.body.dataset.live = "off";
      if (m.code === 4403) return; // signed out or no longer allowed: a reload tells why
      setTimeout(function () { connect(Math.min(delay * 2, 10000)); }, delay);
    };
  }
  connect(500);
})();
