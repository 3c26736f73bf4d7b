// rdev dashboard: list auto-refresh and the live build log. No inline code (CSP), and
// every text that came from a bot or an agent is set with textContent, never as HTML.
"use strict";

(function () {
  const page = document.body.dataset.page;

  function refreshRows() {
    const body = document.getElementById("build-rows");
    if (!body) return;
    const url = body.dataset.rowsUrl;
    setInterval(async function () {
      try {
        const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
        if (r.status === 401) { window.location.assign("/ui/login"); return; }
        if (!r.ok) return;
        // The fragment is server-rendered with autoescape; parsed as an inert document.
        const doc = new DOMParser().parseFromString(
          "<table><tbody>" + (await r.text()) + "</tbody></table>", "text/html");
        const fresh = doc.querySelector("tbody");
        body.replaceChildren(...Array.from(fresh.children).map((n) => document.adoptNode(n)));
      } catch (e) { /* keep the old rows; retry next tick */ }
    }, 5000);
  }

  function liveLog() {
    const root = document.getElementById("build");
    if (!root) return;
    const taskId = root.dataset.taskId;
    const renderedFinal = root.dataset.final === "true";
    const log = document.getElementById("log");
    const state = document.getElementById("log-state");
    const status = document.getElementById("status");
    const cancelNote = document.getElementById("cancel-note");
    const cancelForm = document.getElementById("cancel-form");
    // Same-origin EventSource: the HttpOnly session cookie authenticates it, and the
    // browser resumes with Last-Event-ID after a network error.
    const es = new EventSource("/ui/builds/" + encodeURIComponent(taskId) + "/events");
    state.textContent = "live";

    es.addEventListener("log", function (ev) {
      const chunk = JSON.parse(ev.data);
      const nearBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 40;
      const line = document.createElement("span");
      line.className = "line" + (chunk.stream === "err" ? " err" : "");
      line.dataset.seq = String(chunk.seq);
      line.textContent = chunk.text.endsWith("\n") ? chunk.text : chunk.text + "\n";
      log.appendChild(line);
      if (nearBottom) log.scrollTop = log.scrollHeight;
    });

    es.addEventListener("status", function (ev) {
      const s = JSON.parse(ev.data);
      status.textContent = s.status;
      status.className = "status status-" + s.status.replace(/[^a-z]/g, "");
      if (cancelNote) cancelNote.hidden = !(s.cancel_requested && !s.final);
      if (s.final) {
        es.close();
        state.textContent = "build ended";
        if (cancelForm) cancelForm.hidden = true;
        // Re-render once to show the result, files changed and the full audit trail.
        if (!renderedFinal) setTimeout(function () { window.location.reload(); }, 1500);
      }
    });

    es.addEventListener("end", function () { es.close(); });
    es.onerror = function () {
      if (es.readyState === EventSource.CLOSED) state.textContent = "disconnected";
      else state.textContent = "reconnecting…";
    };
    es.onopen = function () { state.textContent = "live"; };
  }

  if (page === "builds") refreshRows();
  if (page === "build") liveLog();
})();
