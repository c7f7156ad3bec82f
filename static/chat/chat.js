// The chat page's live part: one socket per conversation, replies applied by offset.
// Offsets count UTF-16 code units, like String.length, so a delta is placed exactly
// once whatever arrives twice, late or after a reconnect.

const chat = document.querySelector(".chat");
const list = document.getElementById("messages");
const form = document.querySelector(".composer");
const input = document.getElementById("composer-input");
const modelSelect = document.getElementById("model-select");
const stopButton = document.getElementById("stop-button");
const statusLine = document.getElementById("composer-status");

const ACTIVE = new Set(["queued", "streaming"]);
const STATUS_TEXT = { queued: "Waiting for the model…", streaming: "Writing…", stopped: "Stopped", done: "" };
const messages = new Map(); // id -> {text, status, el}

function readRenderedMessages() {
  for (const el of list.querySelectorAll(".message")) {
    const id = Number(el.dataset.messageId);
    messages.set(id, { text: el.querySelector(".message-body").textContent, status: el.dataset.status, el });
  }
}

function nearBottom() {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
}

function scrollToEnd() {
  list.scrollTop = list.scrollHeight;
}

function createBubble(id, role) {
  list.querySelector(".welcome")?.remove();
  const el = document.createElement("article");
  el.className = `message message-${role}`;
  el.dataset.messageId = id;
  const body = document.createElement("div");
  body.className = "message-body";
  el.append(body);
  if (role === "assistant") {
    const meta = document.createElement("footer");
    meta.className = "message-meta";
    meta.innerHTML = '<span class="meta-status"></span><span class="meta-stats"></span>';
    el.append(meta);
  }
  list.append(el);
  const state = { text: "", status: "queued", el };
  messages.set(id, state);
  return state;
}

function setText(state, text) {
  state.text = text;
  state.el.querySelector(".message-body").textContent = text; // never HTML: model output is untrusted
}

function setStatus(state, status, info = {}) {
  state.status = status;
  state.el.dataset.status = status;
  state.el.className = state.el.className.replace(/\bstatus-\S+/g, "").trim() + ` status-${status}`;
  const statusEl = state.el.querySelector(".meta-status");
  if (statusEl) statusEl.textContent = status === "failed" ? info.error || "Failed" : STATUS_TEXT[status] ?? "";
  const stats = state.el.querySelector(".meta-stats");
  if (stats && info.completion_tokens) {
    const parts = [`${info.completion_tokens} tokens`];
    if (info.tokens_per_second) parts.push(`${info.tokens_per_second} tok/s`);
    if (info.ttft_ms != null) parts.push(`first token ${info.ttft_ms} ms`);
    stats.textContent = parts.join(" · ");
  }
}

function upsertMessage(m) {
  const stick = nearBottom();
  const state = messages.get(m.id) ?? createBubble(m.id, m.role);
  // A finished message's text is final; while streaming, keep whichever is further along.
  if (!ACTIVE.has(m.status) || m.content.length >= state.text.length) setText(state, m.content);
  setStatus(state, m.status, m);
  refreshControls();
  if (stick) scrollToEnd();
}

function applyDelta(d) {
  const state = messages.get(d.id);
  if (!state || d.offset > state.text.length) {
    requestSync([d.id]); // we missed part of it: ask for the whole text
    return;
  }
  const end = d.offset + d.text.length;
  if (end <= state.text.length) return; // already have it
  const stick = nearBottom();
  setText(state, state.text + d.text.slice(state.text.length - d.offset));
  if (state.status === "queued") setStatus(state, "streaming");
  if (stick) scrollToEnd();
}

function activeIds() {
  return [...messages].filter(([, s]) => ACTIVE.has(s.status)).map(([id]) => id);
}

function refreshControls() {
  const busy = activeIds().length > 0;
  stopButton.hidden = !busy;
  form.classList.toggle("busy", busy);
}

// --- socket -----------------------------------------------------------------------------
let socket = null;
let retryDelay = 500;
let syncPending = false;

function send(frame) {
  if (socket?.readyState !== WebSocket.OPEN) return false;
  socket.send(JSON.stringify(frame));
  return true;
}

function requestSync(extraIds = []) {
  if (syncPending) return;
  syncPending = send({ type: "sync", messages: [...new Set([...activeIds(), ...extraIds])] });
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}${chat.dataset.socketPath}`);
  socket.addEventListener("open", () => {
    retryDelay = 500;
    statusLine.textContent = "";
    syncPending = false;
    requestSync();
  });
  socket.addEventListener("message", (event) => {
    const frame = JSON.parse(event.data);
    if (frame.type === "delta") applyDelta(frame);
    else if (frame.type === "message") upsertMessage(frame.message);
    else if (frame.type === "sync") {
      syncPending = false;
      frame.messages.forEach(upsertMessage);
    } else if (frame.type === "error") statusLine.textContent = frame.error;
  });
  socket.addEventListener("close", (event) => {
    if (event.code === 4401 || event.code === 4404) {
      statusLine.textContent = "This conversation is not available. Reload the page.";
      return;
    }
    statusLine.textContent = "Reconnecting…";
    setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 8000);
  });
}

// --- composer ---------------------------------------------------------------------------
function autosize() {
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 240)}px`;
}

input.addEventListener("input", autosize);
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

form.addEventListener("submit", (event) => {
  const content = input.value;
  if (!content.trim()) {
    event.preventDefault();
    return;
  }
  if (!chat.dataset.conversation) return; // a new chat starts with a normal form post
  event.preventDefault();
  if (send({ type: "send", content, model: modelSelect?.value || null })) {
    input.value = "";
    autosize();
    statusLine.textContent = "";
  } else {
    statusLine.textContent = "Not connected yet; your message is still here.";
  }
});

stopButton.addEventListener("click", () => {
  if (!send({ type: "stop" })) statusLine.textContent = "Not connected; try again in a moment.";
});

readRenderedMessages();
refreshControls();
scrollToEnd();
autosize();
if (chat.dataset.socketPath) connect();
