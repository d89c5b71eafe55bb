"""Separate a 16-bit WAV with an exported *waveform* model, using only numpy and ai-edge-litert.

The reference for app developers porting stemsep to Kotlin or Swift: everything
an app does around the .tflite file is in `separate` below (about 20 lines).

    stemsep export -p spleeter:2stems --format tflite --kind waveform -o exported
    python examples/separate_wav.py exported/2stems-waveform-fp32.tflite song.wav out/

The model takes a stereo float32 chunk of `chunk_samples` samples and returns, per
instrument, the inverse STFT of its T frames. Chunks start every `hop_samples`
samples of the song prefixed with `leading_zeros` zeros (Spleeter's convention);
consecutive outputs overlap by chunk_samples - hop_samples samples and are added.
The result equals Spleeter's whole-song separation: the U-Net sees the same
512-frame segments, and the overlap-add completes every frame.
"""

import json
import sys
import wave
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as f:
        if f.getsampwidth() != 2:
            raise SystemExit(f"{path}: this example reads 16-bit PCM WAV only")
        data = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").reshape(-1, f.getnchannels())
        rate = f.getframerate()
    samples = data.astype(np.float32) / 32768.0
    return (np.repeat(samples, 2, axis=1) if samples.shape[1] == 1 else samples[:, :2]), rate


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def separate(model_path: Path, song: np.ndarray) -> dict[str, np.ndarray]:
    meta = json.loads(Path(str(model_path) + ".json").read_text())
    chunk, hop, lead = (meta["chunking"][k] for k in ("chunk_samples", "hop_samples", "leading_zeros"))
    interpreter = Interpreter(model_path=str(model_path), num_threads=2)
    run = interpreter.get_signature_runner(next(iter(interpreter.get_signature_list())))

    n = song.shape[0]
    n_chunks = -(-(n + lead) // hop)  # enough chunks to cover the padded song
    padded = np.zeros(((n_chunks - 1) * hop + chunk, 2), np.float32)
    padded[lead : lead + n] = song
    stems = {name: np.zeros_like(padded) for name in meta["instruments"]}
    for k in range(n_chunks):
        outputs = run(waveform=padded[k * hop : k * hop + chunk])
        for name, samples in outputs.items():
            stems[name][k * hop : k * hop + chunk] += samples
    return {name: samples[lead : lead + n] for name, samples in stems.items()}


def main() -> None:
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    model_path, wav_path, out_dir = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    song, rate = read_wav(wav_path)
    meta = json.loads(Path(str(model_path) + ".json").read_text())
    if rate != meta["sample_rate"]:
        raise SystemExit(f"{wav_path} is at {rate} Hz; this example needs {meta['sample_rate']} Hz")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, samples in separate(model_path, song).items():
        write_wav(out_dir / f"{name}.wav", samples, rate)
        print(out_dir / f"{name}.wav")


if __name__ == "__main__":
    main()
