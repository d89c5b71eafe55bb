/* The server's API as the page uses it: the access token, requests that carry it, the upload, a job's events.
 *
 *   token      from the URL fragment `#token=...` or asked for after a 401; kept in sessionStorage;
 *              sent as `Authorization: Bearer` by fetch/XHR and as `?token=` by EventSource and links
 *   upload     XMLHttpRequest POST /api/jobs (upload.onprogress drives the upload bar)
 *   progress   EventSource /api/jobs/{id}/events; on a drop the job is re-read and the stream reopened
 *
 * Nothing here touches the page: asking for a token and showing a job are the page's (app.js) callbacks.
 */

const TOKEN_KEY = "stemsep.token";

export const auth = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
  /** Take `#token=...` from the address, then drop it from the address bar. */
  readFragment() {
    const match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!match) return;
    this.token = decodeURIComponent(match[1]);
    history.replaceState(null, "", location.pathname + location.search);
  },
  headers() {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  },
  /** The URL with `?token=` for what cannot send headers (EventSource, download links). */
  url(path) {
    if (!this.token) return path;
    const url = new URL(path, location.href);
    url.searchParams.set("token", this.token);
    return url.pathname + url.search;
  },
};

export function jobPath(id) {
  return `/api/jobs/${encodeURIComponent(id)}`;
}

export function stemPath(job, name) {
  return `${jobPath(job.id)}/stems/${encodeURIComponent(name)}`;
}

/** The server's one-sentence `detail`, else the HTTP status. */
export function detailOf(status, text) {
  try {
    const detail = JSON.parse(text).detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
  } catch (_) {
    /* not JSON */
  }
  return `The server answered HTTP ${status}.`;
}

/** Retry-After as seconds (it may be a number or an HTTP date); null when absent. */
export function retryAfter(header) {
  if (!header) return null;
  if (/^\s*\d+\s*$/.test(header)) return Number(header);
  const when = Date.parse(header);
  return Number.isNaN(when) ? null : Math.max(0, Math.round((when - Date.now()) / 1000));
}

// ---------------------------------------------------------------- token

let askToken = (reason) => Promise.reject(new Error(reason));

/** The page's prompt: given the sentence to show, it resolves once a token has been entered. */
export function setTokenPrompt(prompt) {
  askToken = prompt;
}

/** A 401 answered `text`: forget the token and wait for another (the server's sentence, or that it was wrong). */
export function requestToken(text) {
  const reason = auth.token ? "The server did not accept that token; enter the right one." : detailOf(401, text);
  auth.token = "";
  return askToken(reason);
}

/** fetch with the token; a 401 asks for a token and tries again. */
export async function api(path, options = {}) {
  for (;;) {
    const response = await fetch(path, { ...options, headers: { ...auth.headers(), ...(options.headers || {}) } });
    if (response.status !== 401) return response;
    await requestToken(await response.text());
  }
}

/** The stem's encoded bytes; throws the server's sentence when it refuses, a TypeError when the connection drops. */
export async function fetchStem(job, name) {
  const response = await api(stemPath(job, name));
  if (!response.ok) throw new Error(detailOf(response.status, await response.text()));
  return response.arrayBuffer();
}

// ---------------------------------------------------------------- upload

/**
 * POST /api/jobs with the file and its options; onProgress(fraction) follows the upload. Resolves to the
 * XMLHttpRequest once the server answers (whatever its status), rejects when the connection is lost.
 */
export function postJob({ file, model, codec }, onProgress) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("model", model);
  form.append("codec", codec);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/jobs");
    for (const [name, value] of Object.entries(auth.headers())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => event.lengthComputable && onProgress(event.loaded / event.total);
    xhr.onload = () => resolve(xhr);
    xhr.onerror = () => reject(new TypeError("The connection to the server was lost during the upload."));
    xhr.send(form);
  });
}

// ---------------------------------------------------------------- job progress (server-sent events)

/**
 * Follows one job until it is done, failed or gone, reopening its event stream after a drop.
 * `on` holds the page's callbacks: following(job) for each job taken up, progress(job), done(job),
 * failed(job), reconnecting() when the stream dropped, gone() when the server no longer has the job.
 */
export class JobFeed {
  constructor(on) {
    this.on = on;
    this.source = null;
    this.timer = 0;
    this.retries = 0;
    this.job = null;
  }

  /** Take up a job and carry on from its state: finished, failed, or still to follow. */
  follow(job) {
    this.stop();
    this.job = job;
    this.on.following(job);
    if (job.state === "done") return this.on.done(job);
    if (job.state === "failed") return this.on.failed(job);
    this.on.progress(job);
    const source = new EventSource(auth.url(`${jobPath(job.id)}/events`));
    const read = (event) => {
      this.retries = 0;
      return (this.job = { ...this.job, ...JSON.parse(event.data) });
    };
    source.addEventListener("progress", (event) => this.on.progress(read(event)));
    source.addEventListener("done", (event) => (this.stop(), this.on.done(read(event))));
    source.addEventListener("failed", (event) => (this.stop(), this.on.failed(read(event))));
    source.onerror = () => (this.stop(), this.reconnect(job.id));
    this.source = source;
  }

  stop() {
    if (this.source) this.source.close();
    this.source = null;
    clearTimeout(this.timer);
  }

  /** The stream dropped: say so, wait (1, 2, 4 … 10 s), re-read the job, and follow it again. */
  reconnect(id) {
    this.on.reconnecting();
    const delay = Math.min(1000 * 2 ** this.retries, 10000);
    this.retries += 1;
    this.timer = setTimeout(async () => {
      let response;
      try {
        response = await api(jobPath(id));
      } catch (_) {
        return this.reconnect(id);
      }
      if (response.status === 404) return this.on.gone();
      if (!response.ok) return this.reconnect(id);
      this.follow(await response.json());
    }, delay);
  }
}
