// End-to-end test of the built page in Debian's Chromium (playwright-core; never a
// downloaded browser). Serves the trunk output on loopback, feeds the page real CIFAR-10 test
// images through its file input, and checks the prediction against the native Rust answer,
// that a heat map was drawn, class choice, every explanation method, framing, opacity, bad input, the
// gallery, the model switcher and the user's own checkpoints (dropped and picked; junk and
// oversized files refused), which never leave the page. Counts what the browser fetched before the first answer
// (gzip, as a web server sends it) against the page's budget. Prints the timings it saw.
//
// node browser.mjs --dist DIR --expected FILE --backend webgpu|cpu [--base /path/] [--offline] [--camera]
//                   [--screenshot PNG --photo IMAGE]
// --base serves the page under a path, as GitHub Pages serves a project site (trunk's --public-url).

import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { chromium } from "playwright-core";

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, a, i, all) =>
  a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]?.startsWith("--") ? true : all[i + 1] ?? true]] : pairs, []));
const dist = path.resolve(args.dist);
const expected = JSON.parse(fs.readFileSync(args.expected, "utf8"));
const backend = args.backend;
const base = args.base ?? "/";
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".wasm": "application/wasm",
  ".json": "application/json", ".png": "image/png", ".safetensors": "application/octet-stream", ".md": "text/plain" };

function fail(message) {
  console.error(`FAIL (${backend}): ${message}`);
  process.exitCode = 1;
  throw new Error(message);
}
function check(condition, message) { if (!condition) fail(message); }

// Everything fetched before the first answer with the default model, gzip-compressed.
const FIRST_LOAD_BUDGET = 2_500_000;
// How much the wasm memory may grow over 1,000 classifications after the first ten.
const MEMORY_GROWTH_BOUND = 4 * 1024 * 1024;
const fetched = []; // [path under the base, run count when it was requested]
function gzipBytes(file) { return zlib.gzipSync(fs.readFileSync(path.join(dist, file))).length; }

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  if (!url.pathname.startsWith(base)) { res.writeHead(404).end(); return; }
  let file = path.join(dist, decodeURIComponent(url.pathname.slice(base.length)));
  if (file !== dist && !file.startsWith(dist + path.sep)) { res.writeHead(403).end(); return; }
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, "index.html");
  if (!fs.existsSync(file)) { res.writeHead(404).end(); return; }
  res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream" });
  fs.createReadStream(file).pipe(res);
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${server.address().port}`;

const flags = ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];
flags.push(backend === "webgpu" ? "--enable-unsafe-webgpu" : "--disable-gpu");
if (args.camera) flags.push("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream");
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true, args: flags });
const log = [];
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  page.on("console", (m) => log.push(`console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`page error: ${e.message}`));

  let answered = false;
  const sent = []; // requests that could carry a file away: none may be made
  page.on("request", (r) => {
    if (r.method() !== "GET") sent.push(`${r.method()} ${r.url()}`);
    const url = new URL(r.url());
    if (url.origin === origin && url.pathname.startsWith(base)) {
      fetched.push([decodeURIComponent(url.pathname.slice(base.length)) || "index.html", answered]);
    }
  });
  const runsOf = async (p) => Number(await p.evaluate(() => document.body.dataset.runs ?? 0));
  const settledOn = async (p, before) => {
    await p.waitForFunction((n) => Number(document.body.dataset.runs ?? 0) > n && document.body.dataset.state === "ready",
      before, { timeout: 120_000 });
  };
  const heatPixelsOf = (p) => p.evaluate(() => {
    const canvas = document.getElementById("heat");
    return canvas.hidden ? null : Array.from(canvas.getContext("2d").getImageData(0, 0, 32, 32).data);
  });
  const runs = () => runsOf(page);
  const settled = (before) => settledOn(page, before);
  const heatPixels = () => heatPixelsOf(page);
  const message = () => page.evaluate(() => ({
    text: document.getElementById("message").textContent,
    error: document.getElementById("message").classList.contains("error"),
  }));
  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  // The bars of page `p` against the native answer for an image: same top class, same
  // probabilities.
  const checkBars = async (p, image) => {
    const shown = await p.$$eval("#bars li", (lis) => lis.map((li) => ({ index: Number(li.dataset.index),
      name: li.dataset.class, probability: parseFloat(li.querySelector(".pct").textContent) / 100 })));
    check(shown.length === image.top.length, `${image.file}: ${shown.length} bars, native Rust has ${image.top.length}`);
    check(shown[0].index === image.top[0].index && shown[0].name === image.top[0].name,
      `${image.file}: browser says ${shown[0].name}, native Rust says ${image.top[0].name}`);
    shown.forEach(({ probability }, i) => check(Math.abs(probability - image.top[i].probability) < 0.011,
      `${image.file}: bar ${i} ${probability} vs native ${image.top[i].probability}`));
  };
  // Opens the layer explorer and returns each layer's label and the colours of its maps.
  const openExplorer = async () => {
    await page.evaluate(() => { delete document.body.dataset.layers; });
    await page.click("#inside summary");
    await page.waitForFunction(() => document.body.dataset.layers !== undefined, null, { timeout: 60_000 });
    return page.$$eval("#layers .layer", (ls) => ls.map((l) => [l.querySelector("p").textContent,
      Array.from(l.querySelectorAll("canvas")).map((c) => new Set(Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data)).size)]));
  };

  // Real CIFAR-10 test images through the file input of page `p`: same answer as the native
  // Rust code, a heat map drawn that changes with the image. Returns each image's time for
  // inference + explanation (ms) and the last heat map.
  const classifyTestImages = async (p, onAnswer = () => {}) => {
    const times = [];
    let previous = null;
    for (const image of expected.images) {
      const before = await runsOf(p);
      await p.setInputFiles("#file", path.join(dist, "gallery", image.file));
      await settledOn(p, before);
      onAnswer();
      times.push(Number(await p.getAttribute("#timing", "data-infer")));
      await checkBars(p, image);
      const heat = await heatPixelsOf(p);
      check(heat !== null, `${image.file}: no heat map shown`);
      const reds = heat.filter((_, i) => i % 4 === 0);
      check(Math.max(...reds) - Math.min(...reds) > 60, `${image.file}: heat map is flat`);
      check(previous === null || heat.join() !== previous.join(), `${image.file}: heat map did not change`);
      previous = heat;
      const view = await p.evaluate(() => Array.from(document.getElementById("view").getContext("2d").getImageData(0, 0, 256, 256).data.slice(0, 4096)));
      check(view.some((v, i) => i % 4 !== 3 && v !== 0), `${image.file}: the picture was not drawn`);
    }
    return { times, heat: previous };
  };

  // The user's own networks: a trained checkpoint with other class names dropped on the page,
  // an MLP (no spatial layers) picked with the file input; a junk file, an oversized one and
  // one of an unknown network kind refused, the model in use kept.
  // Each checkpoint is classified with and explained; nothing is fetched meanwhile (the files
  // stay in the page). Ends back on the default model.
  let yoursMs = 0;
  const usersOwnNetworks = async () => {
    const { mine, mlp } = expected.yours;
    const t0 = Date.now();
    const fetchedBefore = fetched.length;
    const drop = (name, base64, size = 0) => page.evaluate(([name, base64, size]) => {
      const data = new DataTransfer();
      const bytes = base64 ? Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)) : new Uint8Array(size);
      data.items.add(new File([bytes], name));
      document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
    }, [name, base64, size]);
    const refused = async () => {
      await page.waitForFunction(() => document.getElementById("message").classList.contains("error"));
      const said = await message();
      await page.evaluate(() => document.getElementById("message").classList.remove("error"));
      return said.text;
    };
    const chosenModel = () => page.$eval("#model", (s) => s.selectedOptions[0].textContent);
    const modelBefore = await chosenModel();

    // Junk named like a checkpoint, and a file over 100 MB (refused by its size, unread).
    await drop("junk.safetensors", Buffer.from("only text, not a checkpoint").toString("base64"));
    let said = await refused();
    check(/^junk\.safetensors: invalid checkpoint: not a SafeTensors file/.test(said) && /still using/.test(said), `junk: ${said}`);
    // Junk under another name is neither a checkpoint nor an image.
    await drop("junk.bin", Buffer.from("\x00\x01 not a checkpoint, not a picture").toString("base64"));
    said = await refused();
    check(/^dropped junk\.bin: .*not an image/.test(said), `junk.bin: ${said}`);
    await drop("huge.safetensors", null, 101 * 2 ** 20);
    said = await refused();
    check(/^huge\.safetensors: the file is 106 MB; .*at most 100 MB/.test(said), `huge file: ${said}`);
    // A cifar-burn checkpoint of a network kind this build does not know.
    await drop("vit-tiny.safetensors", fs.readFileSync(expected.yours.unknown).toString("base64"));
    said = await refused();
    check(/^vit-tiny\.safetensors: invalid checkpoint: an unknown network: `vit-tiny` is of kind `vit`/.test(said) &&
      /still using/.test(said), `unknown network: ${said}`);
    check(await chosenModel() === modelBefore, `a refused file changed the model to ${await chosenModel()}`);

    // A trained network under other class names, dropped: chosen, described from its file,
    // classifying as natively, with the methods grid and the layer explorer.
    let before = await runs();
    await drop(mine.file, fs.readFileSync(mine.path).toString("base64"));
    await settled(before);
    said = await message();
    check(!said.error && said.text === `${mine.file}: your model is loaded.`, `dropped checkpoint: ${said.text}`);
    check(await chosenModel() === `your model: tiny-cnn (${mine.file})`, `model switcher: ${await chosenModel()}`);
    const info = await page.textContent("#model-info");
    check(info.includes(`Your model: tiny-cnn from ${mine.file}`) && info.includes("10 classes (Flugzeug, Auto") &&
      info.includes("saved after epoch 7, 62.50 % validation accuracy"), `model info: ${info}`);
    const picker = await page.$$eval("#explain option", (os) => os.slice(1).map((o) => o.textContent));
    check(picker.join() === mine.classes.join(), `class picker: ${picker}`);
    for (const image of mine.images) {
      before = await runs();
      await page.setInputFiles("#file", path.join(dist, "gallery", image.file));
      await settled(before);
      await checkBars(page, image);
      check(await heatPixels() !== null, `${image.file}: no heat map with your model`);
    }
    before = await runs();
    await page.click("#compare");
    await settled(before);
    const figures = await page.$$eval("#grid figure", (fs) => fs.length);
    check(figures === 7 && !(await message()).error, `your model's grid: ${figures} pictures, ${(await message()).text}`);
    const rows = await openExplorer();
    check(rows.length === mine.layers && rows.every(([, maps]) => maps.some((colours) => colours > 2)),
      `your model's layers: ${JSON.stringify(rows)}`);
    await page.click("#inside summary");

    // An MLP of three classes, picked: classified, and said to have nothing to explain.
    before = await runs();
    await page.setInputFiles("#file", mlp.path);
    await settled(before);
    check(await chosenModel() === `your model: mlp (${mlp.file})`, `model switcher: ${await chosenModel()}`);
    check(/no spatial layers/.test(await page.textContent("#model-info")), "the MLP's missing heat map is not explained");
    check(await page.$eval("#method", (m) => m.disabled) && await page.$eval("#compare", (c) => c.disabled),
      "methods offered for the MLP");
    before = await runs();
    await page.setInputFiles("#file", path.join(dist, "gallery", mlp.image.file));
    await settled(before);
    check(!(await message()).error, `the MLP: ${(await message()).text}`);
    await checkBars(page, mlp.image);
    check(await heatPixels() === null, "a heat map shown for the MLP");
    check((await openExplorer()).length === 0 && /no spatial layers/.test(await page.textContent("#layers")),
      "the explorer does not say the MLP has no layers to show");
    await page.click("#inside summary");
    check(fetched.length === fetchedBefore, `fetched while using your networks: ${fetched.slice(fetchedBefore).map(([f]) => f)}`);

    // Back to the shipped default: the methods return, and it answers as natively.
    before = await runs();
    await page.selectOption("#model", expected.model);
    await settled(before);
    check(!(await page.$eval("#method", (m) => m.disabled)), "methods still off after the MLP");
    await checkBars(page, expected.images.find((image) => image.file === mlp.image.file));
    yoursMs = Date.now() - t0;
  };


  const t0 = Date.now();
  // The WebGPU run forces WebGPU: otherwise the page keeps whichever backend is faster.
  await page.goto(`${origin}${base}?sw=0${backend === "webgpu" ? "&backend=webgpu" : ""}`);
  await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state), null, { timeout: 180_000 });
  const loadMs = Date.now() - t0;
  const start = await message();
  check(!start.error, `page did not start: ${start.text}`);
  const badge = await page.getAttribute("#backend", "data-backend");
  check(badge === (backend === "webgpu" ? "WebGPU" : "CPU"),
    `backend badge says ${badge}: ${await page.getAttribute("#backend", "title")}`);

  const { times: inferMs, heat: previousHeat } = await classifyTestImages(page, () => { answered = true; });

  // The CPU path before the patched Flex kernels (`?flex-kernels=generic`, Flex's own
  // convolution and batch norm) in a second tab: the same answers. Then the same images once
  // more on this page, so that both timings are of warm pages measured one after the other.
  if (backend === "cpu") {
    const generic = await browser.newPage();
    await generic.goto(`${origin}${base}?sw=0&backend=cpu&flex-kernels=generic`);
    await generic.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 180_000 });
    check((await generic.getAttribute("#backend", "title")).includes("flex-kernels=generic"), "the badge does not say generic");
    const { times: genericMs } = await classifyTestImages(generic);
    await generic.close();
    const { times: patchedMs } = await classifyTestImages(page);
    console.log(`flex kernels (${backend}): inference + ${expected.method}, median of ${genericMs.length} images: ` +
      `${median(genericMs)} ms with Flex's own route, then ${median(patchedMs)} ms with the patched kernels ` +
      `(${(median(genericMs) / median(patchedMs)).toFixed(2)}× faster)`);
  }

  // The first load: only the CPU module, the default model and the page's small files, within
  // the budget (a forced WebGPU run fetches the WebGPU module first, outside the budget).
  const firstLoad = [...new Set(fetched.filter(([, after]) => !after).map(([file]) => file))]
    .map((file) => [file, gzipBytes(file)]).sort((a, b) => b[1] - a[1]);
  const firstBytes = firstLoad.reduce((sum, [, n]) => sum + n, 0);
  console.log(`first load (${backend}): ${(firstBytes / 1e6).toFixed(2)} MB gzip in ${firstLoad.length} files: ` +
    firstLoad.slice(0, 5).map(([file, n]) => `${file} ${(n / 1e6).toFixed(2)} MB`).join(", "));
  check(firstLoad.some(([file]) => file === `weights/${expected.file}`), "the default model was not fetched");
  if (backend === "cpu") {
    check(firstBytes <= FIRST_LOAD_BUDGET, `first load ${firstBytes} bytes gzip, over the budget of ${FIRST_LOAD_BUDGET}`);
    check(!fetched.some(([file]) => file.startsWith("web-demo.js") || file.startsWith("web-demo_bg.wasm")),
      "the CPU page fetched the WebGPU module");
  }

  // Under load: 1,000 classifications in a row (the gallery's images in turn) leave the wasm
  // memory where the first ten left it, give or take the bound.
  if (backend === "cpu") {
    const memory = async () => Number(await page.getAttribute("body", "data-memory"));
    const [startBytes, startRuns, t0] = [await memory(), await runs(), Date.now()];
    await page.evaluate(async (n) => {
      const buttons = [...document.querySelectorAll("#gallery button")];
      const body = document.body;
      for (let i = 0; i < n; i++) {
        const before = Number(body.dataset.runs);
        buttons[i % buttons.length].click();
        while (!(Number(body.dataset.runs) > before && body.dataset.state === "ready")) {
          await new Promise((resolve) => setTimeout(resolve, 0));
        }
      }
    }, 1000);
    const [endBytes, endRuns] = [await memory(), await runs()];
    console.log(`1,000 classifications (${backend}): ${((Date.now() - t0) / 1000).toFixed(1)} s, wasm memory ` +
      `${(startBytes / 2 ** 20).toFixed(1)} → ${(endBytes / 2 ** 20).toFixed(1)} MiB`);
    check(endRuns - startRuns === 1000, `${endRuns - startRuns} answers to 1,000 clicks`);
    check(startBytes > 0 && endBytes - startBytes <= MEMORY_GROWTH_BOUND,
      `the wasm memory grew from ${startBytes} to ${endBytes} bytes`);
    check(!(await message()).error, `after 1,000 classifications: ${(await message()).text}`);
  }

  // Explaining another class redraws a different heat map and marks that class.
  let before;
  if (previousHeat) {
    const other = expected.images.at(-1).top[1];
    before = await runs();
    await page.selectOption("#explain", String(other.index));
    await settled(before);
    check(await page.getAttribute("#bars", "data-explained") === other.name, "explained class not marked");
    check((await heatPixels())?.join() !== previousHeat.join(), "explaining another class left the heat map unchanged");
    await page.selectOption("#explain", "");
  }

  // The default method is the manifest's most faithful one for the model.
  check(await page.inputValue("#method") === expected.method, `default method ${await page.inputValue("#method")}, manifest says ${expected.method}`);
  check(await page.getAttribute("#result", "data-method") === expected.method, "the first answers were not by the default method");

  // Every explanation method answers with the same prediction; their maps differ.
  if (previousHeat) {
    if (await page.inputValue("#method") !== "gradcam") {
      before = await runs();
      await page.selectOption("#method", "gradcam");
      await settled(before);
    }
    const methods = await page.$$eval("#method option", (os) => os.map((o) => o.value));
    check(methods.length === 7 && methods[0] === "gradcam", `methods offered: ${methods}`);
    const ranked = () => page.$$eval("#bars li", (lis) => lis.map((li) => li.dataset.class).join());
    const prediction = await ranked();
    const gradCam = (await heatPixels())?.join();
    let different = 0;
    const methodMs = [];
    for (const method of methods.slice(1)) {
      before = await runs();
      await page.selectOption("#method", method);
      await settled(before);
      const said = await message();
      check(!said.error, `${method}: ${said.text}`);
      check(await page.getAttribute("#result", "data-method") === method, `${method}: not the method shown`);
      check(await ranked() === prediction, `${method} changed the prediction`);
      if ((await heatPixels())?.join() !== gradCam) different += 1;
      methodMs.push(`${method} ${await page.getAttribute("#timing", "data-infer")} ms`);
    }
    check(different >= 4, `only ${different} of 6 methods drew a map other than Grad-CAM's`);
    console.log(`methods (${backend}): ${methodMs.join(", ")}`);
    // All of them side by side; a click on one picks it.
    before = await runs();
    await page.click("#compare");
    await settled(before);
    check(!(await message()).error, `compare: ${(await message()).text}`);
    const figures = await page.$$eval("#grid figure", (fs) => fs.map((f) => [f.dataset.method,
      new Set(Array.from(f.querySelector("canvas").getContext("2d").getImageData(0, 0, 128, 128).data)).size]));
    check(figures.length === 7 && figures.map(([m]) => m).join() === methods.join(), `grid: ${figures}`);
    check(figures.every(([, colours]) => colours > 50), `grid pictures not drawn: ${figures}`);
    check(!(await page.getAttribute("#grid", "hidden")), "grid hidden");
    console.log(`all methods (${backend}): ${await page.textContent("#timing")}`);
    before = await runs();
    await page.click('#grid figure[data-method="layercam"]');
    await settled(before);
    check(await page.inputValue("#method") === "layercam" && await page.getAttribute("#result", "data-method") === "layercam",
      "clicking a grid picture did not pick its method");
    before = await runs();
    await page.selectOption("#method", "gradcam");
    await settled(before);
  }

  // A wide picture (red, green and blue thirds): the centre square by default, the whole
  // strip on grey with "Whole picture", and the note says which.
  before = await runs();
  await page.evaluate(async () => {
    const canvas = Object.assign(document.createElement("canvas"), { width: 96, height: 32 });
    const context = canvas.getContext("2d");
    ["#ff0000", "#00ff00", "#0000ff"].forEach((colour, i) => { context.fillStyle = colour; context.fillRect(32 * i, 0, 32, 32); });
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    const data = new DataTransfer();
    data.items.add(new File([blob], "wide.png", { type: "image/png" }));
    document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
  });
  await settled(before);
  const leftEdge = () => page.evaluate(() => Array.from(document.getElementById("view").getContext("2d").getImageData(4, 128, 1, 1).data.slice(0, 3)));
  const notes = () => page.textContent("#notes");
  check((await leftEdge()).join() === "0,255,0" && /centre 32×32/.test(await notes()), `cropped: ${await leftEdge()}, ${await notes()}`);
  before = await runs();
  await page.check("#framing");
  await settled(before);
  check((await leftEdge()).join() === "255,0,0" && /padded/.test(await notes()), `padded: ${await leftEdge()}, ${await notes()}`);
  before = await runs();
  await page.uncheck("#framing");
  await settled(before);

  await page.fill("#opacity", "20");
  check(await page.evaluate(() => document.getElementById("heat").style.opacity) === "0.2", "opacity slider ignored");

  // Bad input: a clear message, and the page goes on working (gallery click).
  await page.setInputFiles("#file", { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("not a picture") });
  await page.waitForFunction(() => document.getElementById("message").classList.contains("error"));
  const bad = await message();
  check(/not an image/.test(bad.text), `bad input message: ${bad.text}`);
  before = await runs();
  await page.click("#gallery button >> nth=0");
  await settled(before);
  check(!(await message()).error, "gallery click after bad input failed");

  // Drag-and-drop and paste deliver files through the same path as the file input.
  for (const how of ["drop", "paste"]) {
    before = await runs();
    await page.evaluate(async ([how, file]) => {
      const bytes = await (await fetch(`gallery/${file}`)).arrayBuffer();
      const data = new DataTransfer();
      data.items.add(new File([bytes], file, { type: "image/png" }));
      const event = how === "drop"
        ? new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true })
        : new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true });
      (how === "drop" ? document.getElementById("drop") : document).dispatchEvent(event);
    }, [how, expected.images[0]?.file ?? "00500-deer.png"]);
    await settled(before);
    const said = await message();
    check(!said.error && said.text.startsWith(how === "drop" ? "dropped" : "pasted"), `${how}: ${said.text}`);
  }

  // The camera (Chromium's fake device when --camera): a snapshot is classified.
  if (args.camera) {
    await page.click("#camera");
    await page.waitForFunction(() => document.getElementById("video").videoWidth > 0, null, { timeout: 30_000 });
    before = await runs();
    await page.click("#snap");
    await settled(before);
    check((await message()).text.startsWith("camera photo"), `camera: ${(await message()).text}`);
  }

  // The layer explorer: every layer's shape and strongest channels, drawn; a click enlarges.
  const rows = await openExplorer();
  check(rows.length === expected.layers, `${rows.length} layers shown, the model has ${expected.layers}`);
  check(rows.every(([label, maps]) => /: \d+×\d+×\d+/.test(label) && maps.length > 0), `layer rows: ${JSON.stringify(rows)}`);
  check(rows.every(([, maps]) => maps.some((colours) => colours > 2)), `blank feature maps: ${JSON.stringify(rows)}`);
  await page.click("#layers canvas >> nth=0");
  check(await page.$eval("#layers canvas >> nth=0", (c) => c.classList.contains("big")), "a click did not enlarge the map");
  await page.click("#inside summary");

  await usersOwnNetworks();

  // Unforced, the page races the two backends on the first image and keeps the faster.
  if (backend === "webgpu") {
    const racing = await browser.newPage();
    const gpuModule = [];
    let raced = false;
    racing.on("request", (r) => { if (/\/web-demo(_bg\.wasm|\.js)\?/.test(r.url())) gpuModule.push(raced); });
    await racing.goto(`${origin}${base}?sw=0`);
    await racing.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 180_000 });
    // The CPU answers first; the WebGPU module is fetched only after the first answer.
    check(await racing.getAttribute("#backend", "data-backend") === "CPU", "unforced page did not start on the CPU");
    check(gpuModule.length === 0, "the WebGPU module was fetched before the first image");
    raced = true;
    await racing.click("#gallery button >> nth=0");
    await racing.waitForFunction(() => Number(document.body.dataset.runs ?? 0) > 0 && document.body.dataset.state === "ready",
      null, { timeout: 180_000 });
    const measured = JSON.parse(await racing.getAttribute("#backend", "data-measured") ?? "null");
    check(measured && measured.cpu > 0 && measured.webgpu > 0, `no measurement: ${measured}`);
    const kept = await racing.getAttribute("#backend", "data-backend");
    check(kept === (measured.cpu < measured.webgpu ? "CPU" : "WebGPU"), `kept ${kept} although ${JSON.stringify(measured)}`);
    check((await racing.getAttribute("#backend", "title")).includes("faster here"), "the badge does not say why");
    check((await racing.$$("#bars li")).length === 5, "no answer after the race");
    check(gpuModule.length >= 2 && gpuModule.every((after) => after), `WebGPU module requests: ${gpuModule}`);
    console.log(`race (${backend}): ${JSON.stringify(measured)}, kept ${kept}`);
    await racing.close();
  }

  // Another shipped model.
  before = await runs();
  await page.selectOption("#model", "tiny-cnn");
  await settled(before);
  check((await page.textContent("#model-info")).includes("tiny-cnn"), "model switch not shown");
  const modelLoadMs = Number(await page.getAttribute("#timing", "data-load"));

  // Offline once loaded: the service worker's cache answers when the network is gone.
  if (args.offline) {
    const context = page.context();
    await page.goto(`${origin}${base}`);
    await page.waitForFunction(() => navigator.serviceWorker?.controller && document.body.dataset.state === "ready",
      null, { timeout: 60_000 });
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 60_000 });
    await context.setOffline(true);
    await page.reload();
    await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state), null, { timeout: 60_000 });
    check(!(await message()).error, `offline reload failed: ${(await message()).text}`);
    const cacheNames = await page.evaluate(() => caches.keys());
    check(cacheNames.length === 1 && cacheNames[0] !== "cifar-burn-dev", `caches: ${cacheNames}`);
    before = await runs();
    await page.click("#gallery button >> nth=1");
    await settled(before);
    await context.setOffline(false);
  }

  if (args.screenshot && args.photo) {
    await page.selectOption("#model", expected.model);
    await page.waitForFunction(() => document.body.dataset.state === "ready");
    await page.fill("#opacity", "55");
    await page.evaluate(() => { document.getElementById("heat").style.opacity = 0.55; });
    before = await runs();
    await page.setInputFiles("#file", args.photo);
    await settled(before);
    // With the comparison grid and the layer explorer open.
    before = await runs();
    await page.click("#compare");
    await settled(before);
    if (!(await page.$eval("#inside", (d) => d.open))) {
      await page.evaluate(() => { delete document.body.dataset.layers; });
      await page.click("#inside summary");
      await page.waitForFunction(() => document.body.dataset.layers !== undefined);
    }
    await page.screenshot({ path: args.screenshot, fullPage: true });
  }
  console.log(`ok (${backend}): page ready in ${loadMs} ms (startup ${await page.getAttribute("body", "data-startup")} ms in page), ` +
    `inference + ${expected.method} first ${inferMs[0]} ms, median ${median(inferMs)} ms over ${inferMs.length} images, ` +
    `tiny-cnn load ${modelLoadMs} ms, your networks ${yoursMs} ms`);
  check(sent.length === 0, `the page sent requests other than GET: ${sent}`);
} catch (e) {
  process.exitCode = 1;
  console.error(`FAIL (${backend}): ${e.message}`);
  console.error(log.join("\n"));
} finally {
  await browser.close();
  server.close();
}
