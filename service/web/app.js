// The dsanet-vad web page: upload a video, follow its job, then play it above its anomaly-score chart.
//
// Plain modern JavaScript modules, no framework and no build step. The video plays from the local file
// (URL.createObjectURL): the server never sends it back. The job id goes into the address (#job=ID), so a
// reload follows the job again and shows its result (without the video, which only the user's disk has).
// "Your jobs" lists the jobs uploaded from this browser with this key (jobs.js keeps their ids), each read again
// from the API, to show one again or to cancel it (DELETE v1/jobs/{id}: a running job stops, and it is deleted).

import { ApiError, getText, pollJob, saveKey, savedKey, sendJson, upload } from "./api.js";
import { forgetJob, jobHistory, rememberJob } from "./jobs.js";
import { chartDuration, classColour, demoLabel, drawChart, formatTime, moveCursor, timeAt } from "./chart.js";

const $ = (id) => document.getElementById(id);
const state = {
  token: 0,          // bumped by every new upload; stale pollers stop
  upload: null,      // the upload in flight: {done, abort}
  file: null,        // the local file shown in the player
  videoUrl: null,    // its object URL
  jsonUrl: null,     // object URL of the raw result JSON
  result: null,
  geometry: null,    // of the drawn chart: {x0, x1, y0, y1, duration}
  drawnWidth: 0,
  frame: 0,          // requestAnimationFrame id while playing
};

const JOBS_MS = 3000;
const apiKey = () => $("api-key").value.trim();
const clock = (t) => formatTime(t, state.result ? chartDuration(state.result) : 0);

// ---------- the flow ----------

async function analyse(event) {
  event.preventDefault();
  const file = $("file").files[0];
  const threshold = Number($("threshold").value);
  if (!file) return showError("Choose a video file first.");
  if ($("threshold").value === "" || !(threshold >= 0 && threshold <= 1)) {
    return showError("The threshold must be a number between 0 and 1.");
  }
  if (state.upload) state.upload.abort();
  const token = ++state.token;
  showError(null);
  clearResult();
  state.file = file;
  $("progress").hidden = false;
  $("job-progress").value = 0;
  $("job-text").textContent = "";
  setStatus(`Uploading ${file.name}…`);
  $("submit").disabled = true;
  let job;
  try {
    state.upload = upload(file, threshold, apiKey(), (loaded, total) => {
      if (token === state.token) showUpload(loaded, total);
    });
    job = await state.upload.done;
  } catch (error) {
    if (token === state.token) fail(error);
    return;
  } finally {
    if (token === state.token) {
      $("submit").disabled = false;
      state.upload = null;
    }
  }
  showUpload(file.size, file.size);
  rememberJob(apiKey(), job);
  showJobs();
  history.replaceState(null, "", `#job=${encodeURIComponent(job.id)}`);
  const note = job.deduplicated ? "The same file with the same options was analysed before: this is that job." : "";
  await follow(job.id, token, note);
}

async function follow(jobId, token, note) {
  const isCurrent = () => token === state.token;
  try {
    const job = await pollJob(jobId, apiKey(), {
      isCurrent, onJob: showJob, onRetry: (n) => setStatus(`The server did not answer; retrying (${n})…`),
    });
    if (!job) return;
    const text = await getText(`v1/jobs/${encodeURIComponent(jobId)}/result`, apiKey());
    if (!isCurrent()) return;
    setStatus(`${note ? note + " " : ""}Done.`);
    showResult(jobId, JSON.parse(text), text);
  } catch (error) {
    if (isCurrent()) fail(error);
  }
}

function resumeFromHash() {
  const match = /^#job=([\w-]+)$/.exec(location.hash);
  if (!match) return;
  if (state.upload) state.upload.abort();
  showError(null);
  clearResult();
  state.file = null;
  $("progress").hidden = false;
  setStatus(`Following job ${match[1]}…`);
  follow(match[1], ++state.token, "");
}

// ---------- the jobs of this browser and key ----------

let jobsTimer = 0;

function when(t) {
  return new Date(t * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// Read every remembered job again and list it; jobs the server no longer knows are forgotten.
async function showJobs() {
  clearTimeout(jobsTimer);
  const key = apiKey();
  const known = jobHistory(key);
  const jobs = await Promise.all(known.map(async (kept) => {
    try {
      return JSON.parse(await getText(`v1/jobs/${encodeURIComponent(kept.id)}`, key));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) forgetJob(key, kept.id);
      return error instanceof ApiError && error.status === 404 ? null : { ...kept, status: "unknown", error };
    }
  }));
  const body = $("jobs").tBodies[0];
  body.replaceChildren();
  const listed = jobs.filter(Boolean);
  for (const job of listed) body.append(jobRow(job));
  $("jobs-empty").hidden = listed.length > 0;
  $("jobs").hidden = listed.length === 0;
  if (listed.some((job) => job.status === "queued" || job.status === "started")) {
    jobsTimer = setTimeout(showJobs, JOBS_MS);
  }
}

function jobRow(job) {
  const row = document.createElement("tr");
  row.dataset.jobId = job.id;
  row.dataset.status = job.status;
  const link = document.createElement("a");
  link.href = `#job=${encodeURIComponent(job.id)}`;
  link.textContent = job.filename || job.id;
  row.insertCell().append(link);
  const running = job.status === "queued" || job.status === "started";
  const percent = job.progress ? ` ${job.progress.percent.toFixed(0)} %` : "";
  row.insertCell().textContent = job.status === "unknown" ? `not readable now (${job.error.message})` :
    `${job.status}${job.status === "started" ? percent : ""}`;
  row.insertCell().textContent = job.created_at ? when(job.created_at) : when(job.at);
  const button = document.createElement("button");
  button.type = "button";
  button.className = "job-delete";
  button.textContent = running ? "Cancel" : "Delete";
  button.setAttribute("aria-label", `${running ? "Cancel" : "Delete"} the job of ${link.textContent}`);
  button.addEventListener("click", () => deleteJob(job, running));
  row.insertCell().append(button);
  return row;
}

async function deleteJob(job, running) {
  const name = job.filename || job.id;
  const what = running ? `Cancel the analysis of ${name}? It stops, and` : `Delete the job of ${name}?`;
  if (!window.confirm(`${what} its upload, result, events and evidence are deleted.`)) return;
  try {
    await sendJson("DELETE", `v1/jobs/${encodeURIComponent(job.id)}`, apiKey());
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) return showError(error.message);
  }
  forgetJob(apiKey(), job.id);
  if (location.hash === `#job=${encodeURIComponent(job.id)}`) {
    ++state.token;  // its poller stops
    history.replaceState(null, "", location.pathname + location.search);
    clearResult();
    setStatus(running ? `Cancelled ${name}.` : `Deleted ${name}.`);
  }
  showJobs();
}

// ---------- progress and errors ----------

function setStatus(text) {
  $("status").textContent = text;
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

function fail(error) {
  setStatus("Stopped.");
  showError(error && error.message ? error.message : String(error));
}

function formatBytes(n) {
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  for (; n >= 1000 && i < units.length - 1; i++) n /= 1000;
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function showUpload(loaded, total) {
  const percent = total ? (100 * loaded) / total : 0;
  $("upload-progress").value = percent;
  $("upload-text").textContent = `${percent.toFixed(0)} % (${formatBytes(loaded)} of ${formatBytes(total)})`;
}

function showJob(job) {
  const percent = job.progress ? job.progress.percent : 0;
  $("job-progress").value = percent;
  $("job-text").textContent = `${percent.toFixed(0)} %`;
  let text = `Job ${job.status}.`;
  if (job.status === "queued") {
    const ahead = job.queue_position;
    text = ahead == null ? "Queued." : ahead === 0 ? "Queued: next in line." :
      `Queued: ${ahead} job${ahead === 1 ? "" : "s"} ahead.`;
  } else if (job.status === "started") {
    text = `Analysing: ${job.progress.stage} (${percent.toFixed(0)} %)` +
      (job.attempts > 1 ? `, attempt ${job.attempts}.` : ".");
  }
  setStatus(text);
}

// ---------- the result ----------

function clearResult() {
  stopLoop();
  state.result = null;
  state.geometry = null;
  $("result").hidden = true;
  const video = $("video");
  video.removeAttribute("src");
  video.load();
  for (const key of ["videoUrl", "jsonUrl"]) {
    if (state[key]) URL.revokeObjectURL(state[key]);
    state[key] = null;
  }
}

function showResult(jobId, result, text) {
  state.result = result;
  $("result").hidden = false;  // before drawing: the chart measures its box and its labels
  showDemoLabel(result.model || {});
  showVideo();
  redraw();
  showSummary(result);
  showEvents(result);
  state.jsonUrl = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  $("raw-json").href = state.jsonUrl;
  $("api-link").textContent = ` (from GET v1/jobs/${jobId}/result)`;
  $("result").scrollIntoView({ behavior: "smooth", block: "start" });
}

function showDemoLabel(model) {
  const box = $("demo-label");
  const label = demoLabel(model);
  box.replaceChildren();
  box.hidden = !label;
  if (!label) return;
  const strong = document.createElement("strong");
  strong.textContent = label;
  box.append(strong);
  if (model.demo) box.append(": trained on synthetic videos only; its scores and classes say nothing about real footage.");
}

function showVideo() {
  const video = $("video");
  const note = $("video-note");
  note.hidden = Boolean(state.file);
  video.hidden = !state.file;
  if (!state.file) {
    note.textContent = "The video plays from your computer: upload the same file again to watch it here " +
      "(the same file with the same options returns this job at once).";
    return;
  }
  state.videoUrl = URL.createObjectURL(state.file);
  video.src = state.videoUrl;
}

function onVideoError() {
  if (!state.result || !state.file) return;
  const note = $("video-note");
  note.hidden = false;
  note.textContent = `This browser cannot play this file (${state.result.video.codec}); the chart and the events ` +
    "below are still valid.";
}

function showSummary(result) {
  const s = result.summary;
  const v = result.video;
  const n = result.timeline.score.length;
  const events = result.events.length;
  const top = (s.top_classes || []).slice(0, 3).map((c) => `${c.class} ${c.prob.toFixed(2)}`).join(", ");
  const lines = [
    `${s.anomalous ? "Anomalous" : "No event"}: ${events} event${events === 1 ? "" : "s"} above ` +
      `${result.settings.threshold}; max score ${s.max_score.toFixed(3)}, mean ${s.mean_score.toFixed(3)}` +
      (top ? `; top classes: ${top}` : "") + ".",
    `${v.filename}: ${clock(v.duration_s)}, ${v.width}×${v.height}, ${v.fps.toFixed(2)} fps, ${v.frames} frames, ` +
      `${n} snippet${n === 1 ? "" : "s"}. Model: ${result.model.name} (${result.model.preset})` +
      (result.model.bundle_sha256 ? `, bundle ${result.model.bundle_sha256.slice(0, 12)}` : "") + ".",
  ];
  if (v.warnings && v.warnings.length) lines.push(`Decoding: ${v.warnings.join("; ")}`);
  const box = $("summary");
  box.replaceChildren();
  lines.forEach((line, i) => box.append(...(i ? [document.createElement("br"), line] : [line])));
}

function showEvents(result) {
  const body = $("events").tBodies[0];
  body.replaceChildren();
  if (!result.events.length) {
    const cell = body.insertRow().insertCell();
    cell.colSpan = 5;
    cell.textContent = `No event above the threshold (${result.settings.threshold}).`;
    return;
  }
  result.events.forEach((event, i) => {
    const row = body.insertRow();
    row.dataset.index = String(i);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = classColour(result, event.class);
    row.insertCell().append(swatch, event.class);
    const button = document.createElement("button");
    button.type = "button";
    button.className = "seek";
    button.textContent = `${clock(event.start_s)} – ${clock(event.end_s)}`;
    button.setAttribute("aria-label", `Play the ${event.class} event from ${clock(event.start_s)}`);
    button.addEventListener("click", () => seek(event.start_s, true));
    row.insertCell().append(button);
    row.insertCell().textContent = event.peak_score.toFixed(3);
    row.insertCell().textContent = event.mean_score.toFixed(3);
    row.insertCell().textContent = event.class_prob.toFixed(2);
  });
}

// ---------- chart, cursor and seeking ----------

function redraw() {
  const width = Math.max(260, Math.floor($("chart-box").clientWidth));
  state.geometry = drawChart($("chart"), width, state.result);
  state.drawnWidth = width;
  const video = $("video");
  showTime(video.src ? video.currentTime : 0);
}

function showTime(t) {
  if (!state.geometry) return;
  const now = moveCursor($("chart"), state.geometry, t);
  const events = state.result.events;
  for (const row of $("events").tBodies[0].rows) {
    const event = events[Number(row.dataset.index)];
    row.classList.toggle("current", Boolean(event) && now >= event.start_s && now < event.end_s);
  }
}

function seek(t, play) {
  if (!state.geometry) return;
  const time = Math.min(Math.max(t, 0), state.geometry.duration);
  const video = $("video");
  if (video.src && !video.hidden) {
    video.currentTime = time;
    if (play) video.play().catch(() => {});
  }
  showTime(time);
}

function onChartKey(event) {
  if (!state.geometry) return;
  const tl = state.result.timeline;
  const snippet = tl.end_s.length ? tl.end_s[0] - tl.start_s[0] : 1;
  const now = Number($("cursor").getAttribute("data-time")) || 0;
  const moves = {
    ArrowLeft: now - snippet, ArrowDown: now - snippet, ArrowRight: now + snippet, ArrowUp: now + snippet,
    PageDown: now - 10 * snippet, PageUp: now + 10 * snippet, Home: 0, End: state.geometry.duration,
  };
  if (!(event.key in moves)) return;
  event.preventDefault();
  seek(moves[event.key], false);
}

// While playing, the cursor moves every frame (timeupdate alone fires only a few times a second).
function loop() {
  const video = $("video");
  showTime(video.currentTime);
  state.frame = !video.paused && !video.ended ? requestAnimationFrame(loop) : 0;
}

function stopLoop() {
  if (state.frame) cancelAnimationFrame(state.frame);
  state.frame = 0;
}

// ---------- wiring ----------

function init() {
  const key = $("api-key");
  key.value = savedKey();
  key.addEventListener("change", () => {
    saveKey(key.value.trim());
    showJobs();
  });
  $("upload-form").addEventListener("submit", analyse);
  window.addEventListener("hashchange", resumeFromHash);
  const chart = $("chart");
  chart.addEventListener("click", (event) => {
    if (state.geometry) seek(timeAt(chart, state.geometry, event.clientX, event.clientY), false);
  });
  chart.addEventListener("keydown", onChartKey);
  const video = $("video");
  video.addEventListener("play", () => {
    stopLoop();
    loop();
  });
  for (const name of ["pause", "ended"]) video.addEventListener(name, stopLoop);
  for (const name of ["timeupdate", "seeked", "loadedmetadata"]) {
    video.addEventListener(name, () => showTime(video.currentTime));
  }
  video.addEventListener("error", onVideoError);
  new ResizeObserver(() => {
    if (state.result && Math.floor($("chart-box").clientWidth) !== state.drawnWidth) redraw();
  }).observe($("chart-box"));
  resumeFromHash();
  showJobs();
}

init();
