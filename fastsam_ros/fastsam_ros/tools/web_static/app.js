// The page of fastsam_web: shows the latest frame, sends prompts, draws the selection.
"use strict";

const stage = document.getElementById("stage");
const frame = document.getElementById("frame");
const mask = document.getElementById("mask");
const dragBox = document.getElementById("drag-box");
const message = document.getElementById("message");
const DRAG_PX = 6;

let frameSeq = -1;
let frameSize = null; // [width, height] of the source frames, once one has arrived
let points = [];
let labels = [];
let drag = null;

function show(text, ok) {
  message.textContent = text;
  message.className = ok ? "ok" : "error";
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Long poll: ask for a frame newer than the one shown; the server answers with the latest.
async function pollFrames() {
  for (;;) {
    try {
      const response = await fetch(`/api/frame?after=${frameSeq}`);
      if (response.status === 200) {
        const url = URL.createObjectURL(await response.blob());
        const old = frame.src;
        frame.src = url;
        await frame.decode();
        if (old) URL.revokeObjectURL(old);
        frameSeq = Number(response.headers.get("X-Frame-Seq"));
        frameSize = response.headers.get("X-Frame-Size").split("x").map(Number);
        frame.dataset.seq = String(frameSeq);
        stage.classList.remove("empty");
        document.getElementById("frame-info").textContent =
          `frame ${frameSeq}, ${frameSize[0]}x${frameSize[1]}, stamp ${response.headers.get("X-Frame-Stamp")}`;
        refreshInstances();
      } else if (response.status !== 204) {
        await sleep(1000);
      }
    } catch (error) {
      await sleep(1000);
    }
  }
}

async function refreshInstances() {
  const response = await fetch("/api/instances");
  const data = await response.json();
  const body = document.querySelector("#instances tbody");
  body.replaceChildren(
    ...data.instances.map((i) => {
      const row = document.createElement("tr");
      for (const value of [i.id, i.class_name, i.score.toFixed(2), i.track_id]) {
        const cell = document.createElement("td");
        cell.textContent = String(value);
        row.appendChild(cell);
      }
      return row;
    })
  );
}

// Source-image pixel under a mouse event; the placeholder counts as 640x480 before any frame.
function sourcePoint(event) {
  const rect = stage.getBoundingClientRect();
  const [width, height] = frameSize || [rect.width, rect.height];
  return [
    ((event.clientX - rect.left) * width) / rect.width,
    ((event.clientY - rect.top) * height) / rect.height,
  ];
}

async function prompt(kind, body) {
  const clicked = performance.now();
  let data;
  try {
    const response = await fetch(`/api/prompt/${kind}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    data = await response.json();
  } catch (error) {
    show(`request failed: ${error}`, false);
    return;
  }
  show(data.message, data.success);
  if (!data.success && kind === "point") {
    points.pop();
    labels.pop();
  }
  const list = document.getElementById("selection");
  list.replaceChildren(
    ...(data.instances || []).map((i) => {
      const item = document.createElement("li");
      item.dataset.id = String(i.id);
      item.textContent = `#${i.id} ${i.class_name} ${i.score.toFixed(2)} (track ${i.track_id})`;
      return item;
    })
  );
  if (data.mask) {
    mask.src = data.mask;
    await mask.decode();
    mask.hidden = false;
  } else {
    mask.hidden = true;
    mask.removeAttribute("src");
  }
  mask.dataset.pixels = String(data.mask_pixels || 0);
  mask.dataset.stamp = String(data.stamp || "");
  if (data.success) {
    const ms = performance.now() - clicked;
    document.getElementById("latency").textContent = `click to mask shown: ${ms.toFixed(0)} ms`;
    document.getElementById("latency").dataset.ms = ms.toFixed(1);
  }
}

stage.addEventListener("contextmenu", (event) => event.preventDefault());

stage.addEventListener("mousedown", (event) => {
  event.preventDefault();
  drag = { start: sourcePoint(event), x: event.clientX, y: event.clientY, background: event.button === 2 || event.shiftKey };
});

stage.addEventListener("mousemove", (event) => {
  if (!drag || Math.hypot(event.clientX - drag.x, event.clientY - drag.y) < DRAG_PX) return;
  const rect = stage.getBoundingClientRect();
  dragBox.hidden = false;
  dragBox.style.left = `${Math.min(drag.x, event.clientX) - rect.left}px`;
  dragBox.style.top = `${Math.min(drag.y, event.clientY) - rect.top}px`;
  dragBox.style.width = `${Math.abs(event.clientX - drag.x)}px`;
  dragBox.style.height = `${Math.abs(event.clientY - drag.y)}px`;
});

window.addEventListener("mouseup", (event) => {
  if (!drag) return;
  const start = drag;
  drag = null;
  dragBox.hidden = true;
  const end = sourcePoint(event);
  if (Math.hypot(event.clientX - start.x, event.clientY - start.y) >= DRAG_PX) {
    points = [];
    labels = [];
    const box = [Math.min(start.start[0], end[0]), Math.min(start.start[1], end[1]),
      Math.max(start.start[0], end[0]), Math.max(start.start[1], end[1])];
    prompt("box", { box });
    return;
  }
  points.push(start.start);
  labels.push(start.background ? 0 : 1);
  prompt("point", { points, labels });
});

document.getElementById("text-form").addEventListener("submit", (event) => {
  event.preventDefault();
  points = [];
  labels = [];
  prompt("text", { text: document.getElementById("text").value });
});

document.getElementById("clear").addEventListener("click", () => {
  points = [];
  labels = [];
  mask.hidden = true;
  document.getElementById("selection").replaceChildren();
  show("", true);
});

pollFrames();
