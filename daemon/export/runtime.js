// afx WebGL2 runtime: compiles an exported style shader, uploads its weight texture and draws frames.
// Shared by the player (player.html) and the parity/bench page (daemon/export/webgl.py).
"use strict";

function afxBytes(b64) {
  const text = atob(b64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

function afxFloat32(b64) {
  return new Float32Array(afxBytes(b64).buffer);
}

// IEEE half floats (little-endian uint16) → Float32Array; features travel as float16 to halve the page
function afxFloat16(b64) {
  const h = new Uint16Array(afxBytes(b64).buffer);
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) {
    const s = h[i] & 0x8000 ? -1 : 1, e = (h[i] >> 10) & 0x1f, m = h[i] & 0x3ff;
    out[i] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}

// weights: the packed vec4s {data: Float32Array, width, rows}, bound as the shader asks: uniform blocks
// AfxBlock0.. or the texture u_weights; null when the shader has them inline
function afxCreate(canvas, fragmentSource, weights, options) {
  const gl = canvas.getContext("webgl2", Object.assign({antialias: false, alpha: false, depth: false,
                                                        powerPreference: "high-performance"}, options || {}));
  if (!gl) throw new Error("this browser has no WebGL2");
  const started = performance.now();
  const shader = (type, source) => {
    const s = gl.createShader(type);
    gl.shaderSource(s, source);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error("shader: " + gl.getShaderInfoLog(s));
    return s;
  };
  const program = gl.createProgram();
  gl.attachShader(program, shader(gl.VERTEX_SHADER,
    "#version 300 es\nin vec2 a;\nvoid main() { gl_Position = vec4(a, 0.0, 1.0); }\n"));
  gl.attachShader(program, shader(gl.FRAGMENT_SHADER, fragmentSource));
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error("link: " + gl.getProgramInfoLog(program));
  gl.useProgram(program);
  const compileMs = performance.now() - started;
  gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
  gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 3, -1, -1, 3]), gl.STATIC_DRAW);  // one big triangle
  const a = gl.getAttribLocation(program, "a");
  gl.enableVertexAttribArray(a);
  gl.vertexAttribPointer(a, 2, gl.FLOAT, false, 0, 0);
  const blocks = [];
  for (let i = 0; weights && gl.getUniformBlockIndex(program, "AfxBlock" + i) !== gl.INVALID_INDEX; i++) blocks.push(i);
  if (blocks.length) {  // uniform buffers: AfxBlock<i> holds vec4s 4096 i .. 4096 (i + 1) of the packed weights
    const size = 4096 * 4;
    for (const i of blocks) {
      const data = new Float32Array(size);
      data.set(weights.data.subarray(i * size, Math.min((i + 1) * size, weights.data.length)));
      const buffer = gl.createBuffer();
      gl.bindBuffer(gl.UNIFORM_BUFFER, buffer);
      gl.bufferData(gl.UNIFORM_BUFFER, data, gl.STATIC_DRAW);
      gl.uniformBlockBinding(program, gl.getUniformBlockIndex(program, "AfxBlock" + i), i);
      gl.bindBufferBase(gl.UNIFORM_BUFFER, i, buffer);
    }
  } else if (weights) {
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, gl.createTexture());
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA32F, weights.width, weights.rows, 0, gl.RGBA, gl.FLOAT, weights.data);
    gl.uniform1i(gl.getUniformLocation(program, "u_weights"), 0);
  }
  const where = {resolution: gl.getUniformLocation(program, "u_resolution"),
                 position: gl.getUniformLocation(program, "u_position"),
                 features: gl.getUniformLocation(program, "u_features"),
                 channels: gl.getUniformLocation(program, "u_channels")};  // null where the style reads none
  return {
    gl, compileMs,
    // channels: the designed pulse, drift and level of this moment (Float32Array(3))
    draw(position, features, channels) {
      gl.viewport(0, 0, canvas.width, canvas.height);
      gl.uniform2f(where.resolution, canvas.width, canvas.height);
      gl.uniform1f(where.position, position);
      gl.uniform1fv(where.features, features);
      if (where.channels) gl.uniform1fv(where.channels, channels);
      gl.drawArrays(gl.TRIANGLES, 0, 3);
    },
    // the drawn frame as RGB rows from the top, base64 (what Python compares with torch's frame)
    pixels() {
      const w = canvas.width, h = canvas.height, rgba = new Uint8Array(w * h * 4);
      gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, rgba);
      const rgb = new Uint8Array(w * h * 3);
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
        const s = ((h - 1 - y) * w + x) * 4, d = (y * w + x) * 3;
        rgb[d] = rgba[s]; rgb[d + 1] = rgba[s + 1]; rgb[d + 2] = rgba[s + 2];
      }
      let text = "";
      for (let i = 0; i < rgb.length; i += 0x8000) text += String.fromCharCode.apply(null, rgb.subarray(i, i + 0x8000));
      return btoa(text);
    },
  };
}

// whether this GL takes `count` uniform blocks of 4096 vec4s in a fragment shader (else: the texture shader)
function afxUniformBlocksFit(count) {
  const gl = document.createElement("canvas").getContext("webgl2");
  return !!gl && gl.getParameter(gl.MAX_UNIFORM_BLOCK_SIZE) >= 4096 * 16
    && gl.getParameter(gl.MAX_FRAGMENT_UNIFORM_BLOCKS) >= count;
}
