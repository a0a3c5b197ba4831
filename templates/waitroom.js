/* waitroom-proxy: the waiting page script (inlined with the CSP nonce; no handlers in markup).
 * Reads its state from <script type="application/json" id="wr-data">, polls
 * POST {prefix}/heartbeat every refresh_seconds while the page is visible, and updates the page.
 */
(function () {
  "use strict";

  var dataEl = document.getElementById("wr-data");
  if (!dataEl) { return; }
  var state;
  try { state = JSON.parse(dataEl.textContent || "{}"); } catch (e) { return; }
  var t = state.messages || {};
  var prefix = typeof state.prefix === "string" ? state.prefix : "/_waitroom";
  var MAX_BACKOFF_MS = 60000;
  var REQUEST_TIMEOUT_MS = 15000;

  var timer = null;
  var inflight = false;
  var stopped = false;
  var failures = 0;
  var lastPoll = 0;
  var lastAnnounced = "";

  function $(id) { return document.getElementById(id); }

  function fill(template, values) {
    return String(template || "").replace(/\{(\w+)\}/g, function (m, key) {
      return Object.prototype.hasOwnProperty.call(values, key) ? String(values[key]) : m;
    });
  }

  function count(value) {
    return typeof value === "number" && isFinite(value) && value >= 0 ? Math.floor(value) : null;
  }

  function formatCount(value) {
    if (value === null) { return "\u2014"; }
    var sep = typeof t.thousands_separator === "string" ? t.thousands_separator : ",";
    return String(value).replace(/\B(?=(\d{3})+(?!\d))/g, sep);
  }

  /* Same rules as page.format_eta in Python. */
  function formatEta(eta) {
    if (!eta || typeof eta !== "object") { return t.eta_unknown; }
    var p50 = typeof eta.p50 === "number" && isFinite(eta.p50) ? eta.p50 : null;
    var p90 = typeof eta.p90 === "number" && isFinite(eta.p90) ? eta.p90 : null;
    if (p50 === null && p90 === null) { return t.eta_unknown; }
    if (p50 === null) { p50 = p90; }
    if (p90 === null) { p90 = p50; }
    p50 = Math.max(0, p50);
    p90 = Math.max(0, p90, p50);
    if (p90 < 60) { return t.eta_soon; }
    var unit = 60, one = "eta_minute", many = "eta_minutes", span = "eta_range_minutes";
    if (p50 >= 90 * 60) {
      unit = 3600; one = "eta_hour"; many = "eta_hours"; span = "eta_range_hours";
    }
    var low = Math.max(1, Math.floor(p50 / unit + 0.5));
    var high = Math.max(low, Math.ceil(p90 / unit));
    if (low === high) { return low === 1 ? t[one] : fill(t[many], { n: low }); }
    return fill(t[span], { low: low, high: high });
  }

  /* A same-site path only: "/x" but not "//x", "/\x" or anything with control characters
   * (browsers drop tabs and newlines, which could turn "/\t/evil" into "//evil"). */
  function safeReturnTo(value) {
    if (typeof value !== "string" || value.charAt(0) !== "/") { return null; }
    var second = value.charAt(1);
    if (second === "/" || second === "\\") { return null; }
    for (var i = 0; i < value.length; i++) {
      var code = value.charCodeAt(i);
      if (code < 0x20 || code === 0x7f) { return null; }
    }
    try {
      var url = new URL(value, window.location.href);
      if (url.origin !== window.location.origin) { return null; }
    } catch (e) {
      return null;
    }
    return value;
  }

  function storageKey() { return "waitroom:first:" + (state.room || ""); }

  function firstPosition(position) {
    // The server's (the ticket's position at joining): the no-script page uses the same.
    var given = count(state.first_position);
    if (given !== null && given > 0) { return Math.max(given, position || 0); }
    var first = null;
    try {
      var stored = parseInt(window.sessionStorage.getItem(storageKey()) || "", 10);
      if (stored > 0) { first = stored; }
    } catch (e) { /* storage disabled: measure from this page load */ }
    if (position !== null && (first === null || position > first)) {
      first = position;
      try { window.sessionStorage.setItem(storageKey(), String(first)); } catch (e) { /* ignore */ }
    }
    return first;
  }

  /* Same formula as waitroom_proxy.domain.progress.progress_percent: of a journey of
   * first + 1 steps (every place up to 1, then the door), first - position + 1 are done; 1..99
   * while waiting, so joining at the front shows half a bar, never an empty one. */
  function progressPercent(first, position, admitted) {
    if (admitted) { return 100; }
    if (position === null || position < 1) { return 0; }
    var start = first === null || first < position ? position : first;
    var done = start - position + 1;
    return Math.max(1, Math.min(99, Math.floor((100 * done) / (start + 1))));
  }

  function forgetFirstPosition() {
    try { window.sessionStorage.removeItem(storageKey()); } catch (e) { /* ignore */ }
  }

  function setText(id, text) {
    var el = $(id);
    if (el && el.textContent !== text) { el.textContent = text; }
  }

  function announce(text) {
    if (!text || text === lastAnnounced) { return; }
    lastAnnounced = text;
    setText("wr-live", text);
  }

  var TITLE_KEYS = {
    waiting: "page_title", admitted: "admitted_heading", expired: "expired_heading",
    used: "used_heading", challenge: "challenge_heading", rejected: "rejected_heading", full: "full_heading",
    left: "left_heading"
  };

  function show(status) {
    var sections = ["waiting", "challenge", "admitted", "expired", "used", "rejected", "full",
      "left"];
    for (var i = 0; i < sections.length; i++) {
      var el = $("wr-" + sections[i]);
      if (el) { el.hidden = sections[i] !== status; }
    }
    var actions = $("wr-actions");
    if (actions) { actions.hidden = status !== "waiting"; }
    var main = $("wr-main");
    if (main) { main.setAttribute("data-status", status); }
    // The same table as page.title_for: the tab says what the page says.
    var key = TITLE_KEYS[status] || "page_title";
    var suffix = typeof state.title_suffix === "string" ? state.title_suffix : state.room;
    if (t[key]) { document.title = t[key] + (suffix ? " \u00b7 " + suffix : ""); }
  }

  function setReconnecting(on) {
    var el = $("wr-reconnecting");
    if (el) { el.hidden = !on; }
  }

  function render() {
    var status = state.status;
    var position = count(state.position);
    var ahead = count(state.ahead);
    if (ahead === null && position !== null) { ahead = Math.max(0, position - 1); }
    setText("wr-position", formatCount(position));
    setText("wr-ahead", formatCount(ahead));
    setText("wr-queue", formatCount(count(state.queue_length)));
    var eta = formatEta(state.eta_seconds);
    setText("wr-eta", eta);
    var notice = $("wr-message");
    if (notice) {
      var message = typeof state.message === "string" ? state.message : "";
      setText("wr-message", message);
      notice.hidden = !message;
    }

    var bar = $("wr-progress");
    if (bar) {
      var admitted = status === "admitted";
      var progress = progressPercent(admitted ? null : firstPosition(position), position, admitted);
      bar.value = progress;
      bar.textContent = progress + "%";
    }

    if (status === "waiting") {
      show("waiting");
      if (position !== null) {
        var line = position === 1 ? t.announce_next : fill(t.announce_position, { n: formatCount(position) });
        announce(line + " " + (t.eta_label || "") + ": " + eta + ".");
      }
    } else if (status === "admitted") {
      show("admitted");
      announce(t.admitted_heading + " " + t.admitted_text);
    } else if (status === "expired") {
      show("expired");
      announce(t.expired_heading + ". " + t.expired_text);
    } else if (status === "challenge") {
      show("challenge");
      announce(t.challenge_heading + ". " + t.challenge_text);
    } else if (status === "rejected" || status === "full" || status === "used") {
      show(status);
      announce(t[status + "_heading"] + ". " + t[status + "_text"]);
    }
  }

  function stop() {
    stopped = true;
    if (timer !== null) { clearTimeout(timer); timer = null; }
  }

  function refreshMs() {
    var seconds = typeof state.refresh_seconds === "number" && isFinite(state.refresh_seconds)
      ? state.refresh_seconds : 10;
    return Math.min(600, Math.max(0.1, seconds)) * 1000;
  }

  function schedule(ms) {
    if (timer !== null) { clearTimeout(timer); timer = null; }
    if (stopped || document.hidden) { return; }
    timer = setTimeout(function () { timer = null; poll(); }, ms);
  }

  function backoffMs() {
    var base = Math.max(1000, refreshMs());
    var ms = Math.min(MAX_BACKOFF_MS, base * Math.pow(2, Math.min(failures - 1, 10)));
    return ms * (0.75 + Math.random() * 0.5);
  }

  function apply(update) {
    var keys = ["status", "room", "position", "ahead", "queue_length", "eta_seconds",
      "refresh_seconds", "return_to", "pow", "first_position", "message"];
    for (var i = 0; i < keys.length; i++) {
      if (Object.prototype.hasOwnProperty.call(update, keys[i])) { state[keys[i]] = update[keys[i]]; }
    }
    render();
    if (state.status === "admitted") {
      stop();
      forgetFirstPosition();
      var target = safeReturnTo(state.return_to);
      var link = $("wr-continue");
      if (link) { link.setAttribute("href", target || window.location.href); }
      if (target) { window.location.replace(target); } else { window.location.reload(); }
    } else if (state.status === "waiting") {
      schedule(refreshMs());
    } else if (state.status === "challenge") {
      solveChallenge();
    } else {
      // expired, used, rejected, full: nothing more to wait for on this page.
      stop();
      forgetFirstPosition();
    }
  }

  /* Proof of work (waitroom_proxy/domain/pow.py): the room asks for a solved challenge
   * before it gives a place. The worker is our own script ({prefix}/pow-worker.js, CSP
   * worker-src 'self'); the solution goes to POST {prefix}/pow, which answers as the
   * heartbeat does. A refused solution comes with a fresh challenge: a few more tries. */
  var solver = null;
  var powTries = 0;
  var MAX_POW_TRIES = 3;

  function powFailed() {
    if (solver !== null) { solver.terminate(); solver = null; }
    var el = $("wr-challenge-failed");
    if (el) { el.hidden = false; }
    announce(t.challenge_failed);
  }

  function submitSolution(challenge, counter) {
    fetch(prefix + "/pow", {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Accept": "application/json", "Content-Type": "application/json" },
      body: JSON.stringify({ challenge: challenge, counter: counter, return_to: state.return_to || "/" })
    }).then(function (response) { return response.json(); }).then(function (body) {
      if (!body || typeof body.status !== "string") { powFailed(); return; }
      if (body.status === "refused") {
        if (body.pow && typeof body.pow === "object") { state.pow = body.pow; solveChallenge(); } else { powFailed(); }
        return;
      }
      if (body.status === "rate_limited") { powFailed(); return; }
      apply(body);
    }, powFailed);
  }

  function solveChallenge() {
    var pow = state.pow;
    var nojs = $("wr-challenge-nojs");
    if (nojs) { nojs.hidden = true; } // shown to a page without script (and by browsers
    // that do not render <noscript> with scripting switched off)
    powTries += 1;
    if (powTries > MAX_POW_TRIES || !pow || typeof pow.challenge !== "string" ||
        typeof Worker !== "function") {
      powFailed();
      return;
    }
    if (solver !== null) { solver.terminate(); }
    try { solver = new Worker(prefix + "/pow-worker.js"); } catch (e) { solver = null; powFailed(); return; }
    var mine = solver;
    mine.onmessage = function (event) {
      var msg = event.data || {};
      if (msg.type === "solved") {
        mine.terminate();
        if (solver === mine) { solver = null; }
        submitSolution(pow.challenge, String(msg.counter));
      } else if (msg.type === "error") {
        powFailed();
      }
    };
    mine.onerror = function () { powFailed(); };
    mine.postMessage({ challenge: pow.challenge, difficulty: pow.difficulty });
  }

  function failed() {
    failures += 1;
    setReconnecting(true);
    schedule(backoffMs());
  }

  function poll() {
    if (stopped || inflight || document.hidden) { return; }
    inflight = true;
    lastPoll = Date.now();
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var abortTimer = controller ? setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS) : null;
    fetch(prefix + "/heartbeat", {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Accept": "application/json" },
      signal: controller ? controller.signal : undefined
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!body || typeof body !== "object" || typeof body.status !== "string") {
          throw new Error("unexpected heartbeat answer " + response.status);
        }
        return body;
      });
    }).then(function (body) {
      inflight = false;
      if (abortTimer !== null) { clearTimeout(abortTimer); }
      if (stopped) { return; }
      failures = 0;
      setReconnecting(false);
      apply(body);
    }, function () {
      inflight = false;
      if (abortTimer !== null) { clearTimeout(abortTimer); }
      if (stopped) { return; }
      failed();
    });
  }

  function pollSoon() {
    // Visible again or focused: poll at once (unless a poll just happened).
    if (stopped || document.hidden) { return; }
    if (Date.now() - lastPoll < 1000 && timer !== null) { return; }
    if (timer !== null) { clearTimeout(timer); timer = null; }
    poll();
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      if (timer !== null) { clearTimeout(timer); timer = null; }
    } else {
      pollSoon();
    }
  });
  window.addEventListener("focus", pollSoon);
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) { pollSoon(); }
  });

  var leave = $("wr-leave");
  if (leave) {
    leave.hidden = false;
    leave.addEventListener("submit", function (event) {
      event.preventDefault();
      stop();
      var button = leave.querySelector("button");
      if (button) { button.disabled = true; }
      var done = function () {
        forgetFirstPosition();
        setReconnecting(false);
        show("left");
        announce(t.left_heading + ". " + t.left_text);
      };
      fetch(prefix + "/leave", {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: { "Accept": "application/json" }
      }).then(done, done);
    });
  }

  render();
  if (state.status === "waiting") {
    schedule(refreshMs());
  } else if (state.status === "admitted") {
    apply({});
  } else if (state.status === "challenge") {
    solveChallenge();
  } else {
    stop();
  }
})();
