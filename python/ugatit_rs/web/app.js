// The in-browser translator: image -> (S, S) RGB uint8 -> the exported generator (pre- and
// post-processing are inside the ONNX graph) -> translation and CAM heatmap on canvases.
// `window.ugatit` exposes the state and `translate(source)` (any canvas image source) for
// scripts, tests and the curious.
"use strict";

const $ = (id) => document.getElementById(id);
const ugatit = (window.ugatit = { session: null, meta: null, lastMs: null, runs: 0 });

// OpenCV's COLORMAP_JET anchors (value, r, g, b), as ugatit_rs.viz draws heatmaps.
const JET = [
  [0.0, 0.0, 0.0, 0.5], [0.11, 0.0, 0.0, 1.0], [0.125, 0.0, 0.0, 1.0], [0.34, 0.0, 0.86, 1.0],
  [0.35, 0.0, 0.9, 1.0], [0.375, 0.0, 1.0, 1.0], [0.64, 1.0, 1.0, 0.0], [0.66, 1.0, 0.98, 0.0],
  [0.875, 1.0, 0.0, 0.0], [0.91, 0.86, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0],
];

function jet(v) {
  v = Math.min(1, Math.max(0, v));
  for (let i = 1; i < JET.length; i++) {
    if (v <= JET[i][0]) {
      const [a, b] = [JET[i - 1], JET[i]];
      const t = (v - a[0]) / (b[0] - a[0]);
      return [1, 2, 3].map((c) => Math.round(255 * (a[c] + t * (b[c] - a[c]))));
    }
  }
  return [128, 0, 0];
}

function setStatus(text, state) {
  $("status").textContent = text;
  if (state) document.body.dataset.state = state;
}

function sized(canvas, size) {
  canvas.width = size;
  canvas.height = size;
  return canvas.getContext("2d", { willReadFrequently: true });
}

// Draws any image source onto the input canvas at the model's size (aspect ratio ignored, as
// in training) and returns its RGB bytes in NHWC order.
function inputPixels(source) {
  const size = ugatit.meta.img_size;
  const ctx = sized($("input"), size);
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(source, 0, 0, size, size);
  const rgba = ctx.getImageData(0, 0, size, size).data;
  const rgb = new Uint8Array(size * size * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i];
    rgb[j + 1] = rgba[i + 1];
    rgb[j + 2] = rgba[i + 2];
  }
  return rgb;
}

function drawRgb(canvas, rgb, size) {
  const ctx = sized(canvas, size);
  const image = ctx.createImageData(size, size);
  for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) {
    image.data[i] = rgb[j];
    image.data[i + 1] = rgb[j + 1];
    image.data[i + 2] = rgb[j + 2];
    image.data[i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

// The heatmap (1, 1, h, w): min-max normalised, jet-coloured, scaled up bilinearly by the
// canvas and blended half-and-half over the input.
function drawAttention(heatmap, size) {
  const [h, w] = heatmap.dims.slice(2);
  const values = heatmap.data;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const small = document.createElement("canvas");
  small.width = w;
  small.height = h;
  const sctx = small.getContext("2d");
  const image = sctx.createImageData(w, h);
  for (let k = 0; k < values.length; k++) {
    const [r, g, b] = jet(hi > lo ? (values[k] - lo) / (hi - lo) : 0);
    image.data.set([r, g, b, 255], 4 * k);
  }
  sctx.putImageData(image, 0, 0);
  const ctx = sized($("attention"), size);
  ctx.drawImage($("input"), 0, 0);
  ctx.globalAlpha = 0.5;
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(small, 0, 0, size, size);
  ctx.globalAlpha = 1;
}

async function translate(source) {
  if (!ugatit.session) return;
  const size = ugatit.meta.img_size;
  setStatus("Translating…", "running");
  try {
    const image = new ort.Tensor("uint8", inputPixels(source), [1, size, size, 3]);
    const start = performance.now();
    const result = await ugatit.session.run({ image });
    ugatit.lastMs = performance.now() - start;
    ugatit.runs += 1;
    drawRgb($("output"), result.translation.data, size);
    if (result.heatmap) drawAttention(result.heatmap, size);
    setStatus(`Translated in ${ugatit.lastMs.toFixed(0)} ms (${size}×${size}, WebAssembly).`, "done");
  } catch (error) {
    setStatus(`Translation failed: ${error.message || error}`, "error");
  }
}

async function translateFile(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    setStatus(`${file.name} is not an image.`, "error");
    return;
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch (error) {
    setStatus(`${file.name}: this browser cannot decode it (${error.message || error}).`, "error");
    return;
  }
  await translate(bitmap);
  bitmap.close();
}

async function startWebcam() {
  const video = $("video");
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    setStatus(`No webcam: ${error.message || error}`, "error");
    return;
  }
  await video.play();
  video.hidden = false;
  $("capture").hidden = false;
  setStatus("Webcam on: press “Translate this frame”.", "ready");
}

function wireUp() {
  $("file").addEventListener("change", (e) => translateFile(e.target.files[0]));
  $("webcam").addEventListener("click", startWebcam);
  $("capture").addEventListener("click", () => translate($("video")));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    translateFile(e.dataTransfer.files[0]);
  });
}

async function main() {
  wireUp();
  $("ort-version").textContent = ort.env.versions ? ort.env.versions.web || "" : "";
  try {
    ugatit.meta = await (await fetch("model.json")).json();
    document.title = $("title").textContent = ugatit.meta.title;
    $("attention").parentElement.hidden = !ugatit.meta.attention; // CycleGAN has no attention map
    // Threads need a cross-origin-isolated page (COOP/COEP headers), which plain static
    // servers do not send; a single thread works everywhere.
    ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    // Absolute URLs: a relative one would resolve against ort.wasm.min.js's own folder.
    const local = (name) => new URL(`ort/${name}`, location.href).href;
    ort.env.wasm.wasmPaths = { mjs: local("ort-wasm-simd-threaded.js"), wasm: local("ort-wasm-simd-threaded.wasm") };
    ugatit.session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
    setStatus("Ready: open or drop a photo.", "ready");
  } catch (error) {
    setStatus(`Could not load the model: ${error.message || error}`, "error");
  }
}

ugatit.translate = translate;
main();
