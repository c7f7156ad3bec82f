// allauth's passkey scripts (mfa/js/webauthn.js) only log a failed ceremony to the console:
// say in the page's status line what happened, in words a person can act on.
const REASONS = {
  NotAllowedError: "No passkey was used: the browser's prompt was closed or timed out. Try again.",
  InvalidStateError: "This device already holds a passkey for your account.",
  SecurityError: "Passkeys work only over HTTPS (or on localhost) at this site's own address.",
  NotSupportedError: "This browser or device cannot make a passkey.",
};

document.addEventListener("allauth.error", (event) => {
  const status = document.querySelector(".passkey-status");
  if (!status) return;
  event.preventDefault();
  const error = event.detail.exception;
  status.textContent = REASONS[error?.name] || `The passkey could not be used: ${error?.message || error}`;
});
