// Files attached in the composer: by the attach button, by paste, by drag and drop. Each
// file is stored as soon as it is chosen (chat:upload_new, which checks and re-encodes it)
// and shows as a chip with its progress; a stored file's id rides in a hidden "uploads"
// field, which chat.js sends with the message (the new-chat form posts it). A message
// waits until its files are stored. Not the socket or the messages (chat.js), nor voice
// input (voice.js).

const chat = document.querySelector(".chat");
const form = document.querySelector(".composer");
const input = document.getElementById("composer-input");
const list = document.getElementById("composer-attachments");
const button = document.getElementById("attach-button");
const picker = document.getElementById("attach-input");
const statusLine = document.getElementById("composer-status");
const messageList = document.getElementById("messages");
const csrfToken = form.querySelector("[name=csrfmiddlewaretoken]").value;
const MAX_FILES = Number(button.dataset.maxFiles);

let sendWhenStored = false;
let lastSent = []; // chips sent with the last message, back in place if the server refuses it

const chips = () => [...list.children];
const inState = (state) => chips().filter((chip) => chip.dataset.state === state);

function element(tag, className, text) {
  const el = document.createElement(tag);
  el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function refresh() {
  list.hidden = list.children.length === 0;
  form.classList.toggle("has-attachments", !list.hidden);
}

function removeChip(chip) {
  chip.xhr?.abort();
  if (chip.dataset.deleteUrl) {
    // Stored already: deleted, not left behind unsent (the page goes on whatever it answers).
    fetch(chip.dataset.deleteUrl, { method: "POST", headers: { "X-CSRFToken": csrfToken, Accept: "application/json" } });
  }
  chip.remove();
  refresh();
  input.focus();
}

function chipFor(file) {
  const chip = element("li", "attachment-chip");
  chip.dataset.state = "uploading";
  const label = file.type.startsWith("image/") ? "IMG" : file.type.startsWith("audio/") ? "REC" : file.type === "application/pdf" ? "PDF" : "FILE";
  const kind = element("span", "chip-kind", label);
  kind.setAttribute("aria-hidden", "true");
  const text = element("span", "chip-text");
  text.append(element("span", "chip-name", file.name || "pasted file"), element("span", "chip-size", "Uploading…"));
  const progress = element("progress", "chip-progress");
  progress.max = 1;
  progress.value = 0;
  progress.setAttribute("aria-label", `Uploading ${file.name}`);
  const remove = element("button", "chip-remove", "×");
  remove.type = "button";
  remove.title = "Remove";
  remove.setAttribute("aria-label", `Remove ${file.name}`);
  remove.addEventListener("click", () => removeChip(chip));
  chip.append(kind, text, progress, remove);
  return chip;
}

function stored(chip, answer) {
  chip.dataset.state = "stored";
  chip.dataset.deleteUrl = answer.delete_url;
  chip.querySelector(".chip-progress").remove();
  chip.querySelector(".chip-name").textContent = answer.name;
  chip.querySelector(".chip-size").textContent = answer.size;
  if (answer.image_url) {
    const thumb = element("img", "chip-thumb");
    thumb.src = answer.image_url; // the stored copy: upright, without its metadata
    thumb.alt = "";
    chip.querySelector(".chip-kind").replaceWith(thumb);
  }
  const field = element("input", "");
  field.type = "hidden";
  field.name = "uploads";
  field.value = answer.id;
  chip.append(field);
}

function failed(chip, error) {
  chip.dataset.state = "failed";
  chip.querySelector(".chip-progress")?.remove();
  const size = chip.querySelector(".chip-size");
  size.textContent = error;
  size.className = "chip-error";
  size.setAttribute("role", "alert");
  if (sendWhenStored) {
    sendWhenStored = false;
    statusLine.textContent = "Not sent: a file could not be stored.";
  }
}

function settled() {
  if (sendWhenStored && inState("uploading").length === 0) {
    sendWhenStored = false;
    form.requestSubmit();
  }
}

function upload(chip, file) {
  const body = new FormData();
  body.append("file", file, file.name || "pasted-file");
  if (chat.dataset.conversation) body.append("conversation", chat.dataset.conversation);
  const xhr = new XMLHttpRequest(); // fetch() cannot report an upload's progress
  chip.xhr = xhr;
  xhr.open("POST", button.dataset.uploadUrl);
  xhr.setRequestHeader("X-CSRFToken", csrfToken);
  xhr.responseType = "json";
  xhr.upload.addEventListener("progress", (event) => {
    if (!event.lengthComputable) return;
    chip.querySelector(".chip-progress").value = event.loaded / event.total;
    chip.querySelector(".chip-size").textContent = `Uploading ${Math.floor((100 * event.loaded) / event.total)} %`;
  });
  xhr.addEventListener("load", () => {
    chip.xhr = null;
    if (xhr.status === 201) stored(chip, xhr.response);
    else failed(chip, xhr.response?.error || `Could not be stored (HTTP ${xhr.status}).`);
    settled();
  });
  xhr.addEventListener("error", () => {
    chip.xhr = null;
    failed(chip, "The upload broke off: check the connection, then attach it again.");
    settled();
  });
  xhr.send(body);
}

function attach(files) {
  lastSent = [];
  for (const file of files) {
    if (list.children.length >= MAX_FILES) {
      statusLine.textContent = `A message can carry at most ${MAX_FILES} files.`;
      break;
    }
    const chip = chipFor(file);
    list.append(chip);
    upload(chip, file);
  }
  refresh();
}

// A recording the person chose to keep (voice.js) is attached as any file is.
form.addEventListener("composer:attach", (event) => attach(event.detail.files));

// Chips the page came with (an image sent here from the gallery) are stored already.
for (const chip of chips()) chip.querySelector(".chip-remove").addEventListener("click", () => removeChip(chip));

// --- the three ways in ------------------------------------------------------------------
button.hidden = false;
button.addEventListener("click", () => picker.click());
picker.addEventListener("change", () => {
  attach([...picker.files]);
  picker.value = "";
});

input.addEventListener("paste", (event) => {
  const files = [...(event.clipboardData?.files ?? [])];
  if (!files.length) return; // text is pasted as usual
  event.preventDefault();
  attach(files);
});

const carriesFiles = (event) => event.dataTransfer?.types.includes("Files");
form.addEventListener("dragover", (event) => {
  if (!carriesFiles(event)) return;
  event.preventDefault();
  form.classList.add("dropping");
});
form.addEventListener("dragleave", (event) => {
  if (!form.contains(event.relatedTarget)) form.classList.remove("dropping");
});
form.addEventListener("drop", (event) => {
  form.classList.remove("dropping");
  if (!carriesFiles(event)) return;
  event.preventDefault();
  attach([...event.dataTransfer.files]);
});

// --- sending ----------------------------------------------------------------------------
// Capture: runs before chat.js's own listener, which sends at once.
form.addEventListener(
  "submit",
  (event) => {
    const hold = (words) => {
      event.preventDefault();
      event.stopImmediatePropagation();
      statusLine.textContent = words;
    };
    if (inState("failed").length) hold("Remove the files that could not be stored first (×).");
    else if (inState("uploading").length && input.value.trim()) {
      sendWhenStored = true;
      hold("Sending once the files are stored…");
    }
  },
  true,
);

// chat.js sent the message with the ids: the chips go, and come back if it is refused.
form.addEventListener("composer:sent", () => {
  lastSent = chips();
  lastSent.forEach((chip) => chip.remove());
  refresh();
});
form.addEventListener("composer:refused", () => {
  list.append(...lastSent);
  lastSent = [];
  refresh();
});
// The message arrived: those files are in it for good.
const isOwnMessage = (node) => node.classList?.contains("message-user");
new MutationObserver((records) => {
  if (records.some((record) => [...record.addedNodes].some(isOwnMessage))) lastSent = [];
}).observe(messageList, { childList: true });
