// The page: draw on the pad (or open a picture) and see what the model reads. Two ways to get
// the answer, one page: from the served demo (python -m mnist_keras.demo), which brings the
// drawing to MNIST form with predict.to_mnist and answers through TensorFlow Serving's REST API;
// or in this browser (the static folder, python -m mnist_keras.demo --static), with mnist.js and
// ONNX Runtime Web. The static folder's index.html names its model on this script's tag.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d", { willReadFrequently: true });
const seen = document.getElementById("seen");
const bars = document.getElementById("bars");
const statusLine = document.getElementById("status");
const runtime = document.currentScript.dataset.model
  ? inBrowser(document.currentScript.dataset)
  : fromServer();
let drawn = 0; // strokes so far; each answer says which drawing it belongs to
let timer = null;

// Each way answers a drawing (the pad's ImageData) or a picture (a File) with the 28x28 the
// model saw (784 grey levels) and the ten probabilities.
function fromServer() {
  // The model's name in the API (--name), asked once; predictions wait for it.
  const model = fetch("/demo/config").then((r) => r.json()).then((config) => config.model);
  async function predict(preprocessed) {
    const { image } = await preprocessed;
    const body = JSON.stringify({ instances: [image] });
    const name = encodeURIComponent(await model);
    const { predictions } = await postJson(`/v1/models/${name}:predict`, body);
    return { image: image.flat(), probabilities: predictions[0].probabilities };
  }
  return {
    ready: model,
    drawing: (pixels) =>
      predict(postJson("/demo/preprocess", JSON.stringify({ image: rows(pixels) }))),
    picture: (file) => predict(file.arrayBuffer().then((bytes) =>
      postJson("/demo/preprocess", bytes, file.type || "image/png"))),
  };
}

function inBrowser({ model, input, output }) {
  const session = loadModel(model);
  // The model first: when it (or the page's scripts) could not load, each answer is that line.
  async function predict(read) {
    const runner = await session;
    const image = mnist.toMnist(mnist.grayOf(await read()));
    const result = await runner.run({ [input]: new ort.Tensor("uint8", image, [1, 28, 28]) });
    return { image, probabilities: Array.from(result[output].data) };
  }
  return {
    ready: session,
    drawing: (pixels) => predict(() => pixels),
    picture: (file) => predict(() => decodePicture(file)),
  };
}

async function loadModel(file) {
  if (location.protocol === "file:") {
    throw new Error(`browsers do not let a page opened as a file read ${file}: serve this ` +
      "folder (python -m http.server) and open its address");
  }
  if (typeof ort === "undefined" || typeof mnist === "undefined") {
    throw new Error("the page's scripts did not load: write the folder again " +
      "(python -m mnist_keras.demo --static)");
  }
  // A static host sends no cross-origin isolation headers, so WebAssembly runs on one thread.
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = "error"; // not its warnings about this machine's CPU on the console
  ort.env.wasm.wasmPaths = new URL("static/", document.baseURI).href;
  const answer = await fetch(file).catch(() => null);
  if (!answer || !answer.ok) {
    const why = answer ? `${answer.status} ${answer.statusText}`.trim() : "no answer";
    throw new Error(`${file}: the model could not be read (${why})`);
  }
  const bytes = new Uint8Array(await answer.arrayBuffer());
  try {
    return await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
  } catch (error) {
    const reason = String(error.message || error).split("\n")[0];
    throw new Error(`${file}: not a model ONNX Runtime can load (${reason})`);
  }
}

async function decodePicture(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { colorSpaceConversion: "none" });
  } catch {
    throw new Error(`${file.name}: not a readable image (a PNG, JPEG, GIF or BMP picture)`);
  }
  if (bitmap.width * bitmap.height > mnist.MAX_SIDE ** 2) {
    throw new Error(`${file.name}: more than ${mnist.MAX_SIDE}x${mnist.MAX_SIDE} pixels`);
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const paper = canvas.getContext("2d");
  paper.fillStyle = "#fff"; // transparent parts become white paper, as predict reads them
  paper.fillRect(0, 0, bitmap.width, bitmap.height);
  paper.drawImage(bitmap, 0, 0);
  return paper.getImageData(0, 0, bitmap.width, bitmap.height);
}

function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  drawn += 1;
  document.body.dataset.drawn = String(drawn);
  showResult(null);
  seen.getContext("2d").clearRect(0, 0, 28, 28);
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width,
          (event.clientY - box.top) * pad.height / box.height];
}

let last = null;
pad.addEventListener("pointerdown", (event) => {
  pad.setPointerCapture(event.pointerId);
  last = point(event);
  stroke(last, last);
});
pad.addEventListener("pointermove", (event) => {
  if (last === null) return;
  const next = point(event);
  stroke(last, next);
  last = next;
});
for (const name of ["pointerup", "pointercancel"]) {
  pad.addEventListener(name, () => {
    if (last === null) return;
    last = null;
    drawn += 1;
    document.body.dataset.drawn = String(drawn);
    schedule();
  });
}

function stroke(from, to) {
  // A thick light stroke on black, as MNIST digits are.
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 18;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(from[0], from[1]);
  ctx.lineTo(to[0], to[1]);
  ctx.stroke();
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(() => classifyDrawing(drawn), 120);
}

function rows({ data, width, height }) {
  const result = [];
  for (let y = 0; y < height; y++) {
    const row = new Array(width);
    for (let x = 0; x < width; x++) row[x] = data[(y * width + x) * 4];
    result.push(row);
  }
  return result;
}

async function postJson(url, body, type = "application/json") {
  const answer = await fetch(url, { method: "POST", headers: { "Content-Type": type }, body });
  const text = await answer.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* a proxy's or server's plain-text error page */ }
  if (!answer.ok || json === null) {
    throw new Error((json && json.error) || `${answer.status} ${answer.statusText}`);
  }
  return json;
}

async function classify(answer, version) {
  try {
    const { image, probabilities } = await answer;
    if (version !== drawn) return; // the drawing changed meanwhile: a newer answer follows
    showSeen(image);
    showResult(probabilities);
    statusLine.textContent = "";
    performance.mark("mnist:answered");
  } catch (error) {
    if (version !== drawn) return;
    statusLine.textContent = error.message;
  }
  document.body.dataset.predicted = String(version);
}

// User Timing marks (DevTools' performance panel shows them; scripts/static_page_latency.py reads
// them): the model loaded, a drawing asked about, its answer shown.
function classifyDrawing(version) {
  performance.mark("mnist:asked");
  classify(runtime.drawing(ctx.getImageData(0, 0, pad.width, pad.height)), version);
}

function classifyFile(file) {
  drawn += 1;
  document.body.dataset.drawn = String(drawn);
  classify(runtime.picture(file), drawn);
}

function showSeen(image) {
  const pixels = seen.getContext("2d").createImageData(28, 28);
  image.forEach((value, i) => {
    pixels.data.set([value, value, value, 255], i * 4);
  });
  seen.getContext("2d").putImageData(pixels, 0, 0);
}

function showResult(probabilities) {
  bars.replaceChildren();
  const top = probabilities ? probabilities.indexOf(Math.max(...probabilities)) : -1;
  document.getElementById("top-class").textContent = top >= 0 ? String(top) : "–";
  document.getElementById("top-prob").textContent =
    top >= 0 ? `${(probabilities[top] * 100).toFixed(1)}%` : "";
  for (let digit = 0; digit < 10; digit++) {
    const p = probabilities ? probabilities[digit] : 0;
    const item = document.createElement("li");
    item.className = digit === top ? "top" : "";
    item.innerHTML = `<span class="digit">${digit}</span>` +
      `<span class="bar" style="width:${(p * 200).toFixed(1)}px"></span>` +
      `<span class="pct">${(p * 100).toFixed(1)}%</span>`;
    bars.append(item);
  }
}

document.getElementById("clear").addEventListener("click", clearPad);
document.getElementById("file").addEventListener("change", (event) => {
  if (event.target.files.length) classifyFile(event.target.files[0]);
});
const area = document.querySelector(".pad");
area.addEventListener("dragover", (event) => { event.preventDefault(); area.classList.add("dragging"); });
area.addEventListener("dragleave", () => area.classList.remove("dragging"));
area.addEventListener("drop", (event) => {
  event.preventDefault();
  area.classList.remove("dragging");
  if (event.dataTransfer.files.length) classifyFile(event.dataTransfer.files[0]);
});

clearPad();
// The model loaded (the tests and the load-time measurement wait for this), or one line saying
// why not.
runtime.ready.then(
  () => {
    document.body.dataset.model = "ready";
    performance.mark("mnist:ready");
  },
  (error) => {
    document.body.dataset.model = "failed";
    statusLine.textContent = error.message;
  },
);
