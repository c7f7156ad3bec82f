// The hub page, live: download progress (bytes, speed, time left) for everyone watching.
// The page itself is rendered from the database; a model whose actions change (the server
// sends them with each event) reloads it, so its buttons always match what it allows.
const hub = document.getElementById("hub");
const liveState = document.getElementById("live-state");
// Close codes that mean "you may not watch": the socket is not reopened after them.
const REFUSED = new Set(Object.values(JSON.parse(hub?.dataset.closeCodes || "{}")));
const UNITS = ["bytes", "KB", "MB", "GB", "TB"];

function size(bytes) {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} bytes` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

function duration(seconds) {
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

function progressText(event) {
  if (event.status === "queued") return "Waiting for a worker…";
  if (event.status === "verifying") return "Verifying…";
  const parts = [`${size(event.downloaded_bytes)} of ${size(event.size_bytes)}`];
  if (event.speed_bps) parts.push(`${size(event.speed_bps)}/s`);
  if (event.eta_s !== null && event.eta_s !== undefined) parts.push(`${duration(event.eta_s)} left`);
  return parts.join(" · ");
}

function sameActions(row, actions) {
  const shown = new Set(row.dataset.actions.split(" ").filter(Boolean));
  return shown.size === actions.length && actions.every((action) => shown.has(action));
}

let reloading = false;
function reloadSoon() {
  if (reloading) return;
  reloading = true;
  setTimeout(() => location.reload(), 150);
}

// A speech model's download: its bytes as they come; a new state has other buttons.
function applySpeech(event) {
  const row = document.querySelector(`[data-speech="${CSS.escape(event.slug)}"]`);
  if (!row || row.dataset.status !== event.status) return reloadSoon();
  const bar = row.querySelector("[data-role=download] progress");
  if (!bar || event.status !== "downloading") return;
  if (event.size_bytes) bar.max = event.size_bytes;
  bar.value = event.downloaded_bytes;
  const percent = event.size_bytes ? Math.floor((100 * event.downloaded_bytes) / event.size_bytes) : 0;
  row.querySelector("[data-role=progress-text]").textContent =
    `${size(event.downloaded_bytes)} of ${size(event.size_bytes)} (${percent}%)`;
}

function apply(event) {
  if (event.type === "speech") return applySpeech(event);
  if (event.type === "removed") {
    document.querySelector(`[data-slug="${CSS.escape(event.slug)}"]`)?.remove();
    return;
  }
  if (event.type !== "model") return;
  const row = document.querySelector(`#installed [data-slug="${CSS.escape(event.slug)}"]`);
  // A new model, or one whose buttons change: the page is rendered afresh.
  if (!row || !sameActions(row, event.actions)) return reloadSoon();
  if (row.dataset.status !== event.status) {
    row.dataset.status = event.status;
    const badge = row.querySelector("[data-role=status]");
    badge.textContent = event.status_label;
    badge.className = `status-badge status-${event.status}`;
  }
  const bar = row.querySelector("[data-role=download] progress");
  if (bar) {
    if (event.size_bytes) bar.max = event.size_bytes;
    bar.value = event.downloaded_bytes;
    row.querySelector("[data-role=progress-text]").textContent = progressText(event);
  }
}

function connect(delay = 500) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}${hub.dataset.socketPath}`);
  socket.addEventListener("open", () => {
    liveState.textContent = "● Live";
    liveState.classList.add("live");
    delay = 500;
  });
  socket.addEventListener("message", (message) => apply(JSON.parse(message.data)));
  socket.addEventListener("close", (event) => {
    liveState.classList.remove("live");
    if (REFUSED.has(event.code)) {
      liveState.textContent = "Not live: sign in as an admin again, then reload the page.";
      return;
    }
    liveState.textContent = "Reconnecting…";
    setTimeout(() => connect(Math.min(delay * 2, 10_000)), delay);
  });
}

// The add form shows the fields of the chosen source only.
const addForm = document.querySelector(".add-form");
if (addForm) {
  const showSource = () => {
    const source = addForm.querySelector("input[name=source]:checked")?.value;
    addForm.querySelector(".add-hub").hidden = source !== "hub";
    addForm.querySelector(".add-path").hidden = source !== "path";
  };
  addForm.addEventListener("change", showSource);
  showSource();
}

if (hub) connect();
