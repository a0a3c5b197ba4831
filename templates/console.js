/* waitroom-proxy: the operator console's script (inlined into dashboard.html with the CSP nonce).
 *
 * Reads the admin API with the bearer token kept in sessionStorage: /admin/stats every 2 s
 * (the table, the room list, the controls' current values), the selected room's history
 * (the whole hour once, then only the samples after the last one held: ?since=) and its
 * schedule. Controls call the same API and show its error detail. Charts are inline SVG drawn
 * here; every piece of data goes in with textContent or setAttribute, never as markup.
 * Relative URLs ("stats", "rooms/NAME/...") resolve against /admin/ or /admin/dashboard alike.
 */
(function () {
  "use strict";
  var KEY = "waitroom-admin-token";
  var ROOM_KEY = "waitroom-admin-room";
  var PERIOD = 2000;
  var SVG = document.getElementById("chart-queue").namespaceURI;  /* the SVG namespace */
  var W = 320, H = 130, L = 38, R = 6, T = 8, B = 112;
  var timer = null;
  var rooms = [], room = "", samples = [], historyMeta = null, sched = null;
  var busy = false, again = false;
  var $ = function (id) { return document.getElementById(id); };
  var base = new URL("./", window.location.href);  /* /admin/ from /admin/ and /admin/dashboard */

  function url(path) { return new URL(path, base).toString(); }
  function token() { try { return window.sessionStorage.getItem(KEY) || ""; } catch (e) { return ""; } }
  function setToken(v) { try { if (v) { window.sessionStorage.setItem(KEY, v); } else { window.sessionStorage.removeItem(KEY); } } catch (e) { /* storage off */ } }
  function remembered() { try { return window.sessionStorage.getItem(ROOM_KEY) || ""; } catch (e) { return ""; } }
  function remember(name) { try { window.sessionStorage.setItem(ROOM_KEY, name); } catch (e) { /* storage off */ } }

  /* One call of the admin API: resolves {ok, status, data}; a refused token shows the login. */
  function api(method, path, body) {
    var t = token();
    if (!t) { showLogin(""); return Promise.reject(new Error("no token")); }
    var init = { method: method, cache: "no-store", credentials: "omit",
                 headers: { "Authorization": "Bearer " + t, "Accept": "application/json" } };
    if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    return fetch(url(path), init).then(function (resp) {
      if (resp.status === 401) { setToken(""); showLogin("That token was refused."); throw new Error("token refused"); }
      return resp.json().catch(function () { return null; }).then(function (data) {
        return { ok: resp.ok, status: resp.status, data: data };
      });
    });
  }
  function detail(answer) {
    var d = answer.data && answer.data.detail;
    if (Array.isArray(d)) {
      return d.map(function (p) { return (p.field ? p.field + ": " : "") + p.error; }).join("; ");
    }
    return (typeof d === "string" && d) ? d : "HTTP " + answer.status;
  }
  function roomPath(suffix) { return "rooms/" + encodeURIComponent(room) + suffix; }

  function showLogin(message) {
    stop();
    $("data").hidden = true;
    $("forget").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token").focus();
  }

  function fmtNumber(n) { return (typeof n === "number" && isFinite(n)) ? n.toLocaleString() : "–"; }
  function fmtDuration(s) {
    if (typeof s !== "number" || !isFinite(s)) { return "–"; }
    var a = Math.abs(s), sign = s < 0 ? "−" : "";
    if (a < 60) { return sign + Math.round(a) + " s"; }
    if (a < 3600) { return sign + Math.round(a / 60) + " min"; }
    return sign + (a / 3600).toFixed(1) + " h";
  }
  function fmtClock(s) {
    s = Math.max(0, Math.floor(s));
    var d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return (d ? d + " d " : "") + pad(h) + ":" + pad(m) + ":" + pad(s % 60);
  }
  function clear(el) { while (el.firstChild) { el.removeChild(el.firstChild); } }
  function cell(row, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    row.appendChild(td);
    return td;
  }
  function pill(el, text, cls) { el.textContent = text; el.className = "pill " + cls; }

  /* ------------------------------------------------------------------ the stats table */
  function renderStats(data) {
    $("fetch-error").textContent = "";
    pill($("store"), data.store && data.store.up ? "up" : "down", data.store && data.store.up ? "ok" : "bad");
    var ev = data.events || {}, c = ev.counters;
    if (c) {
      var dropped = c.dropped || 0;
      var text = (ev.publisher || "") + ": " + fmtNumber(c.published || 0) + " sent";
      if (dropped) { text += ", " + fmtNumber(dropped) + " dropped"; }
      if (c.buffered) { text += ", " + fmtNumber(c.buffered) + " buffered"; }
      pill($("events"), text, (c.connected === 0 || dropped) ? "warn" : "ok");
    } else {
      pill($("events"), ev.publisher || "–", "");
    }
    $("replica").textContent = "replica " + (data.replica || "?");
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    var body = $("rooms");
    clear(body);
    rooms = data.rooms || [];
    rooms.forEach(function (r) {
      var p = r.policy || {}, s = r.stats || {};
      var tr = document.createElement("tr");
      var th = document.createElement("th");
      th.scope = "row";
      th.textContent = r.name;
      tr.appendChild(th);
      var state = r.paused ? "paused" : (p.mode || "?");
      if (r.overrides && Object.keys(r.overrides).length) { state += " (overridden)"; }
      cell(tr, state, r.paused ? "error" : "");
      cell(tr, fmtNumber(s.queue_length));
      var td = cell(tr, fmtNumber(s.active) + " / " + fmtNumber(p.capacity));
      if (typeof s.active === "number" && p.capacity) {
        var bar = document.createElement("span"), fill = document.createElement("span");
        bar.className = "bar";
        fill.style.width = Math.min(100, Math.round(100 * s.active / p.capacity)) + "%";
        bar.appendChild(fill);
        td.appendChild(bar);
      }
      cell(tr, fmtNumber(s.promoted));
      cell(tr, typeof r.admissions_per_minute === "number" ? r.admissions_per_minute.toFixed(1) : "–");
      var eta = r.eta_last_seconds;
      cell(tr, eta ? fmtDuration(eta.p50) + " – " + fmtDuration(eta.p90) : "–");
      cell(tr, fmtNumber(s.admitted_total));
      body.appendChild(tr);
    });
    renderRoomList();
  }

  function renderRoomList() {
    var select = $("room"), names = rooms.map(function (r) { return r.name; });
    if (names.indexOf(room) < 0) {
      var wanted = remembered();
      selectRoom(names.indexOf(wanted) >= 0 ? wanted : (names[0] || ""));
    }
    var shown = Array.prototype.map.call(select.options, function (o) { return o.value; });
    if (shown.join("\n") !== names.join("\n")) {
      clear(select);
      names.forEach(function (n) {
        var o = document.createElement("option");
        o.value = n;
        o.textContent = n;
        select.appendChild(o);
      });
    }
    select.value = room;
    var r = current();
    if (!r) { return; }
    pill($("room-state"), r.paused ? "paused" : "admitting", r.paused ? "bad" : "ok");
    $("capacity-now").textContent = "now " + fmtNumber(r.policy.capacity);
    $("admit-rate-now").textContent = "now " + (r.policy.admit_rate ? fmtNumber(r.policy.admit_rate) : "no limit");
    var message = $("message");
    if (document.activeElement !== message && !message.dataset.edited) { message.value = r.policy.message || ""; }
  }
  function current() {
    for (var i = 0; i < rooms.length; i++) { if (rooms[i].name === room) { return rooms[i]; } }
    return null;
  }
  function selectRoom(name) {
    if (name === room) { return; }
    room = name;
    remember(name);
    samples = [];
    historyMeta = null;
    sched = null;
    $("message").dataset.edited = "";
    $("control-status").textContent = "";
    $("control-error").textContent = "";
  }

  /* ------------------------------------------------------------------ history and charts */
  function loadHistory() {
    if (!room) { return Promise.resolve(); }
    var last = samples.length ? samples[samples.length - 1].t : null;
    var asked = room;
    return api("GET", roomPath("/history" + (last !== null ? "?since=" + last : ""))).then(function (a) {
      if (!a.ok || asked !== room) { return; }
      historyMeta = a.data;
      samples = samples.concat(a.data.samples || []);
      if (samples.length > a.data.points) { samples = samples.slice(samples.length - a.data.points); }
      drawCharts();
    });
  }

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function label(svg, x, y, text, anchor) {
    var t = el("text", { x: x, y: y, "text-anchor": anchor || "start" }, svg);
    t.textContent = text;
  }
  function niceMax(v) {
    if (!(v > 0)) { return 1; }
    var p = Math.pow(10, Math.floor(Math.log(v) / Math.LN10)), m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }

  /* One chart: series = [[values...], ...] aligned with samples; a gap where a value is null. */
  function chart(id, series, opts) {
    var svg = $(id);
    clear(svg);
    var span = historyMeta ? historyMeta.points * historyMeta.interval_seconds : 3600;
    var end = samples.length ? samples[samples.length - 1].t : 0, start = end - span;
    var lo = 0, hi = 0, points = 0;
    series.forEach(function (vals) { vals.forEach(function (v) { if (v !== null && isFinite(v)) { hi = Math.max(hi, v); lo = Math.min(lo, v); } }); });
    if (opts.symmetric) { hi = niceMax(Math.max(Math.abs(lo), Math.abs(hi))); lo = -hi; } else { hi = niceMax(hi); lo = 0; }
    var x = function (t) { return L + (W - L - R) * (t - start) / span; };
    var y = function (v) { return B - (B - T) * (v - lo) / (hi - lo); };
    samples.forEach(function (s, i) {
      if (s.paused) {
        var next = samples[i + 1] ? samples[i + 1].t : s.t + (historyMeta ? historyMeta.interval_seconds : 10);
        el("rect", { "class": "paused", x: x(s.t).toFixed(1), y: T, width: Math.max(1, x(next) - x(s.t)).toFixed(1), height: B - T }, svg);
      }
    });
    el("line", { "class": "axis", x1: L, y1: B, x2: W - R, y2: B }, svg);
    el("line", { "class": "axis", x1: L, y1: T, x2: L, y2: B }, svg);
    if (opts.symmetric) { el("line", { "class": "zero", x1: L, y1: y(0), x2: W - R, y2: y(0) }, svg); }
    label(svg, L - 4, T + 8, opts.fmt(hi), "end");
    label(svg, L - 4, opts.symmetric ? y(0) + 3 : B, opts.fmt(opts.symmetric ? 0 : lo), "end");
    if (opts.symmetric) { label(svg, L - 4, B, opts.fmt(lo), "end"); }
    label(svg, L, H - 4, "−" + Math.round(span / 60) + " min");
    label(svg, W - R, H - 4, "now", "end");
    series.forEach(function (vals, k) {
      var run = [];
      var flush = function () {
        if (run.length === 1) {
          el("circle", { "class": "s" + k, cx: run[0][0], cy: run[0][1], r: 1.6 }, svg);
        } else if (run.length > 1) {
          el("polyline", { "class": "s" + k, points: run.map(function (p) { return p.join(","); }).join(" ") }, svg);
        }
        points += run.length;
        run = [];
      };
      vals.forEach(function (v, i) {
        if (v === null || !isFinite(v) || samples[i].t < start) { flush(); return; }
        run.push([x(samples[i].t).toFixed(1), y(v).toFixed(1)]);
      });
      flush();
    });
    svg.setAttribute("data-points", String(points));
  }
  function column(name) { return samples.map(function (s) { return typeof s[name] === "number" ? s[name] : null; }); }
  function lastOf(vals) { for (var i = vals.length - 1; i >= 0; i--) { if (vals[i] !== null) { return vals[i]; } } return null; }
  function intFmt(v) { return fmtNumber(Math.round(v)); }

  function drawCharts() {
    var queue = column("queue_length"), active = column("active"), cap = column("capacity");
    var rate = column("admissions_per_minute"), eta = column("eta_error_seconds");
    chart("chart-queue", [queue], { fmt: intFmt });
    chart("chart-active", [active, cap], { fmt: intFmt });
    chart("chart-admissions", [rate], { fmt: intFmt });
    chart("chart-eta", [eta], { fmt: fmtDuration, symmetric: true });
    $("now-queue").textContent = fmtNumber(lastOf(queue));
    $("now-active").textContent = fmtNumber(lastOf(active)) + " / " + fmtNumber(lastOf(cap));
    var r = lastOf(rate);
    $("now-admissions").textContent = r === null ? "–" : r.toFixed(1);
    $("now-eta").textContent = fmtDuration(lastOf(eta));
    if (historyMeta) {
      $("history-span").textContent = "(" + samples.length + " samples, every " + historyMeta.interval_seconds + " s, from replica " + historyMeta.replica + ")";
    }
  }

  /* ------------------------------------------------------------------ the schedule */
  function loadSchedule() {
    if (!room) { return Promise.resolve(); }
    var asked = room;
    return api("GET", roomPath("/schedule")).then(function (a) {
      if (!a.ok || asked !== room) { return; }
      var d = a.data, received = Date.now();
      /* The store's clock decides the phases: count down by it, not by this browser's. */
      var serverNow = d.store_time ? Date.parse(d.store_time) : NaN;
      sched = { data: d, offset: isFinite(serverNow) ? serverNow - received : 0, known: isFinite(serverNow) };
      renderSchedule();
    });
  }
  function renderSchedule() {
    if (!sched) { return; }
    var d = sched.data;
    $("phase").textContent = d.phase || "–";
    var times = [];
    if (d.schedule) {
      ["prequeue_at", "start_at", "end_at"].forEach(function (k) {
        if (d.schedule[k]) { times.push(k.replace("_at", "") + " " + new Date(Date.parse(d.schedule[k])).toLocaleString()); }
      });
    }
    $("schedule-times").textContent = d.schedule ? times.join(" · ") : "No schedule: the room is open.";
    if (d.next) {
      var left = (Date.parse(d.next.at) - (Date.now() + sched.offset)) / 1000;
      $("countdown").textContent = fmtClock(left);
      $("next-change").textContent = "until " + d.next.phase + " at " + new Date(Date.parse(d.next.at)).toLocaleString() + " (browser time)";
      if (left <= 0 && !busy) { loadSchedule(); }
    } else {
      $("countdown").textContent = "–";
      $("next-change").textContent = d.schedule ? "No further change." : "";
    }
    if (sched.known) {
      var skew = sched.offset / 1000;
      $("skew").textContent = Math.abs(skew) < 1 ? "Store clock agrees with this browser (±1 s)."
        : "Store clock is " + fmtDuration(Math.abs(skew)) + (skew > 0 ? " ahead of" : " behind") + " this browser; the countdown follows the store.";
    } else {
      $("skew").textContent = "";
    }
  }

  /* ------------------------------------------------------------------ controls */
  function act(what, method, path, body, done) {
    $("control-status").textContent = "";
    $("control-error").textContent = "";
    return api(method, roomPath(path), body).then(function (a) {
      if (!a.ok) { $("control-error").textContent = what + " refused: " + detail(a); return; }
      $("control-status").textContent = done(a.data);
      poll();
    }).catch(function (err) { $("control-error").textContent = what + " failed: " + err.message; });
  }
  function numberOf(id) {
    var text = $(id).value.trim();
    return /^-?\d+$/.test(text) ? parseInt(text, 10) : text;
  }
  function patch(what, field, value) {
    var body = {};
    body[field] = value;
    return act(what, "PATCH", "", body, function (d) {
      var v = d.policy ? d.policy[field] : value;
      return what + " is now " + (v === null || v === "" ? "none" : v) + ".";
    });
  }
  $("pause").addEventListener("click", function () { act("Pause", "POST", "/pause", undefined, function () { return "Admissions paused."; }); });
  $("resume").addEventListener("click", function () { act("Resume", "POST", "/resume", undefined, function () { return "Admissions resumed."; }); });
  $("admit").addEventListener("click", function () {
    var n = $("admit-count").value.trim();
    act("Admit", "POST", "/admit?count=" + encodeURIComponent(n), undefined, function (d) {
      return "Admitted " + d.promoted + " of " + d.requested + " asked.";
    });
  });
  $("set-capacity").addEventListener("click", function () { patch("Capacity", "capacity", numberOf("capacity")); });
  $("set-admit-rate").addEventListener("click", function () { patch("Admit rate", "admit_rate", numberOf("admit-rate")); });
  $("set-message").addEventListener("click", function () {
    $("message").dataset.edited = "";
    patch("Message", "message", $("message").value);
  });
  $("clear-message").addEventListener("click", function () {
    $("message").value = "";
    $("message").dataset.edited = "";
    patch("Message", "message", null);
  });
  $("message").addEventListener("input", function () { $("message").dataset.edited = "1"; });
  $("room").addEventListener("change", function () { selectRoom($("room").value); poll(); });

  /* ------------------------------------------------------------------ polling */
  function poll() {
    if (!token()) { showLogin(""); return; }
    if (busy) { again = true; return; }  /* once more when this one is done */
    busy = true;
    again = false;
    stop();
    api("GET", "stats").then(function (a) {
      if (!a.ok) { throw new Error(detail(a)); }
      $("login").hidden = true;
      $("data").hidden = false;
      $("forget").hidden = false;
      renderStats(a.data);
      return Promise.all([loadHistory(), loadSchedule()]);
    }).catch(function (err) {
      if (!token()) { return; }
      $("fetch-error").textContent = "Cannot reach the admin API (" + err.message + "); retrying…";
      pill($("store"), "?", "warn");
    }).then(function () {
      busy = false;
      if (!token()) { return; }
      if (again) { poll(); } else { schedule(); }
    });
  }
  function schedule() { stop(); if (!document.hidden) { timer = window.setTimeout(poll, PERIOD); } }
  function stop() { if (timer !== null) { window.clearTimeout(timer); timer = null; } }

  window.setInterval(function () { if (!document.hidden) { renderSchedule(); } }, 1000);
  $("login").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var v = $("token").value.trim();
    $("token").value = "";
    if (v) { setToken(v); poll(); }
  });
  $("forget").addEventListener("click", function () { setToken(""); showLogin(""); });
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { stop(); } else if (token()) { poll(); }
  });
  poll();
}());
