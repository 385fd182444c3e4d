// The "Live streams" view: add a camera or feed, see every stream of this API key with its status, and a
// scrolling score chart per stream with its events shaded as they open and close, fed by Server-Sent Events.
//
// "Stop" stops a stream and keeps it (its events and chart stay readable for the retention); "Remove" deletes it
// with everything it recorded, after a confirmation.
//
// Each card also keeps the stream's last RECENT events with their thumbnails (read from GET v1/events?stream_id=…
// when the card is made, so a reload keeps them; then from the SSE messages), each a link to it in the Events view,
// and the stream's latest picture (GET v1/streams/{id}/snapshot.jpg): the camera's latest frame while the stream runs
// (its worker writes one every VAD_STREAM_SNAPSHOT_EVERY_S, 10 s; read again every SNAPSHOT_MS, captioned with the
// time X-Frame-At says), else the newest event's snapshot (read again once a newer event's evidence is written).
//
// Shown when the address ends in #live (the tabs at the top switch views). The list is polled every few
// seconds for statuses; each running stream has one SSE connection (events with ids, scores without) that
// resumes after a drop with Last-Event-ID, so an event is never drawn twice or missed.

import { fetchObjectUrl, followEvents, getText, saveKey, savedKey, sendJson } from "./api.js";
import { drawLiveChart } from "./chart.js";
import { onView } from "./views.js";

const LIST_MS = 2000;
const DRAW_MS = 500;
const SPAN_S = 60;
const RECENT = 20;
const RETRY_MS = 2000;    // a closed event's evidence comes the post-roll after it closed (and its clip is cut)
const RETRY_FOR_S = 90;
const SNAPSHOT_MS = 10000;  // as often as the workers write a live frame by default
const $ = (id) => document.getElementById(id);
const streams = new Map();  // id -> {card, chart, points, events, follower, stream}
const removed = new Set();  // ids deleted from this page: a list read before the deletion must not bring them back
let listTimer = 0;
let snapshotTimer = 0;

const apiKey = () => $("live-api-key").value.trim() || savedKey();
const path = (id, rest = "") => `v1/streams/${encodeURIComponent(id)}${rest}`;

let shown = false;

function showView(view) {
  if ((view === "live") === shown) return;
  shown = view === "live";
  clearInterval(listTimer);
  clearInterval(snapshotTimer);
  if (shown) {
    refresh();
    listTimer = setInterval(refresh, LIST_MS);
    snapshotTimer = setInterval(refreshSnapshots, SNAPSHOT_MS);
  }
}

function setMessage(text, isError = false) {
  const box = $("live-message");
  box.textContent = text || "";
  box.hidden = !text;
  box.classList.toggle("error", isError);
}

async function addStream(event) {
  event.preventDefault();
  const body = { url: $("stream-url").value.trim() };
  if (!body.url) return setMessage("Enter the stream's URL (rtsp://, http(s)://, udp://, srt://...).", true);
  if ($("stream-name").value.trim()) body.name = $("stream-name").value.trim();
  if ($("stream-threshold").value !== "") body.threshold = Number($("stream-threshold").value);
  $("stream-add").disabled = true;
  try {
    const stream = await sendJson("POST", "v1/streams", apiKey(), body);
    $("stream-url").value = "";  // the URL may carry a password: do not keep it on the page
    setMessage(`Added ${stream.name}: ${stream.status}.`);
    await refresh();
  } catch (error) {
    setMessage(error.message, true);
  } finally {
    $("stream-add").disabled = false;
  }
}

async function refresh() {
  let list;
  try {
    list = JSON.parse(await getText("v1/streams", apiKey())).streams;
  } catch (error) {
    return setMessage(`The list of streams could not be read: ${error.message}`, true);
  }
  const seen = new Set();
  for (const stream of list) {
    if (removed.has(stream.id)) continue;
    seen.add(stream.id);
    if (!streams.has(stream.id)) streams.set(stream.id, makeCard(stream));
    const entry = streams.get(stream.id);
    entry.stream = stream;
    showStatus(entry);
    const ended = stream.status === "stopped" || stream.status === "failed";
    if (!ended && !entry.follower && !entry.starting) follow(entry);
    if (ended && entry.follower) {
      entry.follower.close();
      entry.follower = null;
    }
  }
  for (const id of [...streams.keys()]) {
    if (!seen.has(id)) forget(id);
  }
  $("streams-empty").hidden = streams.size > 0;
}

function makeCard(stream) {
  const card = document.createElement("article");
  card.className = "stream card";
  card.dataset.id = stream.id;
  card.innerHTML = `<header class="stream-head"><h3 class="stream-name"></h3><span class="badge"></span>
    <button type="button" class="stream-stop">Stop</button>
    <button type="button" class="stream-remove">Remove</button></header>
    <p class="stream-url note"></p><p class="stream-facts"></p>
    <svg class="live-chart" xmlns="http://www.w3.org/2000/svg" role="img"></svg>
    <div class="stream-evidence"><figure class="latest"><a class="latest-link" target="_blank" rel="noopener">
      <img class="latest-snapshot" alt=""></a>
      <figcaption class="note latest-caption">No picture yet.</figcaption>
    </figure><div class="recent"><h4 class="recent-title">Recent events</h4><p class="note recent-empty">None yet.</p>
    <ol class="recent-events"></ol></div></div>`;
  card.querySelector(".stream-name").textContent = stream.name;
  card.querySelector(".stream-url").textContent = stream.url;  // never carries credentials (the API removes them)
  card.querySelector(".live-chart").setAttribute("aria-label", `Anomaly score of ${stream.name}, last ${SPAN_S} s`);
  card.querySelector(".stream-stop").addEventListener("click", () => stop(stream.id));
  card.querySelector(".stream-remove").addEventListener("click", () => remove(stream.id));
  card.querySelector(".latest-snapshot").alt = `The latest picture of ${stream.name}`;
  card.querySelector(".recent-events").setAttribute("aria-label", `Recent events of ${stream.name}`);
  $("streams").append(card);
  const entry = { card, chart: card.querySelector(".live-chart"), points: [], events: new Map(), follower: null,
    recent: new Map(), snapshot: null, snapshotEvent: null, snapshotShown: null };
  loadRecent(entry, stream.id);
  loadSnapshot(entry, stream.id);
  return entry;
}

// ---------- recent events and the latest snapshot ----------

async function loadRecent(entry, id) {
  try {
    const page = JSON.parse(await getText(`v1/events?stream_id=${encodeURIComponent(id)}&limit=${RECENT}`,
      apiKey()));
    page.events.forEach((record) => showRecent(entry, record));
  } catch (error) {
    setMessage(`The events of ${entry.stream ? entry.stream.name : id} could not be read: ${error.message}`, true);
  }
}

// Add or update one event in the card's list (a record of GET v1/events, or the event of an SSE message).
function showRecent(entry, event) {
  const list = entry.card.querySelector(".recent-events");
  let known = entry.recent.get(event.id);
  if (!known) {
    const item = document.createElement("li");
    item.className = "recent-event";
    item.dataset.eventId = event.id;
    item.innerHTML = `<a class="recent-link"><span class="thumb none">no picture</span><span class="recent-text">
      <strong class="recent-class"></strong> <span class="recent-peak"></span><br><span class="note recent-time">
      </span></span></a>`;
    item.querySelector(".recent-link").href = `#events=${event.id}`;
    item.dataset.openedAt = String(event.opened_at);
    known = { item, url: null, loading: false };
    entry.recent.set(event.id, known);
    const later = [...list.children].find((other) => Number(other.dataset.openedAt) < event.opened_at);
    list.insertBefore(item, later || null);  // newest first, whichever source told of it first
    while (entry.recent.size > RECENT) {
      const oldest = list.lastElementChild;
      const old = entry.recent.get(oldest.dataset.eventId);
      if (old.url) URL.revokeObjectURL(old.url);
      oldest.remove();
      entry.recent.delete(oldest.dataset.eventId);
    }
    if (!item.isConnected) return;  // older than the RECENT kept
  }
  const closed = event.state ? event.state === "closed" : event.end_s !== null && event.end_s !== undefined;
  const item = known.item;
  item.dataset.state = closed ? "closed" : "open";
  item.querySelector(".recent-class").textContent = event.class;
  item.querySelector(".recent-peak").textContent = `peak ${Number(event.peak_score).toFixed(2)}`;
  item.querySelector(".recent-time").textContent = new Date(event.opened_at * 1000).toLocaleTimeString() +
    (closed ? "" : " · open");
  item.querySelector(".recent-link").setAttribute("aria-label", `${event.class} at ` +
    `${new Date(event.opened_at * 1000).toLocaleString()}${closed ? "" : ", open"}: open it in the Events view`);
  entry.card.querySelector(".recent-empty").hidden = true;
  if (closed && !known.url && !known.loading) loadThumbnail(entry, known, event.closed_at || Date.now() / 1000);
}

// Tried until RETRY_FOR_S after the event closed: an event without evidence (evidence off) stops asking then.
async function loadThumbnail(entry, known, closedAt) {
  known.loading = true;
  const deadline = closedAt + RETRY_FOR_S;
  const path = `v1/events/${encodeURIComponent(known.item.dataset.eventId)}/thumbnail.jpg`;
  for (;;) {
    if (!known.item.isConnected) break;
    const found = await fetchObjectUrl(path, apiKey()).catch(() => null);
    if (found) {
      if (!known.item.isConnected) return URL.revokeObjectURL(found.url);
      known.url = found.url;
      const img = document.createElement("img");
      img.className = "thumb";
      img.alt = "";
      img.src = found.url;
      known.item.querySelector(".thumb").replaceWith(img);
      const newest = known.item.parentElement && known.item.parentElement.firstElementChild === known.item;
      if (newest && entry.stream && entry.snapshotEvent !== known.item.dataset.eventId) {
        loadSnapshot(entry, entry.stream.id);  // the newest event's evidence is written: the latest snapshot
      }
      break;
    }
    if (Date.now() / 1000 > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
  known.loading = false;
}

// A running stream's live frame changes every few seconds; a stream showing one keeps being read after it stops,
// until its frame expires and the event snapshot takes its place.
function refreshSnapshots() {
  for (const [id, entry] of streams) {
    const ended = entry.stream && (entry.stream.status === "stopped" || entry.stream.status === "failed");
    if (!ended || entry.card.querySelector(".latest-snapshot").dataset.snapshot === "live") loadSnapshot(entry, id);
  }
}

async function loadSnapshot(entry, id) {
  const found = await fetchObjectUrl(path(id, "/snapshot.jpg"), apiKey()).catch(() => null);
  if (!found) return;
  const live = found.headers.get("X-Snapshot") === "live";
  const eventId = live ? null : found.headers.get("X-Event-Id");
  const frameAt = Number(found.headers.get("X-Frame-At"));
  const shown = live ? `live ${frameAt}` : `event ${eventId}`;
  if (!entry.card.isConnected || shown === entry.snapshotShown) return URL.revokeObjectURL(found.url);
  if (entry.snapshot) URL.revokeObjectURL(entry.snapshot);
  entry.snapshot = found.url;
  entry.snapshotEvent = eventId;
  entry.snapshotShown = shown;
  const img = entry.card.querySelector(".latest-snapshot");
  img.src = found.url;
  img.dataset.snapshot = live ? "live" : "event";
  img.dataset.eventId = eventId || "";
  img.dataset.frameAt = live ? String(frameAt) : "";
  entry.card.querySelector(".latest-link").href = eventId ? `#events=${eventId}` : found.url;
  let caption;
  if (live) {
    caption = `Camera at ${new Date(frameAt * 1000).toLocaleTimeString()}`;
  } else {
    const known = entry.recent.get(eventId);
    const time = known ? ` (${known.item.querySelector(".recent-time").textContent.trim()})` : "";
    caption = `Latest event snapshot${time}`;
  }
  entry.card.querySelector(".latest-caption").textContent = caption;
}

function showStatus(entry) {
  const s = entry.stream;
  entry.card.dataset.status = s.status;
  const badge = entry.card.querySelector(".badge");
  badge.textContent = s.status;
  badge.className = `badge status-${s.status}`;
  const facts = [];
  if (s.reason) facts.push(s.reason);
  if (s.queue_position !== null && s.queue_position !== undefined) facts.push(`position ${s.queue_position + 1}`);
  if (s.source.fps) facts.push(`${s.source.width}×${s.source.height} at ${s.source.fps.toFixed(1)} fps`);
  facts.push(`${s.snippets_scored} snippets scored`, `${s.snippets_dropped} dropped`);
  if (s.lag_s !== null) facts.push(`lag ${s.lag_s.toFixed(2)} s`);
  if (s.last_score !== null) facts.push(`last score ${s.last_score.toFixed(3)}`);
  facts.push(`${s.events_opened} events`);
  entry.card.querySelector(".stream-facts").textContent = facts.join(" · ");
  entry.card.querySelector(".stream-stop").disabled = s.status === "stopped" || s.status === "failed";
}

// Wall-clock time of a stream time: when the snippet that starts (or ends) there was scored.
function wallTime(entry, streamTime, key, fallback) {
  const point = entry.points.find((p) => Math.abs(p[key] - streamTime) < 1e-3);
  return point ? point.t : fallback;
}

function applyEvent(entry, message) {
  const e = message.event;
  showRecent(entry, { ...e, state: message.kind === "open" ? "open" : "closed" });
  if (message.kind === "open") {
    entry.events.set(e.id, { id: e.id, class: e.class, start: wallTime(entry, e.start_s, "start_s", e.opened_at),
      end: null });
  } else {
    const known = entry.events.get(e.id) || { id: e.id, class: e.class, start: e.opened_at };
    known.end = wallTime(entry, e.end_s, "end_s", e.closed_at || Date.now() / 1000);
    entry.events.set(e.id, known);
  }
}

async function follow(entry) {
  const id = entry.stream.id;
  entry.starting = true;
  try {
    const since = Date.now() / 1000 - SPAN_S;
    const timeline = JSON.parse(await getText(path(id, `/timeline?since=${since}&limit=10000`), apiKey()));
    entry.points = timeline.points.map((p) => ({ t: p.at, score: p.score, start_s: p.start_s, end_s: p.end_s }));
    const past = JSON.parse(await getText(path(id, "/events?limit=10000"), apiKey()));
    past.events.forEach((m) => applyEvent(entry, m));
    entry.follower = followEvents(path(id, "/events?scores=true"), apiKey(), {
      lastEventId: past.last_id,
      onMessage: ({ event, data }) => {
        if (event === "score") entry.points.push({ t: data.at, score: data.score, start_s: data.start_s,
          end_s: data.end_s });
        else applyEvent(entry, data);
      },
      onState: (state) => { entry.card.dataset.sse = state; },
    });
  } catch (error) {
    setMessage(`Stream ${entry.stream.name}: ${error.message}`, true);
  } finally {
    entry.starting = false;
  }
}

function forget(id) {
  const entry = streams.get(id);
  if (!entry) return;
  if (entry.follower) entry.follower.close();
  for (const known of entry.recent.values()) if (known.url) URL.revokeObjectURL(known.url);
  if (entry.snapshot) URL.revokeObjectURL(entry.snapshot);
  entry.card.remove();
  streams.delete(id);
  $("streams-empty").hidden = streams.size > 0;
}

// Stop and keep: the stream shows as stopped, with its chart and events, until its retention ends.
async function stop(id) {
  try {
    const stream = await sendJson("POST", path(id, "/stop"), apiKey());
    setMessage(`Stopped ${stream.name}.`);
    await refresh();
  } catch (error) {
    setMessage(error.message, true);
  }
}

// Delete: the stream stops (if it runs) and its record, events and timeline are removed.
async function remove(id) {
  const entry = streams.get(id);
  const name = entry ? entry.stream.name : id;
  if (!window.confirm(`Remove ${name}? It stops, and its events and timeline are deleted.`)) return;
  try {
    await sendJson("DELETE", path(id), apiKey());
    removed.add(id);
    forget(id);
    setMessage(`Removed ${name}.`);
  } catch (error) {
    if (error.status === 404) forget(id);  // already gone (removed elsewhere, or its retention ended)
    setMessage(error.message, true);
  }
}

function draw() {
  const now = Date.now() / 1000;
  for (const entry of streams.values()) {
    entry.points = entry.points.filter((p) => p.t >= now - SPAN_S - 5);
    const ended = entry.stream.status === "stopped" || entry.stream.status === "failed";
    const until = ended && entry.stream.stopped_at ? entry.stream.stopped_at : now;
    drawLiveChart(entry.chart, Math.max(200, entry.card.clientWidth - 32), {
      points: entry.points, events: [...entry.events.values()], threshold: entry.stream.threshold, now: until,
      span: SPAN_S,
    });
  }
}

function init() {
  const key = savedKey();
  if (key) $("live-api-key").value = key;
  $("live-api-key").addEventListener("change", () => saveKey($("live-api-key").value.trim()));
  $("stream-form").addEventListener("submit", addStream);
  setInterval(draw, DRAW_MS);
  onView(showView);
}

init();
