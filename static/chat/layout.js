// The chat page's layout and keyboard: the conversation drawer on a phone, the composer's
// folded model and persona pickers, and the keyboard shortcuts with their help sheet.
// Not the socket or the messages (chat.js). Which layout applies is the stylesheet's
// decision (static/css/app.css, "Phone"): the drawer is in use while its button shows.

const drawer = document.getElementById("conversation-drawer");
const drawerToggle = document.querySelector(".drawer-toggle");
const backdrop = document.querySelector(".drawer-backdrop");
const composer = document.querySelector(".composer");
const input = document.getElementById("composer-input");
const stopButton = document.getElementById("stop-button");
const search = document.getElementById("search-input");
const help = document.getElementById("shortcuts-help");
const SWIPE_PX = 60; // a leftward swipe this long closes the drawer

// --- the conversation drawer ------------------------------------------------------------
const drawerInUse = () => getComputedStyle(drawerToggle).display !== "none";
const drawerOpen = () => drawerToggle.getAttribute("aria-expanded") === "true";
// While the drawer is open the rest of the page sits behind it, out of reach of Tab.
const behindDrawer = [document.querySelector(".topbar"), document.querySelector(".chat")];

function setDrawer(open) {
  document.body.classList.toggle("drawer-open", open);
  drawerToggle.setAttribute("aria-expanded", String(open));
  backdrop.hidden = !open;
  for (const el of behindDrawer) if (el) el.inert = open;
  // Back to the button when closed: a tap beside the drawer has already sent the focus nowhere.
  (open ? drawer.querySelector("a, button, input") : drawerToggle)?.focus();
}

drawerToggle.addEventListener("click", () => setDrawer(!drawerOpen()));
backdrop.addEventListener("click", () => setDrawer(false));
drawer.addEventListener("click", (event) => {
  if (drawerOpen() && event.target.closest("a")) setDrawer(false); // a conversation was chosen
});
window.addEventListener("resize", () => {
  if (drawerOpen() && !drawerInUse()) setDrawer(false); // now wide enough for the sidebar
});

let touchStart = null;
drawer.addEventListener("touchstart", (event) => {
  const { clientX, clientY } = event.touches[0];
  touchStart = { x: clientX, y: clientY };
}, { passive: true });
drawer.addEventListener("touchend", (event) => {
  if (!touchStart) return;
  const { clientX, clientY } = event.changedTouches[0];
  const dx = clientX - touchStart.x;
  const dy = clientY - touchStart.y;
  touchStart = null;
  if (drawerOpen() && dx < -SWIPE_PX && Math.abs(dx) > Math.abs(dy)) setDrawer(false);
}, { passive: true });

// --- the composer's pickers, folded on a phone ------------------------------------------
const optionsToggle = composer.querySelector(".options-toggle");
const pickers = [...composer.querySelectorAll(".composer-options select")];

function showChosenOptions() {
  const chosen = pickers.map((select) => select.selectedOptions[0]).filter((option) => option?.value);
  optionsToggle.querySelector(".options-summary").textContent = chosen.map((option) => option.text).join(" · ");
}

optionsToggle.addEventListener("click", () => {
  const open = !composer.classList.contains("options-open");
  composer.classList.toggle("options-open", open);
  optionsToggle.setAttribute("aria-expanded", String(open));
  if (open) pickers[0]?.focus();
});
for (const select of pickers) select.addEventListener("change", showChosenOptions);

// --- keyboard shortcuts -----------------------------------------------------------------
const apple = /Mac|iPhone|iPad/.test(navigator.platform);
const MOD = apple ? "⌘" : "Ctrl";
const mod = (event) => (apple ? event.metaKey : event.ctrlKey);
const typing = (event) => event.target.closest?.("input, textarea, select, [contenteditable]");

function searchConversations() {
  if (drawerInUse() && !drawerOpen()) setDrawer(true);
  search.focus();
  search.select();
}

// Chosen not to clash with the browsers' own; Enter and Shift+Enter are chat.js's, listed here.
const SHORTCUTS = [
  {
    keys: [MOD, "Shift", "O"],
    does: "New chat",
    matches: (e) => mod(e) && e.shiftKey && e.key.toLowerCase() === "o",
    run: () => location.assign(drawer.querySelector(".new-chat").href),
  },
  {
    keys: [MOD, "K"],
    does: "Search conversations",
    matches: (e) => mod(e) && !e.shiftKey && e.key.toLowerCase() === "k",
    run: searchConversations,
  },
  {
    keys: ["Shift", "Esc"],
    does: "Go to the message box",
    matches: (e) => e.shiftKey && e.key === "Escape",
    run: () => input.focus(),
  },
  {
    keys: ["Esc"],
    does: "Stop the reply being written",
    matches: (e) => !e.shiftKey && e.key === "Escape" && !stopButton.hidden,
    run: () => stopButton.click(),
  },
  { keys: ["Enter"], does: "Send the message" },
  { keys: ["Shift", "Enter"], does: "New line in the message" },
  {
    keys: ["?"],
    does: "Show these shortcuts",
    matches: (e) => e.key === "?" && !mod(e) && !typing(e),
    run: () => help.showModal(),
  },
];

document.addEventListener("keydown", (event) => {
  if (help.open || event.defaultPrevented || event.isComposing) return; // the sheet closes itself on Esc
  if (event.key === "Escape" && drawerOpen()) {
    setDrawer(false);
    return;
  }
  const shortcut = SHORTCUTS.find(({ matches }) => matches?.(event));
  if (!shortcut) return;
  event.preventDefault();
  shortcut.run();
});

function listShortcuts() {
  const list = help.querySelector(".shortcut-list");
  for (const { keys, does } of SHORTCUTS) {
    const row = document.createElement("div");
    const combo = document.createElement("dt");
    keys.forEach((key, i) => {
      const kbd = document.createElement("kbd");
      kbd.textContent = key;
      combo.append(...(i ? [" + ", kbd] : [kbd]));
    });
    const meaning = document.createElement("dd");
    meaning.textContent = does;
    row.append(combo, meaning);
    list.append(row);
  }
}

document.querySelector(".shortcuts-button").addEventListener("click", () => help.showModal());
listShortcuts();
showChosenOptions();
