/* A stem's waveform on a canvas: min and max of all channels for each pixel column, one vertical bar per
 * column, in the canvas's CSS `color`, at the screen's pixel ratio.
 */

export function drawWaveform(canvas, buffer) {
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
