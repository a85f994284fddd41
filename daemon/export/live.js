// afx live input: the `fft` feature columns approximated in the browser from a Web Audio AnalyserNode, for
// the microphone or a file the user picks (or the player's own track, to compare with the exact features).
// An approximation of daemon/audio/features.py, not a copy: the analyser's 2048-point FFT at the context's
// rate (not librosa's STFT at 22.05 kHz), beats from a flux threshold (not librosa's beat tracker), and
// running statistics over the last ~10 s instead of the whole track's median/MAD, then tanh(z/2) as there.
// Columns of other sets (mfcc, chroma, embeddings) stay 0, their median.
"use strict";

const AFX_LIVE_BANDS = {bass: [20, 250], mid: [250, 4000], treble: [4000, 20000]};
const AFX_LIVE_RAW = new Set(["time", "beat"]);  // bounded already: not normalised (as in the fft set)
const AFX_LIVE_MEMORY_S = 10;  // time constant of the running mean and variance
const AFX_LIVE_BEAT_DECAY_S = 0.15;  // BEAT_DECAY_S in daemon/audio/features.py

function afxLive(columns) {
  let ctx = null, analyser = null, source = null, stream = null, started = 0, clock = null;
  let spectrum = null, wave = null, previous = null, lastBeat = -1, lastT = 0;
  const stats = new Map();  // column → {mean, variance}
  const names = columns.map((c) => c.startsWith("fft.") ? c.slice(4) : null);
  const flux = {mean: 0, variance: 1};

  function normalise(name, value, dt) {
    const s = stats.get(name) || {mean: value, variance: 0, n: 0};
    s.n++;
    const a = Math.max(Math.min(1, dt / AFX_LIVE_MEMORY_S), 1 / s.n);  // plain mean and variance at first
    s.mean += a * (value - s.mean);
    s.variance += a * ((value - s.mean) ** 2 - s.variance);
    stats.set(name, s);
    const spread = Math.sqrt(s.variance);
    return spread > 1e-6 && s.n > 5 ? Math.tanh((value - s.mean) / spread / 2) : 0;
  }

  function raw(dt, now) {
    analyser.getFloatFrequencyData(spectrum);
    analyser.getFloatTimeDomainData(wave);
    const hzPerBin = ctx.sampleRate / analyser.fftSize;
    const power = spectrum.map((db) => Math.pow(10, Math.max(db, -160) / 10));
    const band = ([lo, hi]) => {
      let sum = 0;
      for (let k = Math.ceil(lo / hzPerBin); k < Math.min(power.length, hi / hzPerBin); k++) sum += power[k];
      return 10 * Math.log10(Math.max(sum, 1e-10));
    };
    let total = 0, weighted = 0;
    const magnitude = power.map(Math.sqrt);
    magnitude.forEach((m, k) => { total += m; weighted += m * k * hzPerBin; });
    let running = 0, rolloff = 0;
    for (let k = 0; k < magnitude.length; k++) {
      running += magnitude[k];
      if (running >= 0.85 * total) { rolloff = k * hzPerBin; break; }
    }
    let onset = 0;  // spectral flux of the dB spectrum, the rising part only (as librosa's onset strength)
    if (previous) for (let k = 0; k < spectrum.length; k++) onset += Math.max(0, Math.max(spectrum[k], -100) - Math.max(previous[k], -100));
    previous = spectrum.slice();
    onset /= spectrum.length;
    const a = Math.min(1, dt / AFX_LIVE_MEMORY_S);
    flux.mean += a * (onset - flux.mean);
    flux.variance += a * ((onset - flux.mean) ** 2 - flux.variance);
    if (onset > flux.mean + 1.5 * Math.sqrt(flux.variance) && now - lastBeat > 0.25 && onset > 0.5) lastBeat = now;
    let square = 0;
    for (const s of wave) square += s * s;
    return {
      bass: band(AFX_LIVE_BANDS.bass), mid: band(AFX_LIVE_BANDS.mid), treble: band(AFX_LIVE_BANDS.treble),
      centroid: total > 0 ? weighted / total : 0, rolloff, flux: onset,
      rms: 10 * Math.log10(Math.max(square / wave.length, 1e-10)),
      beat: lastBeat < 0 ? 0 : Math.exp(-(now - lastBeat) / AFX_LIVE_BEAT_DECAY_S),
    };
  }

  return {
    // kind: "mic", or an <audio> element to analyse (the player's own, playing a picked file or the track)
    async start(kind) {
      this.stop();
      ctx = ctx || new AudioContext();
      await ctx.resume();
      analyser = ctx.createAnalyser();
      analyser.fftSize = 2048;
      analyser.smoothingTimeConstant = 0;
      spectrum = new Float32Array(analyser.frequencyBinCount);
      wave = new Float32Array(analyser.fftSize);
      if (kind === "mic") {
        stream = await navigator.mediaDevices.getUserMedia({audio: true});
        source = ctx.createMediaStreamSource(stream);
        source.connect(analyser);  // not to the speakers: no feedback
        clock = null;
      } else {
        kind.afxSource = kind.afxSource || ctx.createMediaElementSource(kind);  // once per element
        source = kind.afxSource;
        source.connect(analyser);
        source.connect(ctx.destination);
        clock = kind;
      }
      started = ctx.currentTime;
      stats.clear();
      previous = null;
      lastBeat = -1;
      lastT = ctx.currentTime;
    },
    stop() {
      if (source) source.disconnect();
      if (stream) stream.getTracks().forEach((t) => t.stop());
      source = stream = analyser = null;
    },
    active: () => !!analyser,
    // fills `row` with this moment's features and `channels` with its pulse, drift and level; returns the
    // position input (0 → 1)
    update(row, channels) {
      channels.fill(0);
      const now = ctx.currentTime, dt = Math.max(now - lastT, 1 / 240);
      lastT = now;
      const values = raw(dt, now);
      const position = clock && clock.duration ? clock.currentTime / clock.duration
                                               : ((now - started) % 180) / 180;  // the mic: a 3-minute cycle
      values.time = position;
      names.forEach((name, c) => {
        if (name === null || !(name in values)) { row[c] = 0; return; }
        row[c] = AFX_LIVE_RAW.has(name) ? values[name] : normalise(name, values[name], dt);
      });
      return position;
    },
  };
}
