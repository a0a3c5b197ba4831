/* waitroom-proxy: proof-of-work solver, run as a Web Worker (no external script, no network).
 *
 * Protocol wpow1 (see waitroom_proxy/domain/pow.py): find the smallest counter >= start (in
 * steps of `step`, so several workers can share the search) such that
 * SHA-256(challenge + decimal(counter)) starts with `difficulty` zero bits.
 *
 * In:  {challenge: string, difficulty: int, start?: int, step?: int, engine?: "subtle"|"js"}
 *      {stop: true} ends the search.
 * Out: {type: "progress", hashes, ms}   about every 250 ms
 *      {type: "solved", counter: string, hashes, ms, engine}
 *      {type: "error", message}
 *
 * Engines: "subtle" uses crypto.subtle.digest (batched: each call is a promise); "js" is the
 * SHA-256 below with the challenge's whole 64-byte blocks hashed once (midstate), as a native
 * solver would. crypto.subtle exists only in secure contexts (HTTPS, localhost): elsewhere, and
 * when asked, "js" is used. The default is "js" where it is the faster (see bench/pow_bench.py).
 */
(function () {
  "use strict";

  var MAX_COUNTER = 9007199254740991; // 2^53 - 1, as the server's MAX_COUNTER
  var BATCH = 512;
  var K = new Int32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ]);
  var IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
    0x5be0cd19];
  var W = new Int32Array(64);
  var running = 0; // id of the current search; a new message or {stop} ends the old one

  /* One SHA-256 compression of the 64 bytes of `block` at `off` into `h` (Int32Array(8)). */
  function compress(h, block, off) {
    var i, s0, s1, t1, t2;
    for (i = 0; i < 16; i++) {
      var j = off + 4 * i;
      W[i] = (block[j] << 24) | (block[j + 1] << 16) | (block[j + 2] << 8) | block[j + 3];
    }
    for (i = 16; i < 64; i++) {
      var a15 = W[i - 15], a2 = W[i - 2];
      s0 = ((a15 >>> 7) | (a15 << 25)) ^ ((a15 >>> 18) | (a15 << 14)) ^ (a15 >>> 3);
      s1 = ((a2 >>> 17) | (a2 << 15)) ^ ((a2 >>> 19) | (a2 << 13)) ^ (a2 >>> 10);
      W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
    }
    var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (i = 0; i < 64; i++) {
      s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      t1 = (k + s1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
      s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
    h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + k) | 0;
  }

  function asciiBytes(text) {
    var out = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) {
      var code = text.charCodeAt(i);
      if (code > 0x7e || code < 0x20) { throw new Error("the challenge must be printable ASCII"); }
      out[i] = code;
    }
    return out;
  }

  /* Leading zero bits test on the first two 32-bit words of a digest. */
  function meetsWords(w0, w1, bits) {
    if (bits <= 0) { return true; }
    if (bits <= 32) { return (w0 >>> 0) < Math.pow(2, 32 - bits); }
    return w0 === 0 && (w1 >>> 0) < Math.pow(2, 64 - bits);
  }

  function post(message) { self.postMessage(message); }

  /* Pure-JS engine: midstate of the challenge's whole blocks, then 1-2 blocks per try. The
   * counter's digits live in the tail block itself and are bumped in place (no string per try). */
  function solveJs(id, prefix, bits, start, step, t0) {
    var full = prefix.length - (prefix.length % 64);
    var mid = new Int32Array(IV);
    for (var off = 0; off < full; off += 64) { compress(mid, prefix, off); }
    var r = prefix.length - full;
    var tail = new Uint8Array(128);
    var h = new Int32Array(8);
    var limit0 = bits >= 32 ? 0 : Math.pow(2, 32 - bits);
    var limit1 = bits <= 32 ? 0 : Math.pow(2, 64 - bits);
    var counter = start, hashes = 0, lastReport = t0, len = 0, blocks = 1;

    function rebuild() { // the digit count changed: lay the tail block(s) out again
      var digits = String(counter);
      len = digits.length;
      tail.fill(0);
      tail.set(prefix.subarray(full), 0);
      for (var i = 0; i < len; i++) { tail[r + i] = digits.charCodeAt(i); }
      tail[r + len] = 0x80;
      blocks = r + len + 9 <= 64 ? 1 : 2;
      var bitLen = (prefix.length + len) * 8, end = blocks * 64; // < 2^32 for any challenge
      tail[end - 4] = (bitLen >>> 24) & 0xff; tail[end - 3] = (bitLen >>> 16) & 0xff;
      tail[end - 2] = (bitLen >>> 8) & 0xff; tail[end - 1] = bitLen & 0xff;
    }

    function bump() { // counter += step, on the digits in place
      counter += step;
      var carry = step, i = r + len - 1;
      while (carry > 0 && i >= r) {
        var v = tail[i] - 48 + carry;
        tail[i] = 48 + (v % 10);
        carry = (v - (v % 10)) / 10;
        i--;
      }
      if (carry > 0) { rebuild(); }
    }

    function found() {
      if (bits <= 0) { return true; }
      if (bits <= 32) { return (h[0] >>> 0) < limit0; }
      return h[0] === 0 && (h[1] >>> 0) < limit1;
    }

    rebuild();
    function chunk() {
      if (id !== running) { return; }
      var until = hashes + 100000;
      while (hashes < until) {
        if (counter > MAX_COUNTER) { post({ type: "error", message: "no solution below 2^53" }); return; }
        h.set(mid);
        compress(h, tail, 0);
        if (blocks === 2) { compress(h, tail, 64); }
        hashes++;
        if (found()) {
          post({ type: "solved", counter: String(counter), hashes: hashes, ms: performance.now() - t0, engine: "js" });
          return;
        }
        bump();
      }
      var now = performance.now();
      if (now - lastReport >= 250) { lastReport = now; post({ type: "progress", hashes: hashes, ms: now - t0 }); }
      setTimeout(chunk, 0); // yield, so a {stop} message is seen
    }
    chunk();
  }

  /* crypto.subtle engine: BATCH digests in flight at a time. */
  function solveSubtle(id, prefix, bits, start, step, t0) {
    var counter = start, hashes = 0, lastReport = t0;
    function one(c) {
      var digits = String(c);
      var buf = new Uint8Array(prefix.length + digits.length);
      buf.set(prefix, 0);
      for (var i = 0; i < digits.length; i++) { buf[prefix.length + i] = digits.charCodeAt(i); }
      return crypto.subtle.digest("SHA-256", buf).then(function (digest) {
        var v = new DataView(digest);
        return meetsWords(v.getUint32(0), v.getUint32(4), bits) ? digits : null;
      });
    }
    function batch() {
      if (id !== running) { return; }
      if (counter > MAX_COUNTER) { post({ type: "error", message: "no solution below 2^53" }); return; }
      var pending = [];
      for (var i = 0; i < BATCH && counter <= MAX_COUNTER; i++) { pending.push(one(counter)); counter += step; }
      Promise.all(pending).then(function (results) {
        if (id !== running) { return; }
        for (var j = 0; j < results.length; j++) {
          hashes++;
          if (results[j] !== null) { // the first in counter order: the same answer as "js"
            post({ type: "solved", counter: results[j], hashes: hashes, ms: performance.now() - t0, engine: "subtle" });
            return;
          }
        }
        var now = performance.now();
        if (now - lastReport >= 250) { lastReport = now; post({ type: "progress", hashes: hashes, ms: now - t0 }); }
        batch();
      }, function (err) { post({ type: "error", message: String(err && err.message || err) }); });
    }
    batch();
  }

  self.onmessage = function (event) {
    var msg = event.data || {};
    running += 1;
    if (msg.stop) { return; }
    try {
      if (typeof msg.challenge !== "string" || msg.challenge.length > 200) {
        throw new Error("missing or oversized challenge");
      }
      var bits = msg.difficulty;
      if (typeof bits !== "number" || bits !== Math.floor(bits) || bits < 0 || bits > 64) {
        throw new Error("difficulty must be a whole number of bits, 0..64");
      }
      var start = typeof msg.start === "number" && msg.start >= 0 ? Math.floor(msg.start) : 0;
      var step = typeof msg.step === "number" && msg.step >= 1 ? Math.floor(msg.step) : 1;
      var prefix = asciiBytes(msg.challenge);
      var subtle = typeof crypto !== "undefined" && crypto.subtle && typeof crypto.subtle.digest === "function";
      var engine = msg.engine === "subtle" && subtle ? "subtle" : "js";
      var t0 = performance.now();
      if (engine === "subtle") {
        solveSubtle(running, prefix, bits, start, step, t0);
      } else {
        solveJs(running, prefix, bits, start, step, t0);
      }
    } catch (e) {
      post({ type: "error", message: String(e && e.message || e) });
    }
  };
})();
