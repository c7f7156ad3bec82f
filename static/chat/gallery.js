// The image gallery and the edit page: which provider will receive the prompt (said as the
// model changes), generations under way (polled until done; the server renders each card),
// and the mask painter (brush, eraser, undo) whose strokes become the edit's mask.

const POLL_MS = 1500;

// --- Who receives the prompt ------------------------------------------------------------

const modelSelect = document.getElementById("image-model");
const recipient = document.getElementById("image-recipient");
if (modelSelect && recipient) {
  const say = () => {
    recipient.textContent = modelSelect.selectedOptions[0]?.dataset.provider ?? "";
  };
  modelSelect.addEventListener("change", say);
  say();
}

// --- Generations under way --------------------------------------------------------------

async function poll(card) {
  const url = card.dataset.statusUrl;
  try {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (response.status === 404) return card.remove(); // deleted in another tab
    if (response.ok) {
      const state = await response.json();
      if (state.status !== card.dataset.status || !state.active) {
        const template = document.createElement("template");
        template.innerHTML = state.html.trim();
        const fresh = template.content.firstElementChild;
        card.replaceWith(fresh);
        card = fresh;
      }
      if (!state.active) return;
    }
  } catch {
    // Offline for a moment: asked again below.
  }
  setTimeout(() => poll(card), POLL_MS);
}

for (const card of document.querySelectorAll(".generation[data-status-url]")) {
  setTimeout(() => poll(card), POLL_MS);
}

// --- The mask painter -------------------------------------------------------------------

const form = document.getElementById("mask-form");
const canvas = document.getElementById("mask-canvas");
if (form && canvas) {
  const tools = document.getElementById("mask-tools");
  const size = document.getElementById("mask-size");
  const undoButton = document.getElementById("mask-undo");
  const clearButton = document.getElementById("mask-clear");
  const maskInput = document.getElementById("mask-file");
  const context = canvas.getContext("2d");
  const history = []; // the canvas before each stroke, for Undo
  const HISTORY = 30;
  let painting = null; // the pointer drawing now
  let painted = false;

  canvas.hidden = false;
  tools.hidden = false;

  const tool = () => form.querySelector("[name=tool]:checked").value;
  // The canvas has the image's own pixels; the page shows it scaled.
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [((event.clientX - box.left) * canvas.width) / box.width, ((event.clientY - box.top) * canvas.height) / box.height];
  };
  const brushWidth = () => (Number(size.value) * canvas.width) / canvas.getBoundingClientRect().width;

  function remember() {
    history.push(context.getImageData(0, 0, canvas.width, canvas.height));
    if (history.length > HISTORY) history.shift();
    undoButton.disabled = false;
  }

  function stroke(from, to) {
    context.globalCompositeOperation = tool() === "eraser" ? "destination-out" : "source-over";
    context.strokeStyle = "rgb(255 64 96)"; // opaque, shown see-through by the stylesheet
    context.lineWidth = brushWidth();
    context.lineCap = "round";
    context.lineJoin = "round";
    context.beginPath();
    context.moveTo(...from);
    context.lineTo(...to);
    context.stroke();
  }

  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    remember();
    canvas.setPointerCapture(event.pointerId);
    painting = { id: event.pointerId, last: at(event) };
    stroke(painting.last, painting.last);
    painted = true;
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!painting || event.pointerId !== painting.id) return;
    const point = at(event);
    stroke(painting.last, point);
    painting.last = point;
  });
  const end = (event) => {
    if (painting && event.pointerId === painting.id) painting = null;
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);

  undoButton.addEventListener("click", () => {
    const before = history.pop();
    if (before) context.putImageData(before, 0, 0);
    undoButton.disabled = history.length === 0;
  });
  clearButton.addEventListener("click", () => {
    remember();
    context.clearRect(0, 0, canvas.width, canvas.height);
  });

  function isBlank() {
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
    for (let index = 3; index < pixels.length; index += 4) if (pixels[index]) return false;
    return true;
  }

  // The mask the image APIs take: opaque where the image stays, transparent where painted.
  function maskBlob() {
    const mask = document.createElement("canvas");
    mask.width = canvas.width;
    mask.height = canvas.height;
    const out = mask.getContext("2d");
    out.fillStyle = "#000";
    out.fillRect(0, 0, mask.width, mask.height);
    out.globalCompositeOperation = "destination-out";
    out.drawImage(canvas, 0, 0);
    return new Promise((resolve) => mask.toBlob(resolve, "image/png"));
  }

  let ready = false;
  form.addEventListener("submit", async (event) => {
    if (ready || !painted || isBlank()) return; // nothing painted: the whole image may change
    event.preventDefault();
    const files = new DataTransfer();
    files.items.add(new File([await maskBlob()], "mask.png", { type: "image/png" }));
    maskInput.files = files.files;
    ready = true;
    form.requestSubmit();
  });
}
