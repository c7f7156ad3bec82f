// Reading text aloud with the browser's own speech synthesis: nothing is sent anywhere.
// Shared by the chat page (static/chat/voice.js, a reply's "Read aloud") and the profile
// page (static/accounts/speech_settings.js, choosing the voice and trying it).

export const speechAvailable = "speechSynthesis" in window && "SpeechSynthesisUtterance" in window;

// The browser's voices; some browsers list them only after "voiceschanged".
export function voicesReady() {
  const now = speechSynthesis.getVoices();
  if (now.length) return Promise.resolve(now);
  return new Promise((resolve) => {
    speechSynthesis.addEventListener("voiceschanged", () => resolve(speechSynthesis.getVoices()), { once: true });
    setTimeout(() => resolve(speechSynthesis.getVoices()), 1500); // some never fire it
  });
}

// Speaks `text` with the voice named `voiceName` (the browser's default when it has none by
// that name) at `rate`; resolves when it ends or is stopped. One text at a time.
export async function speak(text, { voiceName = "", rate = 1 } = {}) {
  speechSynthesis.cancel();
  const utterance = new SpeechSynthesisUtterance(text);
  const voice = voiceName && (await voicesReady()).find((v) => v.name === voiceName);
  if (voice) utterance.voice = voice;
  utterance.rate = Number.isFinite(rate) && rate > 0 ? rate : 1;
  return new Promise((resolve) => {
    utterance.addEventListener("end", resolve);
    utterance.addEventListener("error", resolve);
    speechSynthesis.speak(utterance);
  });
}

export function speechStop() {
  speechSynthesis.cancel();
}
