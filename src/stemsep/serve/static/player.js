/* The synchronized player: every stem plays from one Web Audio context, started at the same context time.
 *
 *   one AudioBufferSourceNode per stem (sources are single-use: every play or seek makes new ones)
 *   stem GainNode (volume, mute, solo) -> master GainNode -> AnalyserNode -> speakers
 *
 * The position is computed from the context's clock, so it never drifts from what is heard.
 * Nothing here touches the page; `onended` is called when the song plays to its end.
 */

export class Player {
  constructor() {
    this.ctx = null;
    this.stems = new Map(); // name -> {buffer, gain, volume, muted, soloed}
    this.sources = [];
    this.playing = false;
    this.offset = 0; // seconds into the song while paused
    this.startedAt = 0; // context time at which the song's 0 would have played
    this.duration = 0;
    this.onended = () => {};
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
    this.onended();
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
