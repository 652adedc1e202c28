// The page's glue: events, canvases and timings. Decoding, preprocessing, the network and
// the class activation maps all run in Rust (src/), reached through the `Demo` class of the
// module trunk loads (the CPU path alone, to keep the first load small) and, once the first
// answer is shown, of the WebGPU module (web-demo.js), fetched only when the browser has WebGPU.
// Rust answers with plain objects (their shapes: the interfaces in web-demo.d.ts) whose
// pictures are ImageData, ready for putImageData.

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// `race`: WebGPU is to be measured against the CPU on the first image (see race()).
// `model`: the loaded model ({ key, entry, yours, summary }); `yours`: the user's own
// checkpoints by key ("yours:1", …), kept in memory (they never leave the page).
const state = { demo: null, module: null, race: false, manifest: null, model: null, modelBytes: null, classes: [],
  yours: new Map(), hasImage: false, runs: 0, stream: null, explaining: false, queued: false, image: null,
  memoryBytes: () => 0 };

function setState(s) { document.body.dataset.state = s; }

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").classList.toggle("error", isError);
}

function errorText(e) { return (e && e.message) ? e.message : String(e); }

async function bindings() {
  if (window.wasmBindings) return window.wasmBindings;
  return new Promise((resolve) =>
    addEventListener("TrunkApplicationStarted", () => resolve(window.wasmBindings), { once: true }));
}

// This build's name (trunk puts a content hash in the first module's file name): keys the
// service worker's cache and the WebGPU module's address, whose file name has no hash.
function buildId() {
  const wasm = document.querySelector('link[href$=".wasm"]')?.getAttribute("href") ?? "";
  return wasm.split("/").pop().replace(/_bg\.wasm$/, "") || "dev";
}

// The WebGPU module (the same Rust crate built with its `webgpu` feature), fetched on demand.
// A failed start is tried once more (a fresh copy of the module), then its first error is
// what the badge shows.
async function openWebGpu() {
  let firstError;
  for (const attempt of [1, 2]) {
    try {
      const version = `?build=${encodeURIComponent(buildId())}${attempt > 1 ? "&attempt=2" : ""}`;
      const gpu = await import(`./web-demo.js${version}`);
      await gpu.default({ module_or_path: new URL(`web-demo_bg.wasm${version}`, import.meta.url) });
      return await gpu.Demo.webgpu();
    } catch (e) {
      firstError ??= e;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  throw firstError;
}

// Whether the browser gives a WebGPU adapter (asked twice: one can be briefly unavailable).
async function webGpuAdapter() {
  if (params.get("backend") === "cpu" || !navigator.gpu) return false;
  for (const attempt of [1, 2]) {
    try {
      if (await navigator.gpu.requestAdapter()) return true;
    } catch { /* asked again, then the CPU runs */ }
    if (attempt === 1) await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return false;
}

async function sha256Hex(bytes) {
  if (!crypto.subtle) return null; // plain-http hosts other than localhost: no check possible
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

// The bytes of a shipped model, checked against the manifest's SHA-256.
async function shippedBytes(entry) {
  const bytes = await fetchBytes(`weights/${entry.file}`);
  const hash = await sha256Hex(bytes);
  if (hash && hash !== entry.sha256) {
    throw new Error(`weights/${entry.file} is damaged (SHA-256 ${hash.slice(0, 12)}…, expected ${entry.sha256.slice(0, 12)}…)`);
  }
  return bytes;
}

// What the page says about a shipped model: its measured accuracy and most faithful method.
function describeShipped(entry, summary) {
  const title = (name) => [...$("method").options].find((o) => o.value === name)?.text ?? name;
  const road = (e) => `ROAD ${e.road.toFixed(3)} ± ${e.road_error.toFixed(3)}`;
  const explanation = entry.explanation;
  const slower = explanation?.slower_but_better;
  const faithful = explanation
    ? ` Most faithful single-pass explanation: ${title(explanation.method)} (${road(explanation)} on ` +
      `${explanation.images} test images).` + (slower
      ? ` ${title(slower.method)} scored higher (${road(slower)}) but runs the network once per channel: pick it in the menu.`
      : "")
    : "";
  return `${entry.name}: ${summary.architecture}, ${summary.parameters.toLocaleString("en")} parameters, ` +
    `${(entry.bytes / 1e6).toFixed(2)} MB${entry.precision === "f16" ? " (f16)" : ""}, ${(100 * entry.test_accuracy).toFixed(2)} % on ${entry.test_images.toLocaleString("en")} CIFAR-10 test images ` +
    `(explained at ${summary.camLayer}).${faithful}`;
}

// What the page says about the user's own checkpoint: what the file itself records.
function describeYours(yours, summary) {
  const classes = summary.classes.length <= 12 ? summary.classes.join(", ")
    : `${summary.classes.slice(0, 12).join(", ")}, …`;
  const trained = [summary.epoch !== null ? `saved after epoch ${summary.epoch}` : "",
    summary.valAccuracy !== null ? `${(100 * summary.valAccuracy).toFixed(2)} % validation accuracy` : ""]
    .filter(Boolean).join(", ");
  return `Your model: ${summary.architecture} from ${yours.file}, ${summary.parameters.toLocaleString("en")} parameters, ` +
    `${(yours.bytes.length / 1e6).toFixed(2)} MB, ${summary.classes.length} classes (${classes})` +
    (trained ? `, ${trained}` : "") + (summary.camLayer ? ` (explained at ${summary.camLayer}).` : ".") +
    " It was read in this page and stays here: nothing is uploaded.";
}

// Loads a shipped model by name, or one of the user's checkpoints by its key. The previous
// model stays when this fails.
async function loadModel(key) {
  const yours = state.yours.get(key);
  const entry = yours ? null : state.manifest.models.find((m) => m.name === key);
  if (!yours && !entry) throw new Error(`no model named ${key} in weights/manifest.json`);
  const t0 = performance.now();
  const bytes = yours ? yours.bytes : await shippedBytes(entry);
  const summary = state.demo.load_model(bytes);
  state.model = { key, entry, yours, summary };
  state.modelBytes = bytes;
  state.classes = summary.classes;
  $("grid").hidden = true; // the grid shows the previous model's maps
  // The most faithful method for a shipped model (trainer cam-eval --record), unless the
  // address asks for one; Grad-CAM for the user's own.
  if (!params.get("method")) $("method").value = entry?.explanation?.method ?? "gradcam";
  // A network without spatial layers (the MLP) is classified but cannot be explained.
  const explainable = summary.camLayer !== null;
  $("method").disabled = $("compare").disabled = !explainable;
  const ms = performance.now() - t0;
  $("timing").dataset.load = ms.toFixed(0);
  $("model-info").textContent = (yours ? describeYours(yours, summary) : describeShipped(entry, summary)) +
    ` Loaded in ${ms.toFixed(0)} ms.` + (explainable ? ""
    : ` ${summary.architecture} has no spatial layers: no heat map and no feature maps for it, the bars alone.`);
  const explain = $("explain");
  const chosen = explain.value;
  explain.replaceChildren(new Option("the top class", ""),
    ...summary.classes.map((c, i) => new Option(c, String(i))));
  explain.value = Number(chosen) < summary.classes.length ? chosen : "";
}

// A checkpoint the user dropped or picked: loaded beside the shipped models and chosen in the
// model switcher. A file that is not a usable checkpoint gets the reason, and the model in use
// stays.
async function useCheckpoint(bytes, file) {
  setState("busy");
  const key = `yours:${state.yours.size + 1}`;
  state.yours.set(key, { file, bytes });
  try {
    await loadModel(key);
  } catch (e) {
    state.yours.delete(key);
    const current = state.model?.yours ? `your ${state.model.yours.file}` : state.model?.key;
    say(`${file}: ${errorText(e)}${current ? ` (still using ${current})` : ""}`, true);
    setState("ready");
    return;
  }
  const option = new Option(`your model: ${state.model.summary.architecture} (${file})`, key);
  let group = $("model").querySelector("optgroup");
  if (!group) $("model").append(group = Object.assign(document.createElement("optgroup"), { label: "Your models" }));
  group.append(option);
  $("model").value = key;
  say(`${file}: your model is loaded${state.hasImage ? "" : "; drop an image or click a test image"}.`);
  setState("ready");
  await explain();
}

function drawAnswer(answer) {
  const heat = $("heat");
  if (answer.heat) {
    [heat.width, heat.height] = [answer.heat.width, answer.heat.height];
    heat.getContext("2d").putImageData(answer.heat, 0, 0);
  }
  heat.hidden = !answer.hasHeat;
  const bars = $("bars");
  bars.replaceChildren(...answer.top.map(({ index, name, probability: p }) => {
    const li = document.createElement("li");
    li.dataset.class = name;
    li.dataset.index = index;
    li.title = `explain ${name}`;
    li.classList.toggle("explained", index === answer.explained);
    const label = document.createElement("span");
    label.textContent = name;
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    bar.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = `${(100 * p).toFixed(1)} %`;
    li.append(label, bar, pct);
    li.addEventListener("click", () => { $("explain").value = String(index); explain(); });
    return li;
  }));
  bars.dataset.explained = state.classes[answer.explained] ?? "";
  if (answer.heat && !answer.hasHeat) {
    $("notes").prepend(Object.assign(document.createElement("li"),
      { textContent: `no evidence for ${state.classes[answer.explained]} anywhere: the heat map is empty` }));
  }
}

function showBackend(why) {
  const badge = $("backend");
  const gpu = state.demo.backend === "WebGPU";
  badge.textContent = gpu ? "WebGPU" : "CPU (WebAssembly)";
  badge.className = `badge ${gpu ? "webgpu" : "cpu"}`;
  badge.dataset.backend = state.demo.backend;
  badge.title = why;
}

// After the first answer (on the CPU), the WebGPU module is fetched and the same image runs
// on WebGPU (once to compile its shaders, once timed) and again on the CPU (Grad-CAM on both);
// the faster is kept and the other dropped. Small networks are often faster on the CPU, even
// next to a real GPU.
async function race() {
  state.race = false;
  const cpu = state.demo;
  const value = $("explain").value === "" ? undefined : Number($("explain").value);
  const time = async (demo) => {
    const t0 = performance.now();
    await demo.explain(value, "gradcam");
    return performance.now() - t0;
  };
  let gpu;
  let gpuMs;
  try {
    showBackend("running on the CPU; measuring WebGPU on this image…");
    gpu = await openWebGpu();
    gpu.load_model(state.modelBytes);
    gpu.set_image(state.image.bytes, state.image.framing);
    await time(gpu);
    gpuMs = await time(gpu);
  } catch (e) {
    gpu?.free();
    showBackend(`running on the CPU: WebGPU failed (${errorText(e)})`);
    return;
  }
  const cpuMs = await time(cpu);
  const cpuWins = cpuMs < gpuMs;
  state.demo = cpuWins ? cpu : gpu;
  (cpuWins ? gpu : cpu).free();
  showBackend(`measured on the first image (inference + Grad-CAM): CPU ${cpuMs.toFixed(0)} ms, WebGPU ` +
    `${gpuMs.toFixed(0)} ms after shader compilation; ${cpuWins ? "the CPU" : "WebGPU"} is faster here ` +
    "(?backend=webgpu or ?backend=cpu forces one)");
  $("backend").dataset.measured = JSON.stringify({ cpu: Math.round(cpuMs), webgpu: Math.round(gpuMs) });
}

// One job at a time (an explanation or the comparison grid): a request for an explanation
// made while one runs (a click, a new image, another model or method) is queued, and the
// latest settings run once the current job is done.
async function exclusive(job, failure) {
  state.explaining = true;
  setState("busy");
  try {
    await job();
  } catch (e) {
    say(`${failure}: ${errorText(e)}`, true);
  } finally {
    state.explaining = false;
  }
  if (state.queued) {
    state.queued = false;
    await explain();
    return;
  }
  setState("ready");
}

async function explain() {
  if (!state.hasImage || !state.model) return;
  if (state.explaining) { state.queued = true; return; }
  await exclusive(async () => {
    const value = $("explain").value;
    const t0 = performance.now();
    const answer = await state.demo.explain(value === "" ? undefined : Number(value), $("method").value || "gradcam");
    const ms = performance.now() - t0;
    drawAnswer(answer);
    for (const figure of $("grid").children) figure.classList.toggle("chosen", figure.dataset.method === answer.method);
    state.runs += 1;
    document.body.dataset.runs = state.runs;
    $("result").dataset.method = answer.method ?? "";
    document.body.dataset.memory = state.memoryBytes(); // the first module's wasm memory
    await showLayers();
    $("timing").dataset.infer = ms.toFixed(0);
    $("timing").textContent = `model loaded in ${$("timing").dataset.load} ms · ` +
      (answer.methodTitle ? `inference + ${answer.methodTitle}` : "inference") + ` ${ms.toFixed(0)} ms`;
    if (state.race) await race();
  }, "Could not classify");
}

// Every method's map of the current image side by side; a click picks that method.
async function compareAll() {
  if (!state.hasImage || !state.model || state.explaining) return; // ignored while one runs
  await exclusive(async () => {
    const value = $("explain").value;
    const t0 = performance.now();
    const all = await state.demo.explain_all(value === "" ? undefined : Number(value));
    const ms = performance.now() - t0;
    const opacity = $("opacity").value / 100;
    $("grid").replaceChildren(...all.map((answer) => {
      const figure = document.createElement("figure");
      figure.dataset.method = answer.method;
      figure.classList.toggle("chosen", answer.method === $("method").value);
      const canvas = Object.assign(document.createElement("canvas"), { width: 128, height: 128 });
      const context = canvas.getContext("2d");
      context.drawImage($("view"), 0, 0, 128, 128);
      const heat = Object.assign(document.createElement("canvas"), { width: answer.heat.width, height: answer.heat.height });
      heat.getContext("2d").putImageData(answer.heat, 0, 0);
      if (answer.hasHeat) {
        context.globalAlpha = opacity;
        context.drawImage(heat, 0, 0, 128, 128);
      }
      const caption = document.createElement("figcaption");
      caption.textContent = answer.hasHeat ? answer.methodTitle : `${answer.methodTitle} (empty)`;
      figure.append(canvas, caption);
      figure.addEventListener("click", () => { $("method").value = answer.method; explain(); });
      return figure;
    }));
    $("grid").hidden = false;
    state.runs += 1;
    document.body.dataset.runs = state.runs;
    $("timing").textContent = `model loaded in ${$("timing").dataset.load} ms · all ${all.length} methods ${ms.toFixed(0)} ms`;
  }, "Could not compare the methods");
}

// The layer explorer: for every layer, its shape and its strongest channels for this image
// (click one to enlarge it). Drawn when opened, and again after each answer while open.
async function showLayers() {
  if (!$("inside").open || !state.hasImage || !state.model) return;
  try {
    const layers = await state.demo.feature_maps(6);
    $("layers").replaceChildren(...layers.map((layer) => {
      const row = Object.assign(document.createElement("div"), { className: "layer" });
      row.dataset.layer = layer.name;
      row.append(Object.assign(document.createElement("p"), {
        textContent: `${layer.name}: ${layer.channels}×${layer.height}×${layer.width} (channels × height × width)`,
      }));
      const maps = Object.assign(document.createElement("div"), { className: "maps" });
      maps.append(...layer.maps.map((map) => {
        const canvas = Object.assign(document.createElement("canvas"), { width: map.image.width, height: map.image.height,
          title: `${layer.name}, channel ${map.channel}: mean activation ${map.mean.toFixed(3)}` });
        canvas.getContext("2d").putImageData(map.image, 0, 0);
        canvas.addEventListener("click", () => canvas.classList.toggle("big"));
        return canvas;
      }));
      row.append(maps);
      return row;
    }));
    if (layers.length === 0) {
      $("layers").replaceChildren(Object.assign(document.createElement("p"),
        { textContent: `${state.model.summary.architecture} has no spatial layers: no feature maps to show.` }));
    }
    document.body.dataset.layers = String(layers.length);
  } catch (e) {
    say(`Could not show the feature maps: ${errorText(e)}`, true);
  }
}

async function useImage(bytes, source) {
  setState("busy");
  let info;
  const framing = $("framing").checked ? "pad" : "crop";
  try {
    info = state.demo.set_image(bytes, framing);
  } catch (e) {
    say(`${source}: ${errorText(e)}${state.hasImage ? " (showing the previous image)" : ""}`, true);
    setState("ready");
    return;
  }
  state.hasImage = true;
  state.image = { bytes, source, framing };
  $("grid").hidden = true; // the grid shows the previous image
  say(`${source} (${info.width}×${info.height})`);
  $("notes").replaceChildren(...info.notes.map((n) => Object.assign(document.createElement("li"), { textContent: n })));
  $("view").getContext("2d").putImageData(info.view, 0, 0);
  await explain();
}

// A file dropped, pasted or picked: an image, or a checkpoint the trainer wrote (told by its
// content; a file named *.safetensors is read as a checkpoint, to say why it is not one).
async function useFile(file, how) {
  if (!file) return;
  if (!state.demo) {
    say("the page is still starting: try again once it says Ready", true);
    return;
  }
  const limit = state.module.max_file_bytes();
  const name = file.name || "the file";
  if (file.size > limit) {
    say(`${name}: the file is ${(file.size / 1e6).toFixed(0)} MB; the page takes images and checkpoints of at most ` +
      `${(limit / 1e6).toFixed(0)} MB`, true);
    return;
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  if (state.module.upload_kind(bytes.subarray(0, 16)) === "checkpoint" || /\.safetensors$/i.test(name)) {
    await useCheckpoint(bytes, name);
  } else {
    await useImage(bytes, `${how} ${file.name || "image"}`);
  }
}

async function buildGallery() {
  let items = [];
  try { items = await (await fetch("gallery/gallery.json")).json(); } catch { return; }
  $("gallery").replaceChildren(...items.map((item) => {
    const button = document.createElement("button");
    button.type = "button";
    button.title = `CIFAR-10 test image #${item.index}: ${item.label}`;
    button.dataset.label = item.label;
    const img = document.createElement("img");
    img.src = `gallery/${item.file}`;
    img.alt = item.label;
    button.append(img);
    button.addEventListener("click", async () => {
      await useImage(await fetchBytes(`gallery/${item.file}`), `test image #${item.index} (true class: ${item.label})`);
    });
    return button;
  }));
}

function wireInputs() {
  $("file").addEventListener("change", (e) => useFile(e.target.files[0], "file"));
  const drop = $("drop");
  for (const target of [drop, document.body]) {
    target.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    target.addEventListener("dragleave", () => drop.classList.remove("over"));
    target.addEventListener("drop", (e) => {
      e.preventDefault();
      e.stopPropagation();
      drop.classList.remove("over");
      const file = e.dataTransfer.files[0];
      if (file) useFile(file, "dropped");
      else say("that was not a file: drop an image file or a checkpoint", true);
    });
  }
  document.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData?.files ?? [])][0];
    if (file) useFile(file, "pasted");
    else say("the clipboard holds no image", true);
  });
  $("opacity").addEventListener("input", (e) => { $("heat").style.opacity = e.target.value / 100; });
  $("explain").addEventListener("change", explain);
  $("method").addEventListener("change", explain);
  $("compare").addEventListener("click", compareAll);
  $("inside").addEventListener("toggle", showLayers);
  $("framing").addEventListener("change", () => state.image && useImage(state.image.bytes, state.image.source));
  $("model").addEventListener("change", async (e) => {
    setState("busy");
    try {
      await loadModel(e.target.value);
      setState("ready");
      await explain();
    } catch (err) {
      say(`Could not load ${e.target.value}: ${errorText(err)}`, true);
      if (state.model) e.target.value = state.model.key;
      setState("ready");
    }
  });
  $("camera").addEventListener("click", async () => {
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({ video: true });
      $("video").srcObject = state.stream;
      $("camera-box").hidden = false;
    } catch (e) {
      say(`No camera: ${errorText(e)}`, true);
    }
  });
  const stopCamera = () => {
    state.stream?.getTracks().forEach((t) => t.stop());
    state.stream = null;
    $("camera-box").hidden = true;
  };
  $("camera-off").addEventListener("click", stopCamera);
  $("snap").addEventListener("click", async () => {
    const video = $("video");
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    stopCamera();
    if (blob) await useImage(new Uint8Array(await blob.arrayBuffer()), "camera photo");
  });
}

async function main() {
  wireInputs();
  if ("serviceWorker" in navigator && params.get("sw") !== "0") {
    // One cache per build: a new build installs a new worker that drops old caches.
    navigator.serviceWorker.register(`sw.js?build=${encodeURIComponent(buildId())}`).catch(() => {}); // offline use is a bonus
  }
  try {
    const t0 = performance.now();
    const module = await bindings();
    const { Demo } = module;
    state.module = module;
    state.memoryBytes = module.memory_bytes;
    // Flex's own convolution and batch norm instead of the patched kernels: the page's CPU
    // path before the patch, for measuring it (patches/README.md).
    const generic = params.get("flex-kernels") === "generic";
    module.set_flex_kernels(!generic);
    const adapter = await webGpuAdapter();
    let why = adapter ? "" : params.get("backend") === "cpu" ? "running on the CPU (?backend=cpu)"
      : "running on the CPU: this browser has no WebGPU";
    state.demo = Demo.cpu();
    if (adapter && params.get("backend") === "webgpu") {
      try {
        state.demo = await openWebGpu();
        why = "running on the GPU through WebGPU (?backend=webgpu)";
      } catch (e) {
        why = `running on the CPU: WebGPU failed to start (${errorText(e)})`;
      }
    } else if (adapter) {
      // The CPU answers first; WebGPU is measured against it on the first image.
      state.race = true;
      why = "running on the CPU; on the first image WebGPU is measured against it and the faster is kept";
    }
    const methods = Demo.cam_methods();
    $("method").replaceChildren(...methods.map((m) => Object.assign(new Option(m.title, m.name),
      { title: m.classSpecific ? "" : "shows the strongest pattern, whatever the class" })));
    if (methods.some((m) => m.name === params.get("method"))) $("method").value = params.get("method");
    if (generic) why += " (Flex's own convolution and batch norm: ?flex-kernels=generic)";
    showBackend(why);
    state.manifest = await (await fetch("weights/manifest.json")).json();
    const select = $("model");
    select.replaceChildren(...state.manifest.models.map((m) =>
      new Option(`${m.name} (${(100 * m.test_accuracy).toFixed(1)} %)`, m.name)));
    const first = params.get("model") ?? state.manifest.default;
    select.value = first;
    await loadModel(first);
    select.disabled = false;
    await buildGallery();
    document.body.dataset.startup = (performance.now() - t0).toFixed(0);
    say("Ready: drop, paste, pick or film an image, or click a test image (or drop a checkpoint the trainer wrote).");
    setState("ready");
  } catch (e) {
    say(`The page could not start: ${errorText(e)}`, true);
    setState("error");
  }
}

main();
