// The "Events" view: the key's events of every camera and job (GET v1/events, newest first, filtered, a page at a
// time), each with its thumbnail; the selected one's clip plays above its score curve, whose cursor follows the
// video (click the curve to seek). Verdicts by button or key; the keys (j/k, space, t/f, arrows) are listed on the
// page and in docs/review.md, and never act while the focus is in a field.
//
// Pictures and clips are fetched with the API key and shown from memory (an <img> or <video> cannot send a header);
// without a key the clip plays from its URL, so the browser streams it and seeks with range requests.

import { fetchObjectUrl, getText, probe, relative, saveKey, savedKey, sendJson } from "./api.js";
import { drawClipChart, formatTime, moveCursor, timeAt } from "./chart.js";
import { jobHistory } from "./jobs.js";
import { onView } from "./views.js";

const PAGE = 30;
const SEEK_S = 2;
const RETRY_MS = 3000;    // a live event's evidence is written the post-roll after it closed: look again
const RETRY_FOR_S = 120;  // ... until this long after it closed
const $ = (id) => document.getElementById(id);
const state = {
  events: [],        // the records listed, in order
  cursor: null,      // next_cursor of the last page
  selected: -1,
  token: 0,          // bumped by every new listing; stale answers are dropped
  shown: 0,          // bumped by every selection
  abort: null,       // aborts the selected event's downloads
  urls: new Set(),   // object URLs of the list's thumbnails
  detailUrls: [],    // ... of the selected event's snapshot and clip
  geometry: null,    // of the drawn curve
  offset: 0,         // the clip's start on the source's clock
  frame: 0,
  started: false,
};

const apiKey = () => $("events-api-key").value.trim() || savedKey();
const rows = () => [...$("event-list").querySelectorAll(".event-item")];

// ---------- the list ----------

function query() {
  const params = new URLSearchParams({ limit: String(PAGE) });
  const put = (name, value) => { if (value !== "" && value !== null && value !== undefined) params.set(name, value); };
  put("stream_id", $("f-stream").value);
  put("job_id", $("f-job").value.trim());
  put("class", $("f-class").value.trim());
  put("min_score", $("f-min-score").value);
  for (const [name, field] of [["since", "f-since"], ["until", "f-until"]]) {
    const value = $(field).value;
    if (value) put(name, String(new Date(value).getTime() / 1000 + (name === "until" ? 59.999 : 0)));
  }
  put("verdict", $("f-verdict").value);
  put("reviewed", $("f-reviewed").value);
  return params;
}

function setMessage(text, isError = false) {
  const box = $("events-message");
  box.textContent = text || "";
  box.hidden = !text;
  box.classList.toggle("error", isError);
}

async function load(more = false) {
  const token = more ? state.token : ++state.token;
  const params = query();
  if (more) params.set("cursor", state.cursor);
  $("events-more").disabled = true;
  try {
    const page = JSON.parse(await getText(`v1/events?${params}`, apiKey()));
    if (token !== state.token) return;
    if (!more) clearList();
    setMessage("");
    page.events.forEach((record) => addRow(record));
    state.cursor = page.next_cursor;
    offerClasses();
    if (!more) keepSelection();
  } catch (error) {
    if (token === state.token) setMessage(`The events could not be read: ${error.message}`, true);
  } finally {
    $("events-more").disabled = false;
    $("events-more").hidden = !state.cursor;
    $("event-list-empty").hidden = state.events.length > 0;
    $("event-count").textContent = `${state.events.length}${state.cursor ? "+" : ""}`;
  }
}

// The classes listed so far, offered by the class filter.
function offerClasses() {
  const known = new Set([...$("f-class-list").options].map((option) => option.value));
  for (const record of state.events) {
    if (!known.has(record.class)) $("f-class-list").append(new Option(record.class, record.class));
    known.add(record.class);
  }
}

// After a new listing, the event shown stays selected if it is listed.
function keepSelection() {
  const shown = $("event-detail").hidden ? null : $("event-detail").dataset.id;
  state.selected = state.events.findIndex((e) => e.id === shown);
  rows().forEach((row, i) => row.setAttribute("aria-current", String(i === state.selected)));
}

function clearList() {
  for (const url of state.urls) URL.revokeObjectURL(url);
  state.urls.clear();
  state.events = [];
  state.cursor = null;
  state.selected = -1;
  $("event-list").replaceChildren();
}

function when(t) {
  return new Date(t * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

function sourceText(record) {
  return `${record.source === "stream" ? "camera" : "video"} ${record.source_name || record.source_id}`;
}

function verdictText(record) {
  if (!record.verdict) return "not reviewed";
  return record.verdict.verdict === "true_alert" ? "true alert" : "false alarm";
}

function addRow(record, first = false) {
  const index = first ? 0 : state.events.length;
  state.events.splice(index, 0, record);
  const item = document.createElement("li");
  item.innerHTML = `<button type="button" class="event-item"><span class="thumb none">no picture</span>
    <span class="event-main"><span class="event-line"><strong class="event-class"></strong>
    <span class="event-peak"></span></span><span class="event-time note"></span><span class="event-source note"></span>
    </span><span class="verdict-badge"></span></button>`;
  const button = item.firstElementChild;
  button.dataset.id = record.id;
  button.addEventListener("click", () => select(state.events.findIndex((e) => e.id === record.id)));
  button.querySelector(".event-class").textContent = record.class;
  button.querySelector(".event-peak").textContent = `peak ${record.peak_score.toFixed(2)}`;
  button.querySelector(".event-time").textContent = when(record.opened_at) + (record.state === "open" ? " (open)" : "");
  button.querySelector(".event-source").textContent = sourceText(record);
  showVerdict(button, record);
  if (first) $("event-list").prepend(item);
  else $("event-list").append(item);
  loadThumbnail(button, record, state.token);
}

function showVerdict(button, record) {
  const badge = button.querySelector(".verdict-badge");
  badge.textContent = verdictText(record);
  badge.dataset.verdict = record.verdict ? record.verdict.verdict : "none";
  button.dataset.reviewed = String(Boolean(record.verdict));
  button.setAttribute("aria-label", `${record.class}, peak ${record.peak_score.toFixed(2)}, ` +
    `${when(record.opened_at)}, ${sourceText(record)}, ${verdictText(record)}`);
}

async function loadThumbnail(button, record, token) {
  // A live event's evidence comes the post-roll after it closed; a job's is written before its events are listed
  const deadline = record.source === "stream" && record.closed_at !== null ? record.closed_at + RETRY_FOR_S : 0;
  while (token === state.token && button.isConnected) {
    let found = null;
    try {
      found = await fetchObjectUrl(relative(record.links.thumbnail), apiKey());
    } catch {
      found = null;
    }
    if (found) {
      if (token !== state.token || !button.isConnected) return URL.revokeObjectURL(found.url);
      state.urls.add(found.url);
      const img = document.createElement("img");
      img.className = "thumb";
      img.alt = "";
      img.src = found.url;
      button.querySelector(".thumb").replaceWith(img);
      return;
    }
    if (Date.now() / 1000 > deadline) return;
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

// ---------- the selected event ----------

function select(index) {
  if (index < 0 || index >= state.events.length) return;
  state.selected = index;
  rows().forEach((row, i) => row.setAttribute("aria-current", String(i === index)));
  const row = rows()[index];
  row.scrollIntoView({ block: "nearest" });
  if (document.activeElement && document.activeElement.classList.contains("event-item")) row.focus();
  showDetail(state.events[index]);
}

async function next(step) {
  if (step > 0 && state.selected >= state.events.length - 1 && state.cursor) await load(true);
  select(Math.min(Math.max(state.selected + step, 0), state.events.length - 1));
}

function clearDetail() {
  stopLoop();
  const video = $("review-video");
  video.pause();
  video.removeAttribute("src");
  video.load();
  for (const url of state.detailUrls) URL.revokeObjectURL(url);
  state.detailUrls = [];
  state.geometry = null;
  $("review-chart").replaceChildren();
  $("event-snapshot").removeAttribute("src");
  $("snapshot-link").removeAttribute("href");
}

async function showDetail(record) {
  const shown = ++state.shown;
  clearDetail();
  const current = () => shown === state.shown;
  $("event-detail").hidden = false;
  $("event-detail").dataset.id = record.id;
  $("event-title").textContent = `${record.class}: ${when(record.opened_at)}`;
  const facts = [`${sourceText(record)}`, `peak ${record.peak_score.toFixed(3)}, mean ${record.mean_score.toFixed(3)}`,
    `${formatTime(record.start_s, 60)}${record.end_s === null ? " (open)" : ` – ${formatTime(record.end_s, 60)}`} ` +
    `on the ${record.source === "stream" ? "stream's" : "video's"} clock`];
  if (record.threshold !== null) facts.push(`threshold ${record.threshold}`);
  $("event-facts").textContent = facts.join(" · ");
  showDetailVerdict(record);
  const key = apiKey();
  if (state.abort) state.abort.abort();  // the downloads of the event shown before
  state.abort = new AbortController();
  const signal = state.abort.signal;
  const [snapshot, scores, clip] = await Promise.all([
    fetchObjectUrl(relative(record.links.snapshot), key, signal).catch(() => null),
    getText(relative(record.links.scores), key).then(JSON.parse).catch(() => ({ start_s: [], end_s: [], score: [] })),
    openClip(record, key, signal).catch((error) => ({ error })),
  ]);
  if (!current()) {  // another event was selected meanwhile
    if (snapshot) URL.revokeObjectURL(snapshot.url);
    if (clip && clip.objectUrl) URL.revokeObjectURL(clip.objectUrl);
    return;
  }
  showMedia(record, snapshot, scores, clip);
}

function showMedia(record, snapshot, scores, clip) {
  if (snapshot) {
    state.detailUrls.push(snapshot.url);
    $("event-snapshot").src = snapshot.url;
    $("snapshot-link").href = snapshot.url;
  }
  $("snapshot-link").hidden = !snapshot;
  const note = $("review-note");
  note.hidden = Boolean(clip && clip.src);
  $("review-video").hidden = !(clip && clip.src);
  if (!clip || !clip.src) {
    note.textContent = clip && clip.error ? `The clip could not be read: ${clip.error.message}` :
      "No clip for this event (yet: a live event's clip is written once its post-roll has passed; or evidence is off).";
  }
  const start = scores.start_s.length ? scores.start_s[0] : record.start_s;
  const last = scores.end_s.length ? scores.end_s[scores.end_s.length - 1] : (record.end_s ?? record.start_s);
  state.offset = clip && clip.src && clip.start !== null ? clip.start : start;
  const span = clip && clip.src && clip.end !== null ? clip.end - state.offset : last - state.offset;
  state.scores = scores;
  state.record = record;
  drawCurve(span);
  if (clip && clip.src) {
    if (clip.objectUrl) state.detailUrls.push(clip.objectUrl);
    $("review-video").src = clip.src;
  }
}

// Where the clip plays from, and where it lies on the source's clock (X-Clip-Start-S / X-Clip-End-S).
async function openClip(record, key, signal) {
  const path = relative(record.links.clip);
  const read = (headers, name) => (headers.get(name) !== null ? Number(headers.get(name)) : null);
  if (key) {
    const found = await fetchObjectUrl(path, key, signal);
    if (!found) return null;
    return { src: found.url, objectUrl: found.url, start: read(found.headers, "X-Clip-Start-S"),
      end: read(found.headers, "X-Clip-End-S") };
  }
  const headers = await probe(path, key, signal);
  if (!headers) return null;
  return { src: path, objectUrl: null, start: read(headers, "X-Clip-Start-S"), end: read(headers, "X-Clip-End-S") };
}

function drawCurve(span) {
  if (!state.record) return;
  const chart = $("review-chart");
  const width = Math.max(260, Math.floor($("review-chart-box").clientWidth));
  const video = $("review-video");
  const duration = video.src && Number.isFinite(video.duration) && video.duration > 0 ? video.duration : span;
  state.geometry = drawClipChart(chart, width, { scores: state.scores, event: state.record,
    threshold: state.record.threshold, offset: state.offset, duration });
  state.drawnWidth = width;
  showTime(video.src ? video.currentTime : 0);
}

function showTime(t) {
  if (state.geometry) moveCursor($("review-chart"), state.geometry, t);
}

function seek(t) {
  const video = $("review-video");
  if (!video.src || !state.geometry) return;
  video.currentTime = Math.min(Math.max(t, 0), state.geometry.duration);
  showTime(video.currentTime);
}

function playPause() {
  const video = $("review-video");
  if (!video.src) return;
  if (video.paused || video.ended) video.play().catch(() => {});
  else video.pause();
}

function loop() {
  const video = $("review-video");
  showTime(video.currentTime);
  state.frame = !video.paused && !video.ended ? requestAnimationFrame(loop) : 0;
}

function stopLoop() {
  if (state.frame) cancelAnimationFrame(state.frame);
  state.frame = 0;
}

// ---------- verdicts ----------

function showDetailVerdict(record) {
  const text = record.verdict ? `Reviewed: ${verdictText(record)}` +
    (record.verdict.note ? ` (${record.verdict.note})` : "") + ` at ${when(record.verdict.at)}.` : "Not reviewed.";
  $("verdict-state").textContent = text;
  $("event-detail").dataset.verdict = record.verdict ? record.verdict.verdict : "none";
  $("verdict-true").setAttribute("aria-pressed", String(record.verdict?.verdict === "true_alert"));
  $("verdict-false").setAttribute("aria-pressed", String(record.verdict?.verdict === "false_alarm"));
  $("verdict-clear").disabled = !record.verdict;
}

async function judge(verdict) {
  const index = state.selected;
  const record = state.events[index];
  if (!record) return;
  try {
    const path = relative(record.links.verdict);
    const updated = verdict ? await sendJson("PUT", path, apiKey(), { verdict }) :
      (await sendJson("DELETE", path, apiKey()), { ...record, verdict: null });
    state.events[index] = updated;
    showVerdict(rows()[index], updated);
    if ($("event-detail").dataset.id === updated.id) {
      state.record = updated;
      showDetailVerdict(updated);
    }
  } catch (error) {
    setMessage(`The verdict was not recorded: ${error.message}`, true);
  }
}

// ---------- keys ----------

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable ||
    ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName));
}

function onKey(event) {
  if ($("events-view").hidden || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
  const video = $("review-video");
  const actions = {
    j: () => next(1), k: () => next(-1), " ": playPause, t: () => judge("true_alert"), f: () => judge("false_alarm"),
    ArrowLeft: () => seek(video.currentTime - SEEK_S), ArrowRight: () => seek(video.currentTime + SEEK_S),
  };
  const action = actions[event.key.length === 1 ? event.key.toLowerCase() : event.key];
  if (!action) return;
  event.preventDefault();  // no page scroll, no second play/pause or seek by the focused video
  action();
}

// A focused button is pressed by the space bar's keyup: here space plays and pauses instead.
function onKeyUp(event) {
  if (event.key === " " && !$("events-view").hidden && !typing(event.target)) event.preventDefault();
}

// ---------- filters and wiring ----------

async function fillStreams() {
  const select = $("f-stream");
  try {
    const { streams } = JSON.parse(await getText("v1/streams", apiKey()));
    const chosen = select.value;
    select.replaceChildren(new Option("All cameras", ""), ...streams.map((s) => new Option(s.name, s.id)));
    select.value = streams.some((s) => s.id === chosen) ? chosen : "";
  } catch {
    // streams off on this deployment (or no key yet): the filter offers all only
  }
  $("f-job-list").replaceChildren(...jobHistory(apiKey()).map((job) => new Option(job.filename || job.id, job.id)));
}

// #events=ID: open that event, listed or not.
async function openLinked() {
  const match = /^#events=([0-9a-f-]{36})$/.exec(location.hash);
  if (!match) return;
  let index = state.events.findIndex((e) => e.id === match[1]);
  if (index < 0) {
    try {
      addRow(JSON.parse(await getText(`v1/events/${match[1]}`, apiKey())), true);
      index = 0;
    } catch (error) {
      return setMessage(`Event ${match[1]}: ${error.message}`, true);
    }
  }
  select(index);
}

async function start() {
  state.started = true;
  await fillStreams();
  await load();
  await openLinked();
}

function init() {
  const key = $("events-api-key");
  key.value = savedKey();
  key.addEventListener("change", () => {
    saveKey(key.value.trim());
    fillStreams();
    load();
  });
  $("event-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  $("event-filters").addEventListener("reset", () => setTimeout(() => {  // after the fields were cleared
    key.value = savedKey();
    load();
  }, 0));
  $("events-more").addEventListener("click", () => load(true));
  $("verdict-true").addEventListener("click", () => judge("true_alert"));
  $("verdict-false").addEventListener("click", () => judge("false_alarm"));
  $("verdict-clear").addEventListener("click", () => judge(null));
  document.addEventListener("keydown", onKey);
  document.addEventListener("keyup", onKeyUp);
  const chart = $("review-chart");
  chart.addEventListener("click", (event) => {
    if (state.geometry) seek(timeAt(chart, state.geometry, event.clientX, event.clientY));
  });
  const video = $("review-video");
  video.addEventListener("play", () => { stopLoop(); loop(); });
  for (const name of ["pause", "ended"]) {
    video.addEventListener(name, () => {
      stopLoop();
      showTime(video.currentTime);  // where it stopped, not the last frame drawn
    });
  }
  for (const name of ["timeupdate", "seeked"]) video.addEventListener(name, () => showTime(video.currentTime));
  video.addEventListener("loadedmetadata", () => drawCurve(state.geometry ? state.geometry.duration : 1));
  new ResizeObserver(() => {
    if (state.geometry && Math.floor($("review-chart-box").clientWidth) !== state.drawnWidth) {
      drawCurve(state.geometry.duration);
    }
  }).observe($("review-chart-box"));
  onView((view) => {
    if (view !== "events") return;
    if (!state.started) start();
    else {  // back to the view: streams and events added meanwhile show
      fillStreams();
      load().then(openLinked);
    }
  });
}

init();
