// Registers the app shell's service worker (localai_site/app_shell.py), served at the app's
// root so that its scope is the whole app; it makes the instance installable and shows the
// offline page when the instance can't be reached.
const worker = document.currentScript.dataset.worker;
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register(worker).catch((error) => console.warn("The offline page is not available:", error));
}
