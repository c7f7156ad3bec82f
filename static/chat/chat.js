// The chat page's live part: one socket per conversation, replies applied by offset.
// Offsets count UTF-16 code units, like String.length, so a delta is placed exactly
// once whatever arrives twice, late or after a reconnect. How a message is shown is the
// server's (chat/display.py): a new message arrives as its bubble, rendered and escaped by
// the page's own template, and a finished reply as HTML the server made from Markdown and
// sanitised; nothing else is ever set as HTML. This script only puts those in place.

const chat = document.querySelector(".chat");
const list = document.getElementById("messages");
const form = document.querySelector(".composer");
const input = document.getElementById("composer-input");
const modelSelect = document.getElementById("model-select");
const stopButton = document.getElementById("stop-button");
const statusLine = document.getElementById("composer-status");
const destination = document.getElementById("destination");
const replyAnnouncer = document.getElementById("reply-announcer");

const ACTIVE = new Set(["queued", "streaming"]);
const FINAL_CLOSE_CODES = new Set(chat.dataset.finalCloseCodes?.split(" ").map(Number)); // do not reconnect
const messages = new Map(); // id -> {text, status, role, el}

// --- rendering --------------------------------------------------------------------------
function addCodeCopyButtons(root) {
  for (const pre of root.querySelectorAll("pre")) {
    if (pre.querySelector(".code-copy")) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "code-copy";
    button.textContent = "Copy code";
    button.addEventListener("click", () => copyText(pre.querySelector("code")?.textContent ?? pre.textContent, button));
    pre.prepend(button);
  }
}

function track(el) {
  const id = Number(el.dataset.messageId);
  const body = el.querySelector(".message-body");
  const state = { text: el.dataset.text ?? body.textContent, status: el.dataset.status, role: roleOf(el), el };
  messages.set(id, state);
  addCodeCopyButtons(body);
  return state;
}

function roleOf(el) {
  return el.classList.contains("message-user") ? "user" : "assistant";
}

function readRenderedMessages(root = list) {
  for (const el of root.querySelectorAll(".message")) track(el);
}

function nearBottom() {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
}

function scrollToEnd() {
  list.scrollTop = list.scrollHeight;
}

function insertBubble(m) {
  list.querySelector(".welcome")?.remove();
  const holder = document.createElement("template");
  holder.innerHTML = m.bubble; // our own server-rendered, escaped template (chat/message.html)
  const el = holder.content.firstElementChild;
  list.append(el);
  track(el);
}

function setText(state, text) {
  state.text = text;
  delete state.el.dataset.text;
  const body = state.el.querySelector(".message-body");
  body.classList.remove("markdown");
  body.textContent = text; // plain text while it streams: model output is untrusted
}

function setHtml(state, text, html) {
  state.text = text;
  state.el.dataset.text = text; // the Markdown source, for Copy and for edits
  const body = state.el.querySelector(".message-body");
  body.classList.add("markdown");
  body.innerHTML = html; // made from Markdown and sanitised by the server (localai_site/core/markdown.py)
  addCodeCopyButtons(body);
}

function setMeta(state, display) {
  const meta = state.el.querySelector(".message-meta");
  if (!meta) return;
  for (const part of ["model", "status", "stats", "context"]) {
    meta.querySelector(`.meta-${part}`).textContent = display[part];
  }
}

function setStatus(state, status) {
  state.status = status;
  state.el.dataset.status = status;
  state.el.className = state.el.className.replace(/\bstatus-\S+/g, "").trim() + ` status-${status}`;
}

function updateBubble(state, m) {
  if (ACTIVE.has(state.status) && !ACTIVE.has(m.status)) replyAnnouncer.textContent = m.display.announcement;
  if (!ACTIVE.has(m.status) && m.bubble.includes("message-attachments") && !state.el.querySelector(".message-attachments")) {
    // An image made with /image arrives with the finished reply: its whole bubble replaces the old one.
    const holder = document.createElement("template");
    holder.innerHTML = m.bubble; // our own server-rendered, escaped template (chat/message.html)
    const el = holder.content.firstElementChild;
    state.el.replaceWith(el);
    track(el);
    return;
  }
  if (m.display.html != null) setHtml(state, m.content, m.display.html);
  // While streaming, keep whichever text is further along; a finished one is final.
  else if (!ACTIVE.has(m.status) || m.content.length >= state.text.length) setText(state, m.content);
  setStatus(state, m.status);
  setMeta(state, m.display);
}

function upsertMessage(m) {
  const stick = nearBottom();
  const state = messages.get(m.id);
  if (state) updateBubble(state, m);
  else insertBubble(m);
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

function removeMessages(ids) {
  for (const id of ids) {
    messages.get(id)?.el.remove();
    messages.delete(id);
  }
  refreshControls();
}

function activeIds() {
  return [...messages].filter(([, s]) => ACTIVE.has(s.status)).map(([id]) => id);
}

function lastMessageId() {
  return Math.max(0, ...messages.keys());
}

function refreshControls() {
  const busy = activeIds().length > 0;
  stopButton.hidden = !busy;
  form.classList.toggle("busy", busy);
  const lastId = lastMessageId();
  for (const [id, state] of messages) {
    const regenerate = state.el.querySelector(".action-regenerate");
    if (regenerate) regenerate.hidden = busy || id !== lastId;
    const edit = state.el.querySelector(".action-edit");
    if (edit) edit.hidden = busy;
  }
}

// --- where the words go -----------------------------------------------------------------
function showDestination() {
  const option = modelSelect?.selectedOptions[0];
  if (!option) return;
  const local = option.dataset.local === "1";
  destination.className = `destination ${local ? "local" : "cloud"}`;
  destination.textContent = local ? "Stays on this instance" : `Will be sent to ${option.dataset.providerName}`;
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

function showError(frame) {
  statusLine.replaceChildren(frame.error);
  form.dispatchEvent(new CustomEvent("composer:refused", { detail: frame }));
  if (frame.code === "stays_local") {
    const link = document.createElement("a");
    link.className = "button";
    const url = new URL(chat.dataset.newChatUrl, location.href);
    url.searchParams.set("model", modelSelect.value);
    link.href = url;
    link.textContent = "Start a new cloud chat";
    statusLine.append(" ", link);
  }
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
    else if (frame.type === "removed") removeMessages(frame.ids);
    else if (frame.type === "sync") {
      syncPending = false;
      frame.messages.forEach(upsertMessage);
    } else if (frame.type === "error") showError(frame);
  });
  socket.addEventListener("close", (event) => {
    if (FINAL_CLOSE_CODES.has(event.code)) {
      statusLine.textContent = "This conversation is not available. Reload the page.";
      return;
    }
    statusLine.textContent = "Reconnecting…";
    setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 8000);
  });
}

// --- older messages ---------------------------------------------------------------------
function watchOlder() {
  const sentinel = list.querySelector(".older-sentinel");
  if (!sentinel) return;
  const observer = new IntersectionObserver(async (entries) => {
    if (!entries.some((e) => e.isIntersecting)) return;
    observer.disconnect();
    const response = await fetch(`${chat.dataset.olderUrl}?before=${sentinel.dataset.before}`);
    if (!response.ok) return;
    const holder = document.createElement("div");
    holder.innerHTML = await response.text(); // our own server-rendered, escaped template
    const heightBefore = list.scrollHeight;
    const older = [...holder.children];
    sentinel.after(...older);
    older.forEach((el) => el.classList.contains("message") && track(el));
    if (response.headers.get("X-Has-Older") === "1" && older.length) {
      sentinel.dataset.before = older[0].dataset.messageId;
      list.prepend(sentinel);
      watchOlder();
    } else sentinel.remove();
    list.scrollTop += list.scrollHeight - heightBefore; // keep what the reader was looking at
    refreshControls();
  });
  observer.observe(sentinel);
}

// --- actions on messages ----------------------------------------------------------------
async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => (button.textContent = label), 1200);
  } catch {
    statusLine.textContent = "The browser did not allow copying.";
  }
}

function startEdit(state, id) {
  const body = state.el.querySelector(".message-body");
  const editor = document.createElement("form");
  editor.className = "edit-form";
  editor.innerHTML =
    '<textarea rows="3" aria-label="Edit your message"></textarea><div class="edit-bar">' +
    '<button type="button" class="link cancel">Cancel</button><button class="primary">Send again</button></div>';
  editor.querySelector("textarea").value = state.text;
  body.hidden = true;
  body.after(editor);
  editor.querySelector("textarea").focus();
  const close = () => {
    editor.remove();
    body.hidden = false;
  };
  editor.querySelector(".cancel").addEventListener("click", close);
  editor.addEventListener("submit", (event) => {
    event.preventDefault();
    const content = editor.querySelector("textarea").value;
    if (!content.trim()) return;
    if (send({ type: "edit", message: id, content })) {
      setText(state, content.trim());
      close();
    } else statusLine.textContent = "Not connected; try again in a moment.";
  });
}

list.addEventListener("click", (event) => {
  const button = event.target.closest("button");
  const el = event.target.closest(".message");
  if (!button || !el) return;
  const id = Number(el.dataset.messageId);
  const state = messages.get(id);
  if (button.classList.contains("action-copy")) copyText(state.text, button);
  else if (button.classList.contains("action-regenerate")) send({ type: "regenerate", message: id });
  else if (button.classList.contains("action-edit")) startEdit(state, id);
});

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
  const uploads = new FormData(form).getAll("uploads"); // stored files (attachments.js)
  if (send({ type: "send", content, model: modelSelect?.value || null, uploads })) {
    input.value = "";
    autosize();
    statusLine.textContent = "";
    form.dispatchEvent(new CustomEvent("composer:sent"));
  } else {
    statusLine.textContent = "Not connected yet; your message is still here.";
  }
});

stopButton.addEventListener("click", () => {
  if (!send({ type: "stop" })) statusLine.textContent = "Not connected; try again in a moment.";
});

modelSelect?.addEventListener("change", showDestination);
document.querySelector(".rename-form input")?.addEventListener("change", (event) => event.target.form.submit());

readRenderedMessages();
refreshControls();
showDestination();
scrollToEnd();
autosize();
watchOlder();
if (chat.dataset.socketPath) connect();
