/* The page of `stemsep serve`: upload a song, follow its separation, play the stems in sync.
 *
 * Plain JavaScript modules, no build step and nothing loaded from elsewhere (it runs offline):
 *   api.js       the token, fetch/XHR upload, a job's server-sent events with reconnect
 *   player.js    the Web Audio player (every stem started at one context time; mute, solo, volume)
 *   mixer.js     the player's panel: stem rows and transport
 *   waveform.js  a stem's waveform on a canvas
 *   app.js       this page: its state and messages, the token form, the file, the upload, the job
 *
 * window.stemsep is a read-only view for tests and the console: state (idle, uploading, queued,
 * running, loading, ready, failed, refused, busy, lost), job, stems, durations {stem: seconds},
 * playing, position, audioState, message, error, and outputLevel() (RMS of the analyser's samples).
 */

import {
  JobFeed, api, auth, detailOf, fetchStem, jobPath, postJob, requestToken, retryAfter, setTokenPrompt,
} from "./api.js";
import { Mixer } from "./mixer.js";
import { Player } from "./player.js";

const $ = (selector, root = document) => root.querySelector(selector);
const DEFAULT_MODEL = "spleeter:2stems";

const page = { state: "idle", file: null, job: null, uploading: null };
const player = new Player();
const mixer = new Mixer(player);

// ---------------------------------------------------------------- messages

function setState(state) {
  page.state = state;
  document.body.dataset.state = state;
}

function say(text) {
  $("#message").textContent = text;
  $("#error").hidden = true;
  $("#error").textContent = "";
}

function complain(state, text) {
  setState(state);
  $("#message").textContent = "";
  $("#error").textContent = text;
  $("#error").hidden = false;
  $("#upload-button").disabled = !page.file;
}

function percent(fraction) {
  return `${Math.round(Math.max(0, Math.min(1, fraction)) * 100)}%`;
}

function busy(header) {
  const seconds = retryAfter(header);
  const when = seconds === null
    ? "try again in a minute"
    : `try again in ${seconds} second${seconds === 1 ? "" : "s"} (after ${new Date(Date.now() + seconds * 1000).toLocaleTimeString()})`;
  complain("busy", `The server is busy with other songs; ${when}.`);
}

// ---------------------------------------------------------------- token

let tokenWaiters = [];

/** Show the token form; resolves once a token is entered. */
function askToken(reason) {
  $("#token-form").hidden = false;
  $("#token-input").focus();
  complain(page.state, reason || "This server needs an access token.");
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

function onTokenSubmit(event) {
  event.preventDefault();
  auth.token = $("#token-input").value.trim();
  if (!auth.token) return;
  $("#token-input").value = "";
  $("#token-form").hidden = true;
  say("");
  const waiters = tokenWaiters;
  tokenWaiters = [];
  waiters.forEach((resolve) => resolve());
}

// ---------------------------------------------------------------- models and file

async function loadModels() {
  let models;
  try {
    const response = await api("/api/models");
    if (!response.ok) return;
    models = await response.json();
  } catch (_) {
    return; // the default model stays selectable
  }
  const select = $("#model");
  select.replaceChildren(
    ...models.map((model) => {
      const option = new Option(model.name, model.name, false, model.name === DEFAULT_MODEL);
      const parts = (model.instruments || []).join(", ");
      option.textContent = `${model.name}${parts ? ` (${parts})` : ""}${model.cached ? "" : " · downloads on first use"}`;
      return option;
    }),
  );
}

function chooseFile(file) {
  if (!file) return;
  page.file = file;
  $("#file-name").textContent = `${file.name} · ${(file.size / 1e6).toFixed(1)} MB`;
  $("#upload-button").disabled = page.uploading !== null;
  say(`Ready to separate ${file.name}.`);
}

function wireDropZone() {
  const zone = $("#drop-zone");
  for (const type of ["dragover", "drop"]) document.addEventListener(type, (event) => event.preventDefault());
  zone.addEventListener("dragenter", () => zone.classList.add("dragging"));
  zone.addEventListener("dragover", () => zone.classList.add("dragging"));
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    zone.classList.remove("dragging");
    chooseFile(event.dataTransfer.files[0]);
  });
  $("#file-input").addEventListener("change", (event) => chooseFile(event.target.files[0]));
}

// ---------------------------------------------------------------- upload

function showUpload(fraction) {
  $("#upload-progress").value = fraction;
  $("#upload-percent").textContent = percent(fraction);
}

function onUploadSubmit(event) {
  event.preventDefault();
  if (!page.file || page.uploading) return;
  player.context(); // created inside the click so that the browser lets it play
  player.unload();
  $("#player").hidden = true;
  $("#progress-panel").hidden = false;
  showJob({ state: "queued", progress: 0 });
  upload();
}

function upload() {
  const fields = { file: page.file, model: $("#model").value, codec: $("#codec").value };
  page.uploading = postJob(fields, showUpload).then(onUploaded, () => {
    page.uploading = null;
    complain("lost", "The connection to the server was lost during the upload; check that it is running and try again.");
  });
  $("#upload-button").disabled = true;
  setState("uploading");
  showUpload(0);
  say(`Uploading ${page.file.name}…`);
}

function onUploaded(xhr) {
  page.uploading = null;
  if (xhr.status === 201 || xhr.status === 200 || xhr.status === 202) {
    showUpload(1);
    feed.follow(JSON.parse(xhr.responseText));
  } else if (xhr.status === 401) {
    requestToken(xhr.responseText).then(upload);
  } else if (xhr.status === 503 || xhr.status === 429) {
    busy(xhr.getResponseHeader("Retry-After"));
  } else {
    complain("refused", detailOf(xhr.status, xhr.responseText));
  }
}

// ---------------------------------------------------------------- the job

function showJob(job) {
  const fraction = Number(job.progress) || 0;
  $("#job-progress").value = fraction;
  $("#job-percent").textContent = percent(fraction);
  if (job.state === "queued") say("Waiting in the queue…");
  if (job.state === "running") say(`Separating… ${percent(fraction)}`);
  if (job.state === "queued" || job.state === "running") setState(job.state);
}

function failed(job) {
  page.job = job;
  complain("failed", job.error || "The separation failed.");
}

const feed = new JobFeed({
  following(job) {
    page.job = job;
    $("#upload-button").disabled = true;
  },
  progress: (job) => showJob((page.job = job)),
  done: finish,
  failed,
  reconnecting: () => say("Connection lost, reconnecting…"),
  gone: () => complain("lost", "The server no longer has this job (it was deleted or the server restarted); upload the file again."),
});

async function loadStem(job, name) {
  const data = await fetchStem(job, name);
  try {
    return await player.context().decodeAudioData(data);
  } catch (_) {
    throw new Error(`this browser cannot decode ${job.codec || "the"} audio; download the stems or choose WAV`);
  }
}

async function finish(job) {
  page.job = job;
  setState("loading");
  $("#job-progress").value = 1;
  $("#job-percent").textContent = "100%";
  say("Loading the stems…");
  const names = job.stems || [];
  let buffers;
  try {
    buffers = await Promise.all(names.map((name) => loadStem(job, name)));
  } catch (error) {
    if (error instanceof TypeError) return feed.reconnect(job.id); // the connection dropped: fetch failed
    return complain("failed", `The stems could not be loaded: ${error.message}.`);
  }
  feed.retries = 0;
  player.load(names.map((name, i) => [name, buffers[i]]));
  mixer.show(job);
  setState("ready");
  $("#upload-button").disabled = !page.file;
  say(`Done: ${names.length} stems of ${job.filename || "your file"}. Press play.`);
}

// ---------------------------------------------------------------- start over

function reset() {
  feed.stop();
  player.unload();
  page.job = null;
  $("#player").hidden = true;
  $("#progress-panel").hidden = true;
  $("#stems").replaceChildren();
  $("#upload-button").disabled = !page.file;
  setState("idle");
  say(page.file ? `Ready to separate ${page.file.name}.` : "");
}

async function deleteJob() {
  const job = page.job;
  if (!job) return;
  try {
    const response = await api(jobPath(job.id), { method: "DELETE" });
    if (!response.ok && response.status !== 404) {
      return complain(page.state, detailOf(response.status, await response.text()));
    }
  } catch (_) {
    return complain(page.state, "The connection to the server was lost; the job was not deleted.");
  }
  reset();
  say(`Deleted ${job.filename || "the job"} from the server.`);
}

// ---------------------------------------------------------------- start

window.stemsep = Object.freeze({
  get state() {
    return page.state;
  },
  get job() {
    return page.job ? { ...page.job } : null;
  },
  get stems() {
    return [...player.stems.keys()];
  },
  get durations() {
    return Object.fromEntries([...player.stems].map(([name, stem]) => [name, stem.buffer.duration]));
  },
  get playing() {
    return player.playing;
  },
  get position() {
    return player.position();
  },
  get audioState() {
    return player.ctx ? player.ctx.state : "none";
  },
  get message() {
    return $("#message").textContent;
  },
  get error() {
    return $("#error").textContent;
  },
  outputLevel() {
    return player.level();
  },
});

auth.readFragment();
setState("idle");
setTokenPrompt(askToken);
wireDropZone();
mixer.wire();
$("#token-form").addEventListener("submit", onTokenSubmit);
$("#upload-form").addEventListener("submit", onUploadSubmit);
$("#new-job").addEventListener("click", reset);
$("#delete-job").addEventListener("click", deleteJob);
loadModels();
