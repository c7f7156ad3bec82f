// On a phone the top bar's links fold behind a Menu button (static/css/app.css shows them
// inline on wider screens). Without this script the links simply stay in the bar.
const bar = document.querySelector(".topbar");
const toggle = bar?.querySelector(".menu-toggle");
const nav = bar?.querySelector(".topnav");
if (toggle && nav) {
  const show = (open) => {
    toggle.setAttribute("aria-expanded", String(open));
    nav.classList.toggle("open", open);
  };
  bar.classList.add("menu-ready");
  toggle.hidden = false;
  toggle.addEventListener("click", () => show(toggle.getAttribute("aria-expanded") !== "true"));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && nav.classList.contains("open")) {
      show(false);
      toggle.focus();
    }
  });
  document.addEventListener("click", (event) => {
    if (!bar.contains(event.target)) show(false);
  });
}
