// gq console: times in the browser's zone, a refresh that replaces the page's content in
// place (no flash) and can be paused, and "/" to search by id. The pages work without it.
"use strict";

function localTimes(root) {
  const format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
  });
  for (const el of root.querySelectorAll("time[datetime]")) {
    const at = new Date(el.getAttribute("datetime"));
    if (!isNaN(at)) el.textContent = format.format(at);
  }
}

function timeZoneField(root) {
  // datetime-local fields are in the browser's zone: tell gq its offset, in minutes east of UTC.
  for (const field of root.querySelectorAll('input[name="tz"]')) {
    field.value = String(-new Date().getTimezoneOffset());
  }
}

function busy() {
  // Never replace what a person is typing in, or a page with a form in use.
  const el = document.activeElement;
  return el && (el.tagName === "INPUT" || el.tagName === "SELECT" || el.tagName === "TEXTAREA");
}

function startRefresh() {
  const seconds = Number(document.body.dataset.refresh || 0);
  const button = document.getElementById("pause");
  if (!seconds || !button) return;
  let paused = sessionStorage.getItem("gq-paused") === "1";
  const show = () => {
    button.hidden = false;
    button.setAttribute("aria-pressed", String(paused));
    button.textContent = paused ? "Resume refresh" : "Pause refresh";
  };
  button.addEventListener("click", () => {
    paused = !paused;
    sessionStorage.setItem("gq-paused", paused ? "1" : "0");
    show();
  });
  show();
  setInterval(async () => {
    if (paused || document.hidden || busy()) return;
    try {
      const answer = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
      if (!answer.ok || answer.redirected) return;
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = page.getElementById("main");
      const main = document.getElementById("main");
      if (!fresh || !main) return;
      localTimes(fresh);
      timeZoneField(fresh);
      if (fresh.innerHTML !== main.innerHTML) main.replaceChildren(...fresh.childNodes);
    } catch (e) {
      // gq restarting, or the network: the next turn tries again.
    }
  }, seconds * 1000);
}

document.addEventListener("keydown", (event) => {
  if (event.key !== "/" || busy()) return;
  const search = document.getElementById("id-search");
  if (search) {
    event.preventDefault();
    search.focus();
  } else {
    location.href = "/ui/jobs";
  }
});

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  timeZoneField(document);
  startRefresh();
});
