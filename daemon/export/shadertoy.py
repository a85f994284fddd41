"""The Shadertoy variant: the style's feature columns and designed channels approximated from iChannel0.

Shadertoy gives a music, SoundCloud or microphone input as a 512×2 texture: row 0 (y = 0.25) is the FFT,
512 bins over 0–11 kHz (a 44.1 kHz context), each a byte of dB scaled from −100 dB to −30 dB; row 1
(y = 0.75) is the waveform around 0.5. afx's renderer conditions every column per track (docs/FEATURES.md:
energies as levels in [0, 1] below the track's loud level, the onset in [0, 1], spectral shape as tanh(z/2));
a live shader cannot see the whole track, so each column uses a fixed reference level, centre and spread
instead, chosen for typical music levels. The mapping (also in README.md):

| column | from iChannel0 |
|---|---|
| bass, mid, treble | mean FFT byte in 20–250 Hz, 250–4000 Hz, 4–11 kHz as a level: 1 at 0.85 (−40 dB), 0 40 dB below |
| centroid, rolloff | amplitude-weighted mean frequency; frequency under which 85 % of the energy lies; centred on 2 kHz / 4 kHz |
| flux | treble level above byte 0.45, in [0, 1] (a single pass has no previous frame to difference against) |
| time | `iChannelTime[0] / AFX_TRACK_SECONDS` |
| beat | `smoothstep(0.65, 0.85, bass level)`: a kick threshold, not a beat tracker |
| rms | RMS of the waveform row as a level in [0, 1]: 0 at −50 dB, 1 at −10 dB |
| others (mfcc, chroma, embeddings) | 0, their median |

The designed channels (pulse, drift, level; the encoder's pulse and motion inputs are formulas over them):

| channel | from iChannel0 |
|---|---|
| pulse | the beat column's kick threshold on the bass level (the renderer's: HPSS percussive onsets, 0.12 s release) |
| drift | `iChannelTime[0] × AFX_DRIFT_RATE` (0.5): a steady mid-level speed (the renderer's slows when quiet) |
| level | the rms column: 0 at −50 dB, 1 at an assumed loud level of −10 dB (the renderer's: the track's own) |

A single pass keeps no state, so neither the pulse's release nor the level-dependent drift can be followed.

A style saved without channels reads none of them. The network's position input is
`iChannelTime[0] / AFX_TRACK_SECONDS` too. Weights are constant arrays
(Shadertoy cannot load a float texture), which ANGLE accepts up to width 128.
"""

from __future__ import annotations

from daemon.export.glsl import glsl_float

DEFAULT_TRACK_SECONDS = 180.0
DRIFT_RATE = 0.5  # drift seconds per second of audio: MOTION_IDLE + (1 - MOTION_IDLE) × a middling level

HELPERS = """// afx: iChannel0's audio texture → afx feature columns (approximations: see the export's README section)
float afx_level(float hz) { return texture(iChannel0, vec2(hz / 11025.0, 0.25)).x; }
float afx_band(float lo, float hi) {
    float sum = 0.0;
    for (int i = 0; i < 16; i++) sum += afx_level(mix(lo, hi, (float(i) + 0.5) / 16.0));
    return sum / 16.0;
}
float afx_norm(float v, float centre, float spread) { return tanh(clamp((v - centre) / spread / 2.0, -15.0, 15.0)); }
vec2 afx_centroid_rolloff() {
    float total = 0.0, weighted = 0.0;
    float amp[64];
    for (int i = 0; i < 64; i++) {
        float hz = (float(i) + 0.5) / 64.0 * 11025.0;
        amp[i] = pow(10.0, (afx_level(hz) * 70.0 - 100.0) / 20.0);
        total += amp[i];
        weighted += amp[i] * hz;
    }
    // librosa's rolloff on magnitudes, as afx's fft set computes it
    float mean_hz = weighted / max(total, 1e-9), running = 0.0, rolloff = 11025.0;
    for (int i = 0; i < 64; i++) {
        running += amp[i];
        if (running >= 0.85 * total) { rolloff = (float(i) + 1.0) / 64.0 * 11025.0; break; }
    }
    return vec2(mean_hz, rolloff);
}
float afx_rms_db() {
    float sum = 0.0;
    for (int i = 0; i < 64; i++) {
        float s = (texture(iChannel0, vec2((float(i) + 0.5) / 64.0, 0.75)).x - 0.5) * 2.0;
        sum += s * s;
    }
    return 10.0 * log(max(sum / 64.0, 1e-10)) / log(10.0);
}
// a band's mean FFT byte as the renderer's energy level: 1 at 0.85 (−40 dB), 0 at 40 dB below it
float afx_energy(float v) { return clamp((v - 0.85) * 70.0 / 40.0 + 1.0, 0.0, 1.0); }
// the waveform's RMS as a level: 0 at −50 dB, 1 at −10 dB (also the level channel)
float afx_rms_level() { return clamp((afx_rms_db() + 50.0) / 40.0, 0.0, 1.0); }
"""

# fft column → GLSL expression over the values computed in mainImage (levels, spectral shape, rms)
FFT_COLUMNS = {
    "bass": "afx_energy(bass)",
    "mid": "afx_energy(mid)",
    "treble": "afx_energy(treble)",
    "centroid": "afx_norm(shape.x, 2000.0, 1000.0)",
    "rolloff": "afx_norm(shape.y, 4000.0, 2000.0)",
    "flux": "clamp((treble - 0.45) / 0.3, 0.0, 1.0)",
    "time": "position",
    "beat": "smoothstep(0.65, 0.85, bass)",
    "rms": "afx_rms_level()",
}


def column_expression(column: str) -> str:
    """The GLSL approximation of one afx feature column ('fft.bass'); 0.0 (the median) where there is none."""
    feature_set, _, name = column.partition(".")
    return FFT_COLUMNS.get(name, "0.0") if feature_set == "fft" else "0.0"


def shadertoy_main(columns: tuple[str, ...], *, track_seconds: float | None = None) -> str:
    seconds = glsl_float(track_seconds or DEFAULT_TRACK_SECONDS)
    values = ",\n        ".join(f"{column_expression(c)}  /* {c} */" for c in columns)
    return f"""{HELPERS}
// the track's length in seconds: the position input and the time column run 0 → 1 over it
#define AFX_TRACK_SECONDS {seconds}
// drift (the motion channel's clock) per second of audio: a steady mid-level speed (see the export's README)
#define AFX_DRIFT_RATE {glsl_float(DRIFT_RATE)}
void mainImage(out vec4 fragColor, in vec2 fragCoord) {{
    float position = clamp(iChannelTime[0] / AFX_TRACK_SECONDS, 0.0, 1.0);
    float bass = afx_band(20.0, 250.0), mid = afx_band(250.0, 4000.0), treble = afx_band(4000.0, 11025.0);
    vec2 shape = afx_centroid_rolloff();
    float features[{len(columns)}] = float[{len(columns)}](
        {values});
    // the designed channels: pulse, drift, level (approximations, see the table in daemon/export/shadertoy.py)
    float channels[3] = float[3](smoothstep(0.65, 0.85, bass), iChannelTime[0] * AFX_DRIFT_RATE,
                                 afx_rms_level());
    vec3 rgb = afx_colour(fragCoord.x - 0.5, iResolution.y - fragCoord.y - 0.5, iResolution.x, iResolution.y,
                          position, features, channels);
    fragColor = vec4(rgb, 1.0);
}}
"""
