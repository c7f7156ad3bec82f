// The profile page's read-aloud settings: offers the browser's voices for the voice field
// (the server cannot know them) and lets the person hear the choice before saving it.
import { speak, speechAvailable, voicesReady } from "../site/speech.js";

const list = document.getElementById("speech-voices");
const voiceInput = document.getElementById("id_speech_voice");
const rateInput = document.getElementById("id_speech_rate");
const tryButton = document.getElementById("speech-try");

if (speechAvailable && list && voiceInput) {
  voicesReady().then((voices) => {
    list.replaceChildren(
      ...voices.map((voice) => {
        const option = document.createElement("option");
        option.value = voice.name;
        option.label = `${voice.name} (${voice.lang})`;
        return option;
      }),
    );
  });
  tryButton.hidden = false;
  tryButton.addEventListener("click", () =>
    speak("This is how replies will sound when read aloud.", {
      voiceName: voiceInput.value.trim(),
      rate: Number(rateInput.value),
    }),
  );
}
