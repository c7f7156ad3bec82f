// Voice on the chat page: recording a message with the microphone (its words land in the
// message box, to read over before sending) and reading a finished reply aloud.
// Not the socket or the messages (chat.js), nor the layout (layout.js). The recording is
// transcribed on the instance (chat/services/voice.py), or by the chosen cloud model's provider
// when the person ticks "Transcribe speech with …", and deleted there once transcribed.
import { speak, speechAvailable, speechStop } from "../site/speech.js";

const micButton = document.getElementById("voice-button");
const panel = document.getElementById("voice-panel");
const level = document.getElementById("voice-level");
const timer = document.getElementById("voice-timer");
const stopButton = document.getElementById("voice-stop");
const cancelButton = document.getElementById("voice-cancel");
const input = document.getElementById("composer-input");
const statusLine = document.getElementById("composer-status");
const list = document.getElementById("messages");
const modelSelect = document.getElementById("model-select");
const cloudChoice = document.getElementById("voice-cloud");
const cloudInput = document.getElementById("voice-cloud-input");
const keepInput = document.getElementById("voice-keep");
const csrfToken = document.querySelector(".composer [name=csrfmiddlewaretoken]")?.value;

const POLL_MS = 500;
const GIVE_UP_MS = 5 * 60_000; // a transcription waits its turn behind local replies
const maxSeconds = Number(micButton?.dataset.maxSeconds) || 120;

// --- recording --------------------------------------------------------------------------
let recording = null; // {recorder, stream, audio, chunks, startedAt, tick, frame, cancelled}

const say = (text) => (statusLine.textContent = text);
const clock = (seconds) => `${Math.floor(seconds / 60)}:${String(Math.floor(seconds % 60)).padStart(2, "0")}`;

function showLevel(analyser) {
  const samples = new Float32Array(analyser.fftSize);
  const draw = () => {
    analyser.getFloatTimeDomainData(samples);
    const rms = Math.sqrt(samples.reduce((sum, s) => sum + s * s, 0) / samples.length);
    level.value = Math.min(1, rms * 5); // speech sits around 0.05–0.2
    recording.frame = requestAnimationFrame(draw);
  };
  draw();
}

async function recordStart() {
  let stream;
  micButton.disabled = true; // while the browser asks for the microphone
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch {
    say("The microphone is not available: allow this site to use it and try again.");
    return;
  } finally {
    micButton.disabled = false;
  }
  const recorder = new MediaRecorder(stream);
  const audio = new AudioContext();
  const analyser = audio.createAnalyser();
  analyser.fftSize = 1024;
  audio.createMediaStreamSource(stream).connect(analyser);
  recording = { recorder, stream, audio, chunks: [], startedAt: performance.now(), cancelled: false };
  recorder.addEventListener("dataavailable", (event) => event.data.size && recording.chunks.push(event.data));
  recorder.addEventListener("stop", recordEnded);
  recorder.start(250);
  showLevel(analyser);
  recording.tick = setInterval(() => {
    const seconds = (performance.now() - recording.startedAt) / 1000;
    timer.textContent = clock(seconds);
    if (seconds >= maxSeconds) recordStop(false);
  }, 200);
  timer.textContent = clock(0);
  panel.hidden = false;
  micButton.setAttribute("aria-pressed", "true");
  say("Recording… press Stop when you are done.");
  stopButton.focus();
}

function recordStop(cancelled) {
  if (!recording || recording.recorder.state === "inactive") return;
  recording.cancelled = cancelled;
  recording.recorder.stop();
}

function recordEnded() {
  const { recorder, stream, audio, chunks, tick, frame, cancelled } = recording;
  recording = null;
  clearInterval(tick);
  cancelAnimationFrame(frame);
  stream.getTracks().forEach((track) => track.stop());
  audio.close();
  panel.hidden = true;
  level.value = 0;
  micButton.setAttribute("aria-pressed", "false");
  micButton.focus();
  if (cancelled) return say("Recording cancelled.");
  const blob = new Blob(chunks, { type: recorder.mimeType });
  if (keepInput.checked) {
    // Kept as an attachment of the message (attachments.js stores it); the copy sent to be
    // transcribed is deleted once its words are out, as any other.
    const extension = recorder.mimeType.includes("ogg") ? "ogg" : "webm";
    const file = new File([blob], `Voice recording.${extension}`, { type: recorder.mimeType.split(";")[0] });
    input.form.dispatchEvent(new CustomEvent("composer:attach", { detail: { files: [file] } }));
  }
  transcribe(blob);
}

// --- transcribing -----------------------------------------------------------------------
async function transcribe(blob) {
  micButton.disabled = true;
  say("Transcribing…");
  try {
    const body = new FormData();
    body.append("audio", blob, "recording");
    if (micButton.dataset.conversation) body.append("conversation", micButton.dataset.conversation);
    if (!cloudChoice.hidden && cloudInput.checked) body.append("cloud_model", modelSelect.value);
    const response = await fetch(micButton.dataset.uploadUrl, {
      method: "POST",
      body,
      headers: { "X-CSRFToken": csrfToken },
    });
    const answer = await response.json();
    if (!response.ok) return say(answer.error);
    const result = await resultOf(answer.status_url);
    if (result.state !== "done") return say(result.error);
    insertText(result.text);
    say("Your words are in the message box: read them over, then send.");
  } catch {
    say("The recording could not be transcribed; try again.");
  } finally {
    micButton.disabled = false;
  }
}

async function resultOf(url) {
  const giveUpAt = performance.now() + GIVE_UP_MS;
  while (performance.now() < giveUpAt) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`status ${response.status}`);
    const result = await response.json();
    if (result.state !== "pending") return result;
  }
  return { state: "refused", error: "Transcription is taking too long; try again later." };
}

function insertText(text) {
  const before = input.value.trimEnd();
  input.value = before ? `${before} ${text}` : text;
  input.dispatchEvent(new Event("input", { bubbles: true })); // chat.js sizes the box to fit
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}

// The provider's transcription is offered only while a model of a provider that has one is
// chosen; left unticked (the default), recordings are transcribed here.
function cloudChoiceShow() {
  const option = modelSelect?.selectedOptions[0];
  cloudChoice.hidden = !option?.dataset.transcribes;
  if (!cloudChoice.hidden) document.getElementById("voice-cloud-provider").textContent = option.dataset.providerName;
}

if (micButton && navigator.mediaDevices?.getUserMedia && "MediaRecorder" in window) {
  micButton.hidden = false;
  cloudChoiceShow();
  modelSelect?.addEventListener("change", cloudChoiceShow);
  micButton.setAttribute("aria-pressed", "false");
  micButton.addEventListener("click", () => (recording ? recordStop(false) : recordStart()));
  stopButton.addEventListener("click", () => recordStop(false));
  cancelButton.addEventListener("click", () => recordStop(true));
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.stopPropagation(); // Esc here cancels the recording, not the reply (layout.js)
      recordStop(true);
    }
  });
}

// --- reading a reply aloud --------------------------------------------------------------
let speaking = null; // the button of the reply being read

function speakingEnded(button) {
  button.textContent = "Read aloud";
  if (speaking === button) speaking = null;
}

if (speechAvailable && list && micButton) {
  document.body.classList.add("can-speak"); // shows the replies' buttons (app.css)
  list.addEventListener("click", async (event) => {
    const button = event.target.closest(".action-speak");
    if (!button) return;
    const previous = speaking;
    if (previous) {
      speechStop();
      speakingEnded(previous);
      if (previous === button) return; // pressed again: stop
    }
    speaking = button;
    button.textContent = "Stop reading";
    await speak(button.closest(".message").querySelector(".message-body").innerText.trim(), {
      voiceName: micButton.dataset.speechVoice,
      rate: Number(micButton.dataset.speechRate),
    });
    if (speaking === button) speakingEnded(button);
  });
}
