// Calls to this server's API. URLs are relative, so the page also works behind a path prefix.

const POLL_FIRST_MS = 300;
const POLL_MAX_MS = 2000;
const MAX_NETWORK_RETRIES = 30;

const KEY_STORAGE = "vad.apiKey";  // one key for both views

// The API key kept in the browser. Where storage is blocked (privacy settings, some embedded browsers) reading or
// writing localStorage throws: then the key lives in the form field only, and the page works on without it.
export function savedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function saveKey(key) {
  try {
    localStorage.setItem(KEY_STORAGE, key);
  } catch {
    // storage blocked: nothing is kept across page loads
  }
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(key) {
  return key ? { "X-API-Key": key } : {};
}

// The readable reason of a failed call: FastAPI's `detail` (a string, or a list of validation errors).
function reason(status, text) {
  let detail = null;
  try {
    detail = text ? JSON.parse(text).detail : null;
  } catch {
    detail = null;
  }
  if (Array.isArray(detail)) detail = detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  if (typeof detail !== "string") detail = text ? text.slice(0, 300) : `HTTP ${status}`;
  const hints = {
    401: "the server needs an API key: enter it above",
    413: "the file is larger than the server accepts",
    415: "the server does not recognise this file as a video",
  };
  return hints[status] ? `${detail} (${hints[status]})` : detail;
}

export async function getText(path, key) {
  const response = await fetch(path, { headers: headers(key), cache: "no-store" });
  const text = await response.text();
  if (!response.ok) throw new ApiError(response.status, reason(response.status, text));
  return text;
}

// POST v1/videos with XMLHttpRequest, for its upload progress events. Returns {done: Promise<job>, abort()}.
export function upload(file, threshold, key, onProgress) {
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    xhr.open("POST", "v1/videos");
    for (const [name, value] of Object.entries(headers(key))) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => {
      onProgress(event.loaded, event.lengthComputable ? event.total : file.size);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status === 200 || xhr.status === 202) resolve(JSON.parse(xhr.responseText));
      else reject(new ApiError(xhr.status, reason(xhr.status, xhr.responseText)));
    });
    xhr.addEventListener("error", () => reject(new Error("The upload failed: the server could not be reached.")));
    xhr.addEventListener("abort", () => reject(new Error("The upload was cancelled.")));
    const form = new FormData();
    form.append("threshold", String(threshold));
    form.append("file", file, file.name);
    xhr.send(form);
  });
  return { done, abort: () => xhr.abort() };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Poll GET v1/jobs/{id} until the job ends; `onJob(job)` sees every answer. Resolves to the finished job, or
// null once `isCurrent()` turns false (a newer upload took over); throws when the job failed or was cancelled.
// A server that does not answer is retried for about a minute.
export async function pollJob(jobId, key, { isCurrent, onJob, onRetry }) {
  let delay = POLL_FIRST_MS;
  let failures = 0;
  while (isCurrent()) {
    let job;
    try {
      job = JSON.parse(await getText(`v1/jobs/${encodeURIComponent(jobId)}`, key));
      failures = 0;
    } catch (error) {
      if (error instanceof ApiError || ++failures > MAX_NETWORK_RETRIES) throw error;
      onRetry(failures);
      await sleep(POLL_MAX_MS);
      continue;
    }
    if (!isCurrent()) return null;
    onJob(job);
    if (job.status === "finished") return job;
    if (job.status === "failed") throw new Error(`The analysis failed: ${job.error || "no reason given"}`);
    if (job.status === "canceled") throw new Error("The job was cancelled.");
    await sleep(delay);
    delay = Math.min(POLL_MAX_MS, delay * 1.3);
  }
  return null;
}

// ---------- live streams ----------

export async function sendJson(method, path, key, body) {
  const response = await fetch(path, {
    method, cache: "no-store",
    headers: { ...headers(key), ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new ApiError(response.status, reason(response.status, text));
  return text ? JSON.parse(text) : null;
}

// Server-Sent Events over fetch (an EventSource cannot send X-API-Key): calls onMessage({id, event, data}) for
// each message, reconnects with Last-Event-ID after a dropped connection, and stops when the server answers 204
// (the stream ended) or when close() is called. Returns {close()}.
export function followEvents(path, key, { lastEventId = null, onMessage, onState = () => {} }) {
  const controller = new AbortController();
  let last = lastEventId;
  let closed = false;
  const run = async () => {
    while (!closed) {
      try {
        const response = await fetch(path, {
          cache: "no-store", signal: controller.signal,
          headers: { ...headers(key), Accept: "text/event-stream", ...(last ? { "Last-Event-ID": last } : {}) },
        });
        if (response.status === 204) return onState("ended");
        if (!response.ok) throw new ApiError(response.status, reason(response.status, await response.text()));
        onState("open");
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const message = { id: null, event: "message", data: "" };
            for (const line of buffer.slice(0, end).split("\n")) {
              const colon = line.indexOf(":");
              if (colon <= 0) continue;  // a comment (keep-alive) or nothing
              const [name, value] = [line.slice(0, colon), line.slice(colon + 1).replace(/^ /, "")];
              if (name === "id") message.id = value;
              else if (name === "event") message.event = value;
              else if (name === "data") message.data += value;
            }
            buffer = buffer.slice(end + 2);
            if (message.id) last = message.id;
            if (message.data) onMessage({ ...message, data: JSON.parse(message.data) });
          }
        }
      } catch (error) {
        if (closed) return;
        if (error instanceof ApiError && error.status !== 503) return onState("error", error);
      }
      if (!closed) {
        onState("reconnecting");
        await sleep(POLL_MAX_MS);
      }
    }
  };
  run();
  return { close: () => { closed = true; controller.abort(); } };
}

// ---------- evidence (pictures and clips) ----------

// A page-local URL of an evidence file (an <img> or <video> cannot send X-API-Key, so the file is fetched with it
// and shown from memory): {url, headers}, or null when the server has none (404). Revoke `url` when done with it.
export async function fetchObjectUrl(path, key, signal = undefined) {
  const response = await fetch(path, { headers: headers(key), cache: "no-store", signal });
  if (response.status === 404) return null;
  if (!response.ok) throw new ApiError(response.status, reason(response.status, await response.text()));
  return { url: URL.createObjectURL(await response.blob()), headers: response.headers };
}

// The response headers of an evidence file without its body (its first byte only): null when there is none.
export async function probe(path, key, signal = undefined) {
  const response = await fetch(path, { headers: { ...headers(key), Range: "bytes=0-0" }, cache: "no-store", signal });
  if (response.status === 404) return null;
  if (!response.ok) throw new ApiError(response.status, reason(response.status, await response.text()));
  await response.arrayBuffer();
  return response.headers;
}

// An API link ("/v1/events/…") as a URL relative to the page, which may be served behind a path prefix.
export const relative = (link) => link.replace(/^\/+/, "");
