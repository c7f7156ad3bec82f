// Forms marked data-confirm ask before they submit (deleting things); every page loads this (base.html).
document.addEventListener("submit", (event) => {
  const question = event.target.dataset?.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});
