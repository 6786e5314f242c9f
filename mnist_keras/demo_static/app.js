// The page: draw on the pad, send it to /demo/preprocess (the server brings it to MNIST form
// with predict.to_mnist), then ask TensorFlow Serving's REST API for the prediction.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const seen = document.getElementById("seen");
const bars = document.getElementById("bars");
const statusLine = document.getElementById("status");
// The model's name in the API (--name), asked once; predictions wait for it.
const model = fetch("/demo/config").then((r) => r.json()).then((config) => config.model);
let drawn = 0; // strokes so far; each answer says which drawing it belongs to
let timer = null;

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

function drawingRows() {
  const { data, width, height } = ctx.getImageData(0, 0, pad.width, pad.height);
  const rows = [];
  for (let y = 0; y < height; y++) {
    const row = new Array(width);
    for (let x = 0; x < width; x++) row[x] = data[(y * width + x) * 4];
    rows.push(row);
  }
  return rows;
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

async function classify(preprocessed, version) {
  try {
    const { image } = await preprocessed;
    const body = JSON.stringify({ instances: [image] });
    const name = encodeURIComponent(await model);
    const { predictions } = await postJson(`/v1/models/${name}:predict`, body);
    if (version !== drawn) return; // the drawing changed meanwhile: a newer answer follows
    showSeen(image);
    showResult(predictions[0].probabilities);
    statusLine.textContent = "";
  } catch (error) {
    if (version !== drawn) return;
    statusLine.textContent = error.message;
  }
  document.body.dataset.predicted = String(version);
}

function classifyDrawing(version) {
  classify(postJson("/demo/preprocess", JSON.stringify({ image: drawingRows() })), version);
}

function classifyFile(file) {
  drawn += 1;
  document.body.dataset.drawn = String(drawn);
  classify(file.arrayBuffer().then((bytes) =>
    postJson("/demo/preprocess", bytes, file.type || "image/png")), drawn);
}

function showSeen(image) {
  const pixels = seen.getContext("2d").createImageData(28, 28);
  image.flat().forEach((value, i) => {
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
