// The three views of the page and the tabs that switch them: the address says which one shows (#live, #events,
// #events=EVENT_ID; anything else, #job=ID included, is the upload view), so a reload or a link keeps the view.

const VIEWS = ["upload", "live", "events"];
const listeners = [];

export function currentView() {
  if (location.hash.startsWith("#live")) return "live";
  if (location.hash.startsWith("#events")) return "events";
  return "upload";
}

// `callback(view)` runs now and after every change of view.
export function onView(callback) {
  listeners.push(callback);
  callback(currentView());
}

function apply() {
  const view = currentView();
  for (const name of VIEWS) {
    document.getElementById(`${name}-view`).hidden = name !== view;
    document.getElementById(`tab-${name}`).setAttribute("aria-current", name === view ? "page" : "false");
  }
  for (const callback of listeners) callback(view);
}

window.addEventListener("hashchange", apply);
apply();
