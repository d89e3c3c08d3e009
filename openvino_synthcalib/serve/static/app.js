// synthcalib serve: the page's behaviour. Plain JavaScript, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { config: null, generator: null, seq: 0, timer: null, polling: null };

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    throw new Error(body && body.error ? body.error : `${response.status} ${response.statusText}`);
  }
  return body;
}

function showError(element, message) {
  element.textContent = message || "";
  element.hidden = !message;
}

function option(value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  return o;
}

function cell(row, header, value) {
  const tr = document.createElement("tr");
  const th = document.createElement("th");
  th.textContent = header;
  const td = document.createElement("td");
  if (value instanceof Node) td.append(value);
  else td.textContent = value;
  tr.append(th, td);
  row.append(tr);
}

const fmt = {
  int: (n) => Math.round(n).toLocaleString("en-US"),
  mb: (b) => `${(b / 1e6).toFixed(2)} MB`,
  pct: (x) => `${(100 * x).toFixed(2)} %`,
};

// Provenance keys shown as rows of the card; the whole record is under "provenance".
const PROVENANCE_ROWS = ["method", "teacher", "trained", "steps"];

// ---- generator and card ---------------------------------------------------------------------

function currentGenerator() {
  return state.config.generators.find((g) => g.id === $("generator").value);
}

// Everything that depends on the generator starts again from its own defaults: the per-class count
// and classes that fit its class count under the preview caps, chips, grid, command line.
async function selectGenerator() {
  state.generator = currentGenerator();
  const g = state.generator;
  $("count").value = String(g.preview.count);
  $("classes").value = g.preview.classes;
  $("grid").replaceChildren();
  $("grid").classList.remove("stale");
  $("grid").classList.toggle("pixelated", Math.max(...g.image_size) <= 64);
  $("command-line").hidden = true;
  showError($("preview-error"), null);
  renderChips();
  renderCard(g, null);
  clearTimeout(state.timer);
  await updatePreview(); // before the card, whose images/s measurement would compete with it
  const id = state.generator.id;
  try {
    const card = await api(`/api/generators/${id}/card`);
    if (state.generator.id === id) renderCard(state.generator, card);
  } catch (e) {
    showError($("preview-error"), e.message);
  }
}

function renderCard(g, card) {
  const table = $("card");
  table.replaceChildren();
  cell(table, "file", g.label);
  const names = g.class_names;
  const shown = names.length > 12 ? `${names.slice(0, 10).join(", ")}, …` : names.join(", ");
  cell(table, "classes", `${g.num_classes}: ${shown}`);
  cell(table, "image size", `${g.image_size[0]} × ${g.image_size[1]}`);
  if (!card) {
    cell(table, "images/s", "measuring on this machine…");
    $("provenance").hidden = true;
    return;
  }
  cell(table, "z_dim", String(card.z_dim));
  cell(table, "output range", `[${card.output_range.join(", ")}]`);
  cell(table, "label input", card.label_input);
  cell(table, "parameters", fmt.int(card.parameters));
  cell(table, "file size", fmt.mb(card.file_bytes));
  cell(table, "images/s", `${fmt.int(card.images_per_s)} on this machine (batch ${card.batch_size}, CPU)`);
  const provenance = card.provenance || {};
  for (const key of PROVENANCE_ROWS) {
    const value = provenance[key];
    if (value !== undefined && typeof value !== "object") cell(table, key, String(value));
  }
  const details = $("provenance");
  details.hidden = Object.keys(provenance).length === 0;
  details.querySelector("pre").textContent = JSON.stringify(provenance, null, 2);
}

// ---- classes ----------------------------------------------------------------------------------

function chosenClasses() {
  const text = $("classes").value.trim();
  return text ? text.split(",").map((s) => s.trim()).filter(Boolean) : [];
}

// A chip per class up to this many; beyond (ImageNet's 1000) the text box alone chooses.
const MAX_CHIPS = 60;

function renderChips() {
  const chips = $("chips");
  chips.replaceChildren();
  const names = state.generator.class_names;
  if (names.length > MAX_CHIPS) {
    const hint = document.createElement("span");
    hint.className = "muted small";
    const empty = state.generator.preview.classes === "" ? "empty: all, balanced" : `all ${names.length} at once are over the preview limit`;
    hint.textContent = `${names.length} classes: type names or indices above, comma-separated (${empty})`;
    chips.append(hint);
    return;
  }
  names.forEach((name, index) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "chip";
    b.textContent = name;
    b.dataset.name = name;
    b.dataset.index = String(index);
    b.addEventListener("click", () => toggleClass(name));
    chips.append(b);
  });
  syncChips();
}

function syncChips() {
  const chosen = chosenClasses();
  for (const b of $("chips").children) {
    if (!b.dataset.name) continue;
    const on = chosen.length === 0 || chosen.includes(b.dataset.name) || chosen.includes(b.dataset.index);
    b.setAttribute("aria-pressed", String(on));
  }
}

function toggleClass(name) {
  const names = state.generator.class_names;
  let chosen = chosenClasses();
  if (chosen.length === 0) chosen = names.slice();
  chosen = chosen.map((c) => (/^\d+$/.test(c) && names[Number(c)] ? names[Number(c)] : c));
  chosen = chosen.includes(name) ? chosen.filter((c) => c !== name) : chosen.concat([name]);
  if (chosen.length === 0) return; // keep at least one class
  const ordered = names.filter((n) => chosen.includes(n));
  $("classes").value = ordered.length === names.length ? "" : ordered.join(",");
  syncChips();
  schedulePreview(0);
}

// ---- preview grid -----------------------------------------------------------------------------

function previewQuery() {
  const q = new URLSearchParams({ seed: $("seed").value.trim(), count: $("count").value.trim() });
  const classes = $("classes").value.trim();
  if (classes) q.set("classes", classes);
  return q;
}

function schedulePreview(delay) {
  clearTimeout(state.timer);
  state.timer = setTimeout(updatePreview, delay);
}

async function updatePreview() {
  const seq = ++state.seq;
  const g = state.generator;
  const query = previewQuery();
  const download = $("download");
  download.href = `/api/generators/${g.id}/samples.zip?${query}`;
  $("grid").classList.add("loading");
  $("preview-status").textContent = "generating…";
  try {
    const data = await api(`/api/generators/${g.id}/preview?${query}`);
    if (seq !== state.seq) return;
    renderGrid(data);
    $("grid").classList.remove("stale");
    showError($("preview-error"), null);
    download.classList.remove("disabled");
    $("preview-status").textContent = `${data.images} images in ${data.seconds.toFixed(2)} s · seed ${data.seed}`;
    $("command").textContent = data.command;
    $("command-line").hidden = false;
  } catch (e) {
    if (seq !== state.seq) return;
    showError($("preview-error"), e.message);
    $("grid").classList.add("stale"); // the images shown are not those of the fields above
    $("command-line").hidden = true; // nor is any command
    download.classList.add("disabled");
    $("preview-status").textContent = "";
  } finally {
    if (seq === state.seq) $("grid").classList.remove("loading");
  }
}

function renderGrid(data) {
  const grid = $("grid");
  grid.dataset.seed = String(data.seed);
  grid.replaceChildren();
  for (const row of data.rows) {
    const div = document.createElement("div");
    div.className = "row";
    const label = document.createElement("div");
    label.className = "row-label";
    label.textContent = row.name;
    label.title = `class ${row.label}: ${row.name}`;
    div.append(label);
    for (const item of row.items) {
      const img = document.createElement("img");
      img.src = `data:image/png;base64,${item.png}`;
      img.alt = item.path;
      img.title = item.path;
      img.tabIndex = 0;
      img.dataset.caption = `${row.name} · item ${item.index} · seed ${data.seed} · ${item.path}`;
      img.addEventListener("click", () => openLightbox(img));
      img.addEventListener("keydown", (e) => {
        if (e.key === "Enter") openLightbox(img);
      });
      div.append(img);
    }
    grid.append(div);
  }
}

function openLightbox(img) {
  const big = $("lightbox-img");
  big.src = img.src;
  big.alt = img.alt;
  big.classList.toggle("pixelated", $("grid").classList.contains("pixelated"));
  $("lightbox-caption").textContent = img.dataset.caption;
  $("lightbox").hidden = false;
}

function closeLightbox() {
  $("lightbox").hidden = true;
}

// ---- model and preprocessing ------------------------------------------------------------------

function currentModel() {
  return state.config.models.find((m) => m.id === $("model").value);
}

// The preset list starts with "" (no preset chosen): the model's declared preprocessing when it
// declares one, else nothing, and quantizing then stops with the plan's error. Never a guess.
function selectModel() {
  const m = currentModel();
  const first = $("preset").options[0];
  const declared = m && m.preprocessing;
  first.textContent = declared
    ? `${declared.preset || declared.text} (the model's own)`
    : "— choose one —";
  $("preset").value = "";
  renderPresetNote();
  // A generator of the model's classes, when the one shown is not.
  const g = state.generator;
  if (m && m.classes && g && g.num_classes !== m.classes) {
    const fit = state.config.generators.find((x) => x.num_classes === m.classes);
    if (fit) {
      $("generator").value = fit.id;
      selectGenerator();
    }
  }
}

// A preset's name, with its values when they are short ("inception [-1, 1]"; "cifar10" alone).
function presetHint(name) {
  const values = state.config.preset_values[name];
  return values && values.text.length <= 14 ? `${name} ${values.text}` : name;
}

function renderPresetNote() {
  const m = currentModel();
  const note = $("preset-note");
  const chosen = $("preset").value;
  const declared = m && m.preprocessing;
  note.classList.remove("warning");
  note.hidden = !m;
  if (!m) return;
  if (chosen) {
    const values = state.config.preset_values[chosen];
    const over = declared ? `; it replaces what the model states (${declared.text}, from ${declared.origin})` : "";
    note.textContent = `Preset ${chosen}: ${values ? values.text : chosen}${over}.`;
  } else if (declared) {
    note.textContent = `Preprocessing from the model: ${declared.text} (read from ${declared.origin}).`;
  } else {
    note.classList.add("warning");
    note.textContent =
      "The model does not say how its inputs are normalised: choose the preset it was trained with " +
      `(${state.config.presets.map(presetHint).join(", ")}). ` +
      "Quantizing without one stops with an error.";
  }
}

// ---- calibration ------------------------------------------------------------------------------

async function startCalibration(event) {
  event.preventDefault();
  showError($("calibrate-error"), null);
  const body = {
    generator: state.generator.id,
    model: $("model").value,
    preset: $("preset").value,
    recipe: $("recipe").value,
    num_samples: $("num-samples").value.trim(),
    seed: $("cal-seed").value.trim(),
  };
  try {
    const job = await api("/api/calibrate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    $("report").hidden = true;
    showJob(job);
  } catch (e) {
    showError($("calibrate-error"), e.message);
  }
}

function showJob(job) {
  const running = job.state === "running";
  $("calibrate").disabled = running;
  $("progress").hidden = job.state === "done";
  const bar = $("progress-bar");
  if (job.total > 0) bar.value = Math.min(1, job.done / job.total);
  else bar.removeAttribute("value"); // indeterminate
  $("progress-text").textContent = job.text;
  $("progress-time").textContent = `${job.elapsed.toFixed(0)} s`;
  if (job.state === "failed") {
    $("progress").hidden = true;
    showError($("calibrate-error"), job.error);
  }
  if (job.state === "done") renderReport(job.report);
  clearTimeout(state.polling);
  if (running) state.polling = setTimeout(() => pollJob(job.id), 400);
}

async function pollJob(id) {
  try {
    showJob(await api(`/api/jobs/${id}`));
  } catch (e) {
    showError($("calibrate-error"), e.message);
    $("calibrate").disabled = false;
  }
}

function emphasis(bold, rest) {
  const span = document.createElement("span");
  const strong = document.createElement("strong");
  strong.textContent = bold;
  span.append(strong, ` ${rest}`);
  return span;
}

function renderReport(r) {
  const table = $("report-table");
  table.replaceChildren();
  const per = Object.values(r.samples_per_class).filter((n) => n > 0);
  let perText = Math.min(...per) === Math.max(...per) ? `${per[0]} per class` : `${Math.min(...per)}–${Math.max(...per)} per class`;
  if (per.length < r.num_classes) perText = `${per.length} of ${r.num_classes} classes, ${perText}`;
  cell(table, "model", r.model);
  cell(table, "calibration", `${r.num_samples} synthetic items (${perText}), seed ${r.seed}, recipe ${r.recipe}`);
  const pre = r.preprocessing;
  const origin = /^preset /.test(pre.origin || "")
    ? pre.origin
    : `from ${pre.origin}${pre.preset ? `, as preset ${pre.preset}` : ""}`;
  cell(table, "preprocessing", emphasis(pre.text, `(${origin})`));
  cell(table, "time", `${r.quantize_seconds.toFixed(1)} s quantization · ${r.total_seconds.toFixed(1)} s in all`);
  cell(table, "FP32 vs INT8 top-1 agreement", emphasis(fmt.pct(r.agreement), `of ${r.held_out} held-out synthetic items (seed ${r.held_out_seed})`));
  if (r.fp32_top1_vs_class != null) {
    cell(table, "top-1 vs generator class", `FP32 ${fmt.pct(r.fp32_top1_vs_class)} · INT8 ${fmt.pct(r.int8_top1_vs_class)}`);
  }
  const p = r.prediction;
  if (p) {
    const band = `interval ${(100 * p.low).toFixed(1)}–${(100 * p.high).toFixed(1)} %, ${Math.round(100 * p.coverage)} % coverage measured on the benchmark`;
    cell(table, "predicted real flips", emphasis(`${(100 * p.flip_rate).toFixed(1)} %`, `(${band})`));
  }
  if (r.warning) cell(table, "warning", r.warning);
  const speed = `FP32 ${fmt.int(r.fp32_images_per_s)} → INT8 ${fmt.int(r.int8_images_per_s)} images/s (batch ${r.timing_batch}, CPU)`;
  cell(table, "speed-up", emphasis(`×${r.speedup.toFixed(2)}`, speed));
  cell(table, "size", `FP32 ${fmt.mb(r.fp32_bytes)} → INT8 ${fmt.mb(r.int8_bytes)}`);
  const link = $("int8-download");
  link.href = r.download;
  link.textContent = "Download INT8 IR (.xml + .bin, ZIP)";
  link.title = r.files.join(" + ");
  $("report").hidden = false;
}

// ---- start ------------------------------------------------------------------------------------

async function init() {
  let config;
  try {
    config = await api("/api/config");
  } catch (e) {
    showError($("preview-error"), `cannot reach the server: ${e.message}`);
    return;
  }
  state.config = config;
  for (const g of config.generators) $("generator").append(option(g.id, g.label));
  for (const m of config.models) {
    const text = m.classes ? `${m.label} (${m.classes} classes)` : m.label;
    $("model").append(option(m.id, text));
  }
  $("preset").append(option("", ""));
  for (const p of config.presets) $("preset").append(option(p, p));
  for (const r of config.recipes) $("recipe").append(option(r, r));
  $("seed").value = String(config.defaults.seed);
  $("num-samples").value = String(config.defaults.num_samples);
  // The page opens on a generator of the first model's classes, when there is one.
  const model = config.models[0];
  const fit = model && config.generators.find((g) => g.num_classes === model.classes);
  if (fit) $("generator").value = fit.id;
  state.generator = currentGenerator();
  selectModel();
  if (config.models.length === 0) {
    $("no-models").hidden = false;
    $("calibrate").disabled = true;
  }

  $("generator").addEventListener("change", selectGenerator);
  $("model").addEventListener("change", selectModel);
  $("preset").addEventListener("change", renderPresetNote);
  $("seed").addEventListener("input", () => schedulePreview(250));
  $("count").addEventListener("input", () => schedulePreview(250));
  $("classes").addEventListener("input", () => {
    syncChips();
    schedulePreview(400);
  });
  const step = (delta) => {
    const n = Number.parseInt($("seed").value, 10);
    $("seed").value = String(Math.max(0, (Number.isFinite(n) ? n : 0) + delta));
    schedulePreview(0);
  };
  $("seed-down").addEventListener("click", () => step(-1));
  $("seed-up").addEventListener("click", () => step(1));
  $("preview-form").addEventListener("submit", (e) => {
    e.preventDefault();
    schedulePreview(0);
  });
  $("calibrate-form").addEventListener("submit", startCalibration);
  $("lightbox").addEventListener("click", closeLightbox);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") closeLightbox();
  });

  await selectGenerator();
  if (config.job) showJob(config.job);
}

document.addEventListener("DOMContentLoaded", init);
