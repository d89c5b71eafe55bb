/* The mixing desk on the page (#player): one row per stem (mute, solo, volume, waveform, download) and the
 * transport (play/pause, position slider, time), drawn from and driving one Player.
 *
 * Space plays and pauses unless a control has the focus; clicking a waveform seeks there; the slider
 * seeks when released. Waveforms are redrawn when the list of stems changes size.
 */

import { auth, jobPath, stemPath } from "./api.js";
import { drawWaveform } from "./waveform.js";

const $ = (selector, root = document) => root.querySelector(selector);

function clock(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

function downloadName(job, name) {
  const base = (job.filename || "song").replace(/\.[^.]*$/, "");
  return `${base}_${name}.${job.codec || "wav"}`;
}

function toggle(button, apply) {
  const on = button.getAttribute("aria-pressed") !== "true";
  button.setAttribute("aria-pressed", String(on));
  apply(on);
}

export class Mixer {
  constructor(player) {
    this.player = player;
    this.dragging = false; // the position slider is held: it shows where it is, not where the song is
    player.onended = () => this.showPosition();
  }

  /** The loaded stems of a finished job, in place of the progress panel. */
  show(job) {
    const player = this.player;
    $("#stems").replaceChildren(...[...player.stems.keys()].map((name) => this.row(job, name)));
    const zip = $("#download-zip");
    zip.href = auth.url(`${jobPath(job.id)}/zip`);
    zip.download = `${(job.filename || "stems").replace(/\.[^.]*$/, "")}_stems.zip`;
    $("#position").max = String(player.duration);
    $("#position").disabled = false;
    $("#play").disabled = false;
    $("#progress-panel").hidden = true;
    $("#player").hidden = false;
    this.showPosition();
    requestAnimationFrame(() => this.drawWaveforms());
  }

  row(job, name) {
    const player = this.player;
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
      this.seekTo(((event.clientX - box.left) / box.width) * player.duration);
    });
    return row;
  }

  drawWaveforms() {
    for (const row of document.querySelectorAll("#stems .stem")) {
      const stem = this.player.stems.get(row.dataset.stem);
      if (stem) drawWaveform($(".waveform", row), stem.buffer);
    }
  }

  showPosition() {
    const player = this.player;
    const position = player.position();
    const fraction = player.duration ? position / player.duration : 0;
    if (!this.dragging) $("#position").value = String(position);
    $("#time").textContent = `${clock(position)} / ${clock(player.duration)}`;
    for (const head of document.querySelectorAll("#stems .playhead")) head.style.left = `${fraction * 100}%`;
    const button = $("#play");
    button.classList.toggle("playing", player.playing);
    button.setAttribute("aria-label", player.playing ? "Pause" : "Play");
  }

  tick() {
    this.showPosition();
    if (this.player.playing) requestAnimationFrame(() => this.tick());
  }

  async togglePlay() {
    if (this.player.playing) this.player.pause();
    else await this.player.play();
    this.tick();
  }

  async seekTo(seconds) {
    this.player.seek(seconds);
    await this.player.ctx.resume();
    this.tick();
  }

  /** The transport's controls, the Space key, and redrawing the waveforms when the stems change size. */
  wire() {
    const slider = $("#position");
    $("#play").addEventListener("click", () => this.togglePlay());
    slider.addEventListener("input", () => {
      this.dragging = true;
      $("#time").textContent = `${clock(Number(slider.value))} / ${clock(this.player.duration)}`;
    });
    slider.addEventListener("change", () => {
      this.dragging = false;
      this.seekTo(Number(slider.value));
    });
    document.addEventListener("keydown", (event) => {
      const typing = event.target.closest("input, select, textarea, button, a");
      if (event.code === "Space" && !typing && !$("#player").hidden) {
        event.preventDefault();
        this.togglePlay();
      }
    });
    let pending = 0;
    new ResizeObserver(() => {
      cancelAnimationFrame(pending);
      pending = requestAnimationFrame(() => this.drawWaveforms());
    }).observe($("#stems"));
  }
}
