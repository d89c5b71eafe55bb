/* The page of `stemsep serve`: upload a song, follow its separation, play the stems in sync.
 *
 * Plain JavaScript, no build step and nothing loaded from elsewhere (it runs offline).
 *   upload     XMLHttpRequest POST /api/jobs (upload.onprogress drives the upload bar)
 *   progress   EventSource /api/jobs/{id}/events; on a drop the job is re-read and the stream reopened
 *   player     Web Audio: one AudioBufferSourceNode per stem, all started at the same context time,
 *              stem GainNode (volume, mute, solo) -> master GainNode -> AnalyserNode -> speakers
 *   token      from the URL fragment `#token=...` or asked for after a 401; kept in sessionStorage;
 *              sent as `Authorization: Bearer` by fetch/XHR and as `?token=` by EventSource and links
 *
 * window.stemsep is a read-only view for tests and the console: state (idle, uploading, queued,
 * running, loading, ready, failed, refused, busy, lost), job, stems, durations {stem: seconds},
 * playing, position, audioState, message, error, and outputLevel() (RMS of the analyser's samples).
 */
"use strict";

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const TOKEN_KEY = "stemsep.token";
  const DEFAULT_MODEL = "spleeter:2stems";

  const page = { state: "idle", file: null, job: null, uploading: null };

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

  function clock(seconds) {
    const whole = Math.max(0, Math.floor(seconds));
    return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
  }

  /** The server's one-sentence `detail`, else the HTTP status. */
  function detailOf(status, text) {
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
  function retryAfter(header) {
    if (!header) return null;
    if (/^\s*\d+\s*$/.test(header)) return Number(header);
    const when = Date.parse(header);
    return Number.isNaN(when) ? null : Math.max(0, Math.round((when - Date.now()) / 1000));
  }

  function busy(header) {
    const seconds = retryAfter(header);
    const when = seconds === null
      ? "try again in a minute"
      : `try again in ${seconds} second${seconds === 1 ? "" : "s"} (after ${new Date(Date.now() + seconds * 1000).toLocaleTimeString()})`;
    complain("busy", `The server is busy with other songs; ${when}.`);
  }

  // ---------------------------------------------------------------- token

  const auth = {
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

  let tokenWaiters = [];

  /** Show the token form; resolves once a token is entered. */
  function askToken(reason) {
    auth.token = "";
    const form = $("#token-form");
    form.hidden = false;
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

  /** Why a token is asked for: the server's sentence, or that the one given was wrong. */
  function refusedToken(text) {
    return auth.token ? "The server did not accept that token; enter the right one." : detailOf(401, text);
  }

  /** fetch with the token; a 401 asks for a token and tries again. */
  async function api(path, options = {}) {
    for (;;) {
      const response = await fetch(path, { ...options, headers: { ...auth.headers(), ...(options.headers || {}) } });
      if (response.status !== 401) return response;
      await askToken(refusedToken(await response.text()));
    }
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
    const form = new FormData();
    form.append("file", page.file, page.file.name);
    form.append("model", $("#model").value);
    form.append("codec", $("#codec").value);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/jobs");
    for (const [name, value] of Object.entries(auth.headers())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => event.lengthComputable && showUpload(event.loaded / event.total);
    xhr.onload = () => onUploaded(xhr);
    xhr.onerror = () => {
      page.uploading = null;
      complain("lost", "The connection to the server was lost during the upload; check that it is running and try again.");
    };
    page.uploading = xhr;
    $("#upload-button").disabled = true;
    setState("uploading");
    showUpload(0);
    say(`Uploading ${page.file.name}…`);
    xhr.send(form);
  }

  function onUploaded(xhr) {
    page.uploading = null;
    if (xhr.status === 201 || xhr.status === 200 || xhr.status === 202) {
      showUpload(1);
      watch(JSON.parse(xhr.responseText));
    } else if (xhr.status === 401) {
      askToken(refusedToken(xhr.responseText)).then(upload);
    } else if (xhr.status === 503 || xhr.status === 429) {
      busy(xhr.getResponseHeader("Retry-After"));
    } else {
      complain("refused", detailOf(xhr.status, xhr.responseText));
    }
  }

  // ---------------------------------------------------------------- job progress (server-sent events)

  const follow = { source: null, timer: 0, retries: 0 };

  function showJob(job) {
    const fraction = Number(job.progress) || 0;
    $("#job-progress").value = fraction;
    $("#job-percent").textContent = percent(fraction);
    if (job.state === "queued") say("Waiting in the queue…");
    if (job.state === "running") say(`Separating… ${percent(fraction)}`);
    if (job.state === "queued" || job.state === "running") setState(job.state);
  }

  function stopFollowing() {
    if (follow.source) follow.source.close();
    follow.source = null;
    clearTimeout(follow.timer);
  }

  /** Show a job and carry on from its state: finished, failed, or still to follow. */
  function watch(job) {
    stopFollowing();
    page.job = job;
    $("#upload-button").disabled = true;
    if (job.state === "done") return finish(job);
    if (job.state === "failed") return failed(job);
    showJob(job);
    const source = new EventSource(auth.url(`/api/jobs/${encodeURIComponent(job.id)}/events`));
    const read = (event) => {
      follow.retries = 0;
      return { ...page.job, ...JSON.parse(event.data) };
    };
    source.addEventListener("progress", (event) => showJob((page.job = read(event))));
    source.addEventListener("done", (event) => (stopFollowing(), finish(read(event))));
    source.addEventListener("failed", (event) => (stopFollowing(), failed(read(event))));
    source.onerror = () => (stopFollowing(), reconnect(job.id));
    follow.source = source;
  }

  /** The stream dropped: say so, wait (1, 2, 4 … 10 s), re-read the job, and follow it again. */
  function reconnect(id) {
    say("Connection lost, reconnecting…");
    const delay = Math.min(1000 * 2 ** follow.retries, 10000);
    follow.retries += 1;
    follow.timer = setTimeout(async () => {
      let response;
      try {
        response = await api(`/api/jobs/${encodeURIComponent(id)}`);
      } catch (_) {
        return reconnect(id);
      }
      if (response.status === 404) {
        return complain("lost", "The server no longer has this job (it was deleted or the server restarted); upload the file again.");
      }
      if (!response.ok) return reconnect(id);
      watch(await response.json());
    }, delay);
  }

  function failed(job) {
    page.job = job;
    complain("failed", job.error || "The separation failed.");
  }

  // ---------------------------------------------------------------- stems

  function stemPath(job, name) {
    return `/api/jobs/${encodeURIComponent(job.id)}/stems/${encodeURIComponent(name)}`;
  }

  async function loadStem(job, name) {
    const response = await api(stemPath(job, name));
    if (!response.ok) throw new Error(detailOf(response.status, await response.text()));
    const data = await response.arrayBuffer();
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
      if (error instanceof TypeError) return reconnect(job.id); // the connection dropped: fetch failed
      return complain("failed", `The stems could not be loaded: ${error.message}.`);
    }
    follow.retries = 0;
    player.load(names.map((name, i) => [name, buffers[i]]));
    showPlayer(job);
    setState("ready");
    $("#upload-button").disabled = !page.file;
    say(`Done: ${names.length} stems of ${job.filename || "your file"}. Press play.`);
  }

  function downloadName(job, name) {
    const base = (job.filename || "song").replace(/\.[^.]*$/, "");
    return `${base}_${name}.${job.codec || "wav"}`;
  }

  function showPlayer(job) {
    const list = $("#stems");
    list.replaceChildren(...[...player.stems.keys()].map((name) => stemRow(job, name)));
    const zip = $("#download-zip");
    zip.href = auth.url(`/api/jobs/${encodeURIComponent(job.id)}/zip`);
    zip.download = `${(job.filename || "stems").replace(/\.[^.]*$/, "")}_stems.zip`;
    $("#position").max = String(player.duration);
    $("#position").disabled = false;
    $("#play").disabled = false;
    $("#progress-panel").hidden = true;
    $("#player").hidden = false;
    showPosition();
    requestAnimationFrame(drawWaveforms);
  }

  function stemRow(job, name) {
    const row = $("#stem-template").content.firstElementChild.cloneNode(true);
    row.dataset.stem = name;
    $(".stem-name", row).textContent = name;
    const mute = $(".mute", row);
    const solo = $(".solo", row);
    const volume = $(".volume", row);
    mute.setAttribute("aria-label", `Mute ${name}`);
    solo.setAttribute("aria-label", `Solo ${name}`);
    volume.setAttribute("aria-label", `${name} volume`);
    mute.addEventListener("click", () => toggle(mute, (on) => player.mix(name, { muted: on })));
    solo.addEventListener("click", () => toggle(solo, (on) => player.mix(name, { soloed: on })));
    volume.addEventListener("input", () => player.mix(name, { volume: Number(volume.value) }));
    const link = $(".download", row);
    link.href = auth.url(stemPath(job, name));
    link.download = downloadName(job, name);
    link.setAttribute("aria-label", `Download ${name}`);
    const canvas = $(".waveform", row);
    canvas.setAttribute("aria-label", `Waveform of ${name}`);
    canvas.addEventListener("click", (event) => {
      const box = canvas.getBoundingClientRect();
      seekTo(((event.clientX - box.left) / box.width) * player.duration);
    });
    return row;
  }

  function toggle(button, apply) {
    const on = button.getAttribute("aria-pressed") !== "true";
    button.setAttribute("aria-pressed", String(on));
    apply(on);
  }

  // ---------------------------------------------------------------- waveforms

  /** Min and max of all channels for each pixel column, drawn as one vertical bar per column. */
  function drawWaveform(canvas, buffer) {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    canvas.width = width;
    canvas.height = height;
    const g = canvas.getContext("2d");
    g.fillStyle = getComputedStyle(canvas).color;
    const channels = Array.from({ length: buffer.numberOfChannels }, (_, c) => buffer.getChannelData(c));
    const perColumn = buffer.length / width;
    const middle = height / 2;
    for (let x = 0; x < width; x++) {
      const start = Math.floor(x * perColumn);
      const end = Math.min(buffer.length, Math.max(start + 1, Math.floor((x + 1) * perColumn)));
      let low = 1;
      let high = -1;
      for (const data of channels) {
        for (let i = start; i < end; i++) {
          const v = data[i];
          if (v < low) low = v;
          if (v > high) high = v;
        }
      }
      if (high < low) continue;
      const top = middle - Math.min(1, high) * middle;
      const bottom = middle - Math.max(-1, low) * middle;
      g.fillRect(x, top, 1, Math.max(1, bottom - top));
    }
  }

  function drawWaveforms() {
    for (const row of document.querySelectorAll("#stems .stem")) {
      const stem = player.stems.get(row.dataset.stem);
      if (stem) drawWaveform($(".waveform", row), stem.buffer);
    }
  }

  // ---------------------------------------------------------------- player

  class Player {
    constructor() {
      this.ctx = null;
      this.stems = new Map(); // name -> {buffer, gain, volume, muted, soloed}
      this.sources = [];
      this.playing = false;
      this.offset = 0; // seconds into the song while paused
      this.startedAt = 0; // context time at which the song's 0 would have played
      this.duration = 0;
    }

    /** The AudioContext and its fixed tail: master -> analyser -> destination. */
    context() {
      if (!this.ctx) {
        const Context = window.AudioContext || window.webkitAudioContext;
        this.ctx = new Context();
        this.master = this.ctx.createGain();
        this.analyser = this.ctx.createAnalyser();
        this.analyser.fftSize = 2048;
        this.master.connect(this.analyser);
        this.analyser.connect(this.ctx.destination);
        this.samples = new Float32Array(this.analyser.fftSize);
      }
      return this.ctx;
    }

    load(named) {
      this.unload();
      const ctx = this.context();
      for (const [name, buffer] of named) {
        const gain = ctx.createGain();
        gain.connect(this.master);
        this.stems.set(name, { buffer, gain, volume: 1, muted: false, soloed: false });
      }
      this.duration = Math.max(0, ...named.map(([, buffer]) => buffer.duration));
      this.offset = 0;
    }

    unload() {
      this.stop();
      for (const stem of this.stems.values()) stem.gain.disconnect();
      this.stems.clear();
      this.duration = 0;
      this.offset = 0;
    }

    position() {
      if (!this.playing) return this.offset;
      return Math.min(this.duration, Math.max(0, this.ctx.currentTime - this.startedAt));
    }

    /** Every stem from `offset`, all starting at one context time a few milliseconds ahead. */
    async play() {
      if (this.playing || !this.stems.size) return;
      if (this.ctx.state !== "running") await this.ctx.resume();
      if (this.playing) return; // a second press while resuming
      if (this.offset >= this.duration) this.offset = 0;
      const when = this.ctx.currentTime + 0.05;
      this.sources = [...this.stems.values()].map((stem) => {
        const source = this.ctx.createBufferSource();
        source.buffer = stem.buffer;
        source.connect(stem.gain);
        source.start(when, this.offset);
        return source;
      });
      const sources = this.sources;
      const longest = sources.reduce((a, b) => (b.buffer.duration > a.buffer.duration ? b : a));
      longest.onended = () => sources === this.sources && this.ended();
      this.startedAt = when - this.offset;
      this.playing = true;
    }

    pause() {
      if (!this.playing) return;
      this.offset = this.position();
      this.stop();
    }

    stop() {
      const sources = this.sources;
      this.sources = [];
      this.playing = false;
      for (const source of sources) {
        source.onended = null;
        source.stop();
        source.disconnect();
      }
    }

    ended() {
      this.stop();
      this.offset = 0;
      showPosition();
    }

    seek(seconds) {
      const resume = this.playing;
      this.stop();
      this.offset = Math.max(0, Math.min(this.duration, seconds));
      if (resume) this.play();
    }

    /** Change one stem's volume, mute or solo; every gain follows (mute beats solo). */
    mix(name, change) {
      Object.assign(this.stems.get(name), change);
      const soloing = [...this.stems.values()].some((stem) => stem.soloed);
      for (const stem of this.stems.values()) {
        const audible = !stem.muted && (!soloing || stem.soloed);
        stem.gain.gain.setTargetAtTime(audible ? stem.volume : 0, this.ctx.currentTime, 0.01);
      }
    }

    /** RMS of the analyser's current time-domain samples (0 when nothing sounds). */
    level() {
      if (!this.analyser) return 0;
      this.analyser.getFloatTimeDomainData(this.samples);
      let sum = 0;
      for (const v of this.samples) sum += v * v;
      return Math.sqrt(sum / this.samples.length);
    }
  }

  const player = new Player();

  // ---------------------------------------------------------------- transport

  let dragging = false;

  function showPosition() {
    const position = player.position();
    const fraction = player.duration ? position / player.duration : 0;
    if (!dragging) $("#position").value = String(position);
    $("#time").textContent = `${clock(position)} / ${clock(player.duration)}`;
    for (const head of document.querySelectorAll("#stems .playhead")) head.style.left = `${fraction * 100}%`;
    const button = $("#play");
    button.classList.toggle("playing", player.playing);
    button.setAttribute("aria-label", player.playing ? "Pause" : "Play");
  }

  function tick() {
    showPosition();
    if (player.playing) requestAnimationFrame(tick);
  }

  async function togglePlay() {
    if (player.playing) player.pause();
    else await player.play();
    tick();
  }

  async function seekTo(seconds) {
    player.seek(seconds);
    await player.ctx.resume();
    tick();
  }

  function wireTransport() {
    const slider = $("#position");
    $("#play").addEventListener("click", togglePlay);
    slider.addEventListener("input", () => {
      dragging = true;
      $("#time").textContent = `${clock(Number(slider.value))} / ${clock(player.duration)}`;
    });
    slider.addEventListener("change", () => {
      dragging = false;
      seekTo(Number(slider.value));
    });
    document.addEventListener("keydown", (event) => {
      const typing = event.target.closest("input, select, textarea, button, a");
      if (event.code === "Space" && !typing && !$("#player").hidden) {
        event.preventDefault();
        togglePlay();
      }
    });
    let pending = 0;
    new ResizeObserver(() => {
      cancelAnimationFrame(pending);
      pending = requestAnimationFrame(drawWaveforms);
    }).observe($("#stems"));
  }

  // ---------------------------------------------------------------- start over

  function reset() {
    stopFollowing();
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
      const response = await api(`/api/jobs/${encodeURIComponent(job.id)}`, { method: "DELETE" });
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
  wireDropZone();
  wireTransport();
  $("#token-form").addEventListener("submit", onTokenSubmit);
  $("#upload-form").addEventListener("submit", onUploadSubmit);
  $("#new-job").addEventListener("click", reset);
  $("#delete-job").addEventListener("click", deleteJob);
  loadModels();
})();
