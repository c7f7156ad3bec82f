// While an export is being built, show its progress and reload once it is ready.
const box = document.getElementById("export");
if (box && (box.dataset.status === "queued" || box.dataset.status === "building")) {
  const bar = box.querySelector("progress");
  const label = box.querySelector(".export-state");
  const poll = async () => {
    const response = await fetch(box.dataset.statusUrl, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const state = await response.json();
    if (state.download_url || state.status === "failed") {
      location.reload();
      return;
    }
    bar.value = state.progress;
    label.textContent = `Preparing… ${state.progress}%`;
    setTimeout(poll, 1000);
  };
  setTimeout(poll, 700);
}
