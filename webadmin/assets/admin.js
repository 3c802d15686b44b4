// Shoal web admin: the live tail (Server-Sent Events) and JSON editors.
// No inline script anywhere: this file is loaded once per page (CSP script-src 'self').
(function () {
  "use strict";
  var source = null;

  function cell(text, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    td.textContent = text;
    return td;
  }

  function micros(us) {
    return us >= 10000 ? (us / 1000).toFixed(1) + " ms" : us + " \u00b5s";
  }

  function startTail() {
    var rows = document.getElementById("tail-rows");
    if (source) { source.close(); source = null; }
    if (!rows) { return; }
    var status = document.querySelector("[data-tail-status]");
    var keep = parseInt(rows.getAttribute("data-keep"), 10) || 200;
    source = new EventSource(rows.getAttribute("data-tail"));
    source.addEventListener("open", function () { if (status) { status.textContent = "Following live."; } });
    source.addEventListener("error", function () { if (status) { status.textContent = "Reconnecting\u2026"; } });
    source.addEventListener("invocation", function (ev) {
      var r;
      try { r = JSON.parse(ev.data); } catch (e) { return; }
      var tr = document.createElement("tr");
      var t = new Date(r.time_ms);
      tr.appendChild(cell(t.toISOString().substring(11, 23)));
      var cid = document.createElement("td");
      var link = document.createElement("a");
      link.href = "/admin/calls/" + encodeURIComponent(r.cid);
      var code = document.createElement("code");
      code.textContent = r.cid;
      link.appendChild(code);
      cid.appendChild(link);
      tr.appendChild(cid);
      tr.appendChild(cell(r.channel));
      tr.appendChild(cell(r.service));
      var st = document.createElement("td");
      var span = document.createElement("span");
      span.className = "status s" + Math.floor(r.status / 100);
      span.textContent = String(r.status);
      st.appendChild(span);
      tr.appendChild(st);
      tr.appendChild(cell(micros(r.duration_us), "num"));
      var reason = r.message || "";
      tr.appendChild(cell(reason.length > 120 ? reason.substring(0, 120) + "\u2026" : reason));
      rows.insertBefore(tr, rows.firstChild);
      while (rows.children.length > keep) { rows.removeChild(rows.lastChild); }
    });
  }

  function jsonEditors(root) {
    var editors = (root || document).querySelectorAll("[data-json-editor]");
    Array.prototype.forEach.call(editors, function (ta) {
      if (ta.getAttribute("data-json-ready")) { return; }
      ta.setAttribute("data-json-ready", "1");
      var status = ta.parentNode.querySelector("[data-json-status]");
      ta.addEventListener("input", function () {
        var text = ta.value.trim();
        if (!text) { ta.removeAttribute("aria-invalid"); if (status) { status.textContent = ""; } return; }
        try {
          JSON.parse(text);
          ta.removeAttribute("aria-invalid");
          if (status) { status.textContent = "Valid JSON."; }
        } catch (e) {
          ta.setAttribute("aria-invalid", "true");
          if (status) { status.textContent = "Not valid JSON yet: " + e.message; }
        }
      });
    });
  }

  function init() { startTail(); jsonEditors(document); }
  document.addEventListener("DOMContentLoaded", init);
  // Pages swapped in by htmx (hx-boost) start their tail and editors too.
  document.addEventListener("htmx:afterSettle", init);
  window.addEventListener("pagehide", function () { if (source) { source.close(); } });
})();
