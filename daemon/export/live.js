// afx live input: the `fft` feature columns and the designed channels (pulse, drift, level) approximated in
// the browser from a Web Audio AnalyserNode, for the microphone or a file the user picks (or the player's own
// track, to compare with the exact features). An approximation of daemon/audio/features.py, not a copy:
// - the analyser's 2048-point FFT at the context's rate (not librosa's STFT at 22.05 kHz);
// - the same conditioning rules (docs/FEATURES.md), with statistics over the last AFX_LIVE_MEMORY_S seconds
//   instead of the whole track: energies are levels over max(loud − 40 dB, −80 dBFS) with loud the recent
//   95th percentile; the onset is the dB-spectrum flux × presence × level over its recent 99th percentile,
//   0 up to ONSET_FLOOR of that and rising to 1 above it (the flux column and the pulse);
//   centroid and rolloff are tanh(z/2) over recent frames with signal, × presence; presence is the absolute
//   gate on the RMS (0 at −80 dBFS, 1 from −70); each kind has the renderer's attack/release follower;
// - beats from an onset threshold (not librosa's beat tracker), none without signal;
// - pulse from the same whole-spectrum onset (not HPSS's percussive part), instant attack, 0.12 s release;
//   drift integrates 0.03 + 0.97 · level · (0.6 + 0.4 · tonal change), tonal change the flux of a 12-bin
//   chroma folded from the analyser's spectrum; level is the smoothed RMS level.
// Columns of other sets (mfcc, chroma, embeddings) stay 0, their median.
"use strict";

const AFX_LIVE_BANDS = {bass: [20, 250], mid: [250, 4000], treble: [4000, 20000]};
const AFX_LIVE_KINDS = {bass: "energy", mid: "energy", treble: "energy", rms: "energy", centroid: "shape",
                        rolloff: "shape", flux: "onset", time: "raw", beat: "raw"};
// attack/release time constants (s) per kind: SMOOTHING and PULSE_RELEASE_S in daemon/audio/features.py
const AFX_LIVE_SMOOTHING = {onset: [0, 0.08], energy: [0.02, 0.25], shape: [0.15, 0.40], pulse: [0, 0.12]};
const AFX_LIVE_FLOOR_DB = -80, AFX_LIVE_GATE_DB = 10, AFX_LIVE_RANGE_DB = 40;  // ABS_FLOOR_DB, GATE_DB, RANGE_DB
const AFX_LIVE_MOTION_IDLE = 0.03;  // MOTION_IDLE
const AFX_LIVE_ONSET_FLOOR = 0.3;  // ONSET_FLOOR
const AFX_LIVE_MEMORY_S = 20;  // the recent past the running statistics look at
const AFX_LIVE_SAMPLE_S = 0.05;  // how often a value joins that memory
const AFX_LIVE_BEAT_DECAY_S = 0.15;  // BEAT_DECAY_S

// the last AFX_LIVE_MEMORY_S seconds of one value, sampled every AFX_LIVE_SAMPLE_S; percentiles of it
function afxRecent() {
  const size = Math.round(AFX_LIVE_MEMORY_S / AFX_LIVE_SAMPLE_S), values = [];
  let sorted = null;
  return {
    push(v) { values.push(v); if (values.length > size) values.shift(); sorted = null; },
    count: () => values.length,
    percentile(p) {
      if (!values.length) return 0;
      sorted = sorted || values.slice().sort((a, b) => a - b);
      return sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))];
    },
  };
}

// one-pole attack/release follower, as envelope() in daemon/audio/features.py but for a varying dt
function afxFollower([attack, release]) {
  let state = null;
  return (x, dt) => {
    if (state === null) state = x;
    const tau = x > state ? attack : release;
    state += (tau > 0 ? 1 - Math.exp(-dt / tau) : 1) * (x - state);
    return state;
  };
}

function afxLive(columns) {
  let ctx = null, analyser = null, source = null, stream = null, started = 0, clock = null;
  let spectrum = null, wave = null, previous = null, previousChroma = null, lastBeat = -1, lastT = 0;
  let sampledAt = -1, drift = 0, memory = null, smooth = null;
  const names = columns.map((c) => c.startsWith("fft.") ? c.slice(4) : null);

  function reset() {
    memory = new Map();  // name → afxRecent
    smooth = new Map();  // name → afxFollower
    previous = previousChroma = null;
    lastBeat = -1;
    sampledAt = -1;
    drift = 0;
  }
  const recent = (name) => memory.get(name) || memory.set(name, afxRecent()).get(name);
  const follow = (name, kind, x, dt) =>
    (smooth.get(name) || smooth.set(name, afxFollower(AFX_LIVE_SMOOTHING[kind])).get(name))(x, dt);

  // dB → level in [0, 1] over max(recent loud − 40 dB, −80 dBFS) (energy_level)
  function level(name, db, sample) {
    const mem = recent(name);
    if (sample) mem.push(db);
    const loud = mem.count() ? mem.percentile(95) : db;
    const low = Math.max(loud - AFX_LIVE_RANGE_DB, AFX_LIVE_FLOOR_DB);
    return Math.min(Math.max((db - low) / AFX_LIVE_RANGE_DB, 0), 1);
  }

  // an onset strength over its recent 99th percentile, clipped to [0, 1]
  function onsetScaled(name, value, sample) {
    const mem = recent(name);
    if (sample) mem.push(value);
    const scale = mem.percentile(99);
    return scale > 1e-8 ? Math.min(Math.max(value / scale, 0), 1) : 0;
  }

  // tanh(z/2) of the recent median/MAD over frames with signal, × presence
  function shape(name, value, presence, sample) {
    const mem = recent(name), spread = recent(name + ":mad");
    if (sample && presence > 0.5) {
      mem.push(value);
      spread.push(Math.abs(value - mem.percentile(50)));  // the MAD: deviations from the running median
    }
    if (mem.count() < 5) return 0;
    const centre = mem.percentile(50), scale = 1.4826 * spread.percentile(50);
    return scale > 1e-8 ? Math.tanh((value - centre) / scale / 2) * presence : 0;
  }

  function analyse(dt, now) {
    analyser.getFloatFrequencyData(spectrum);
    analyser.getFloatTimeDomainData(wave);
    const sample = sampledAt < 0 || now - sampledAt >= AFX_LIVE_SAMPLE_S;
    if (sample) sampledAt = now;
    const hzPerBin = ctx.sampleRate / analyser.fftSize;
    const power = spectrum.map((db) => Math.pow(10, Math.max(db, -160) / 10));
    let total = 0;
    for (const p of power) total += p;
    total = Math.max(total, 1e-10);
    let square = 0;
    for (const s of wave) square += s * s;
    const rmsDb = 10 * Math.log10(Math.max(square / wave.length, 1e-20));
    const presence = Math.min(Math.max((rmsDb - AFX_LIVE_FLOOR_DB) / AFX_LIVE_GATE_DB, 0), 1);
    // a band's level: the frame's RMS level plus the band's share of the power, in dB (as _fft)
    const band = ([lo, hi]) => {
      let sum = 0;
      for (let k = Math.ceil(lo / hzPerBin); k < Math.min(power.length, hi / hzPerBin); k++) sum += power[k];
      return Math.max(rmsDb + 10 * Math.log10(Math.max(sum, 1e-10) / total), AFX_LIVE_FLOOR_DB - 80);
    };
    let magnitudeSum = 0, weighted = 0;
    const magnitude = power.map(Math.sqrt);
    magnitude.forEach((m, k) => { magnitudeSum += m; weighted += m * k * hzPerBin; });
    let running = 0, rolloff = 0;
    for (let k = 0; k < magnitude.length; k++) {
      running += magnitude[k];
      if (running >= 0.85 * magnitudeSum) { rolloff = k * hzPerBin; break; }
    }
    const rmsLevel = level("rms", rmsDb, sample);
    // spectral flux of the dB spectrum (its rising part, as librosa's onset strength), gated and level-weighted
    let flux = 0;
    if (previous) for (let k = 0; k < spectrum.length; k++) {
      flux += Math.max(0, Math.max(spectrum[k], -100) - Math.max(previous[k], -100));
    }
    previous = spectrum.slice();
    const share = onsetScaled("flux", flux / spectrum.length * presence * rmsLevel, sample);
    const onset = Math.max(share - AFX_LIVE_ONSET_FLOOR, 0) / (1 - AFX_LIVE_ONSET_FLOOR);  // clear_onsets
    if (share > 0.6 && presence >= 0.5 && now - lastBeat > 0.25) lastBeat = now;
    // tonal change: flux of a 12-bin chroma folded from 65 Hz – 5 kHz
    const chroma = new Float64Array(12);
    for (let k = Math.ceil(65 / hzPerBin); k < Math.min(power.length, 5000 / hzPerBin); k++) {
      chroma[((Math.round(12 * Math.log2(k * hzPerBin / 440)) % 12) + 12 + 9) % 12] += power[k];
    }
    const norm = Math.hypot(...chroma) || 1, before = previousChroma;
    previousChroma = chroma.map((c) => c / norm);
    let similar = 1;
    if (before) { similar = 0; for (let i = 0; i < 12; i++) similar += previousChroma[i] * before[i]; }
    const tonal = onsetScaled("tonal", (1 - similar) * presence * rmsLevel, sample);
    return {
      values: {
        bass: level("bass", band(AFX_LIVE_BANDS.bass), sample), mid: level("mid", band(AFX_LIVE_BANDS.mid), sample),
        treble: level("treble", band(AFX_LIVE_BANDS.treble), sample), rms: rmsLevel,
        centroid: shape("centroid", weighted / Math.max(magnitudeSum, 1e-10), presence, sample),
        rolloff: shape("rolloff", rolloff, presence, sample), flux: onset,
        beat: lastBeat < 0 ? 0 : Math.exp(-(now - lastBeat) / AFX_LIVE_BEAT_DECAY_S),
      },
      onset, tonal, presence,
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
      reset();
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
      const now = ctx.currentTime, dt = Math.max(now - lastT, 1 / 240);
      lastT = now;
      const {values, onset, tonal} = analyse(dt, now);
      const position = clock && clock.duration ? clock.currentTime / clock.duration
                                               : ((now - started) % 180) / 180;  // the mic: a 3-minute cycle
      values.time = position;
      names.forEach((name, c) => {
        const kind = AFX_LIVE_KINDS[name];
        row[c] = !kind ? 0 : kind === "raw" ? values[name] : follow(name, kind, values[name], dt);
      });
      const loud = follow("level", "energy", values.rms, dt);
      const change = follow("tonal", "shape", tonal, dt);
      drift += (AFX_LIVE_MOTION_IDLE + (1 - AFX_LIVE_MOTION_IDLE) * loud * (0.6 + 0.4 * change)) * dt;
      channels[0] = follow("pulse", "pulse", onset, dt);
      channels[1] = drift;
      channels[2] = loud;
      return position;
    },
  };
}
