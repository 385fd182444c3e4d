// The jobs uploaded from this browser, per API key: the API has no listing of a key's jobs, so their ids are kept
// in localStorage (at most MAX_JOBS, newest first) and each is read again from GET v1/jobs/{id} when shown. A job
// the server no longer knows (deleted, or its record expired) is dropped from the list. Where storage is blocked
// the list lives as long as the page.

const MAX_JOBS = 50;
const memory = new Map();  // storage name -> list, where localStorage is blocked

// Jobs are kept apart per key, under a short fingerprint of it (not a secret: the key itself is stored beside it).
function storageName(key) {
  let hash = 0x811c9dc5;
  for (const c of key) hash = Math.imul(hash ^ c.codePointAt(0), 0x01000193) >>> 0;
  return `vad.jobs.${key ? hash.toString(16) : "none"}`;
}

// [{id, filename, at}], newest first.
export function jobHistory(key) {
  const name = storageName(key);
  try {
    const list = JSON.parse(localStorage.getItem(name) || "[]");
    return Array.isArray(list) ? list.filter((job) => job && typeof job.id === "string") : [];
  } catch {
    return memory.get(name) || [];
  }
}

function keep(key, list) {
  const name = storageName(key);
  memory.set(name, list);
  try {
    localStorage.setItem(name, JSON.stringify(list));
  } catch {
    // storage blocked: kept in memory only
  }
}

export function rememberJob(key, job) {
  const list = jobHistory(key).filter((known) => known.id !== job.id);
  list.unshift({ id: job.id, filename: job.filename, at: job.created_at || Date.now() / 1000 });
  keep(key, list.slice(0, MAX_JOBS));
}

export function forgetJob(key, id) {
  keep(key, jobHistory(key).filter((known) => known.id !== id));
}
