// The anomaly-score chart: an SVG drawn at the pixel width of its box (redrawn when that changes).
//
// Its parts carry ids, classes and data attributes that tests and tools can read:
//   svg#chart[data-duration][data-x0][data-x1]    the time axis: t -> x0 + t / duration * (x1 - x0)
//            [data-y0][data-y1]                   the score axis: s -> y1 - s * (y1 - y0)
//   polyline#score[data-count]                    one point per snippet, at the snippet's middle time
//   rect.event[data-class][data-start][data-end]  one per event, in order, with a text.event-label (its class)
//   line#threshold[data-threshold], line#cursor[data-time]   the event threshold, the playback position

const SVG_NS = "http://www.w3.org/2000/svg";
const LABEL_ROW = 14;  // px between rows of event labels
const MAX_LABEL_ROWS = 3;
// One colour per anomaly class, dark enough for labels on white (blue is the score's).
const PALETTE = ["#c0392b", "#d35400", "#8e44ad", "#16a085", "#c2185b", "#9a7d0a", "#2e7d32", "#6d4c41",
  "#00838f", "#6a1b9a", "#ad1457", "#e65100", "#37474f"];

export function demoLabel(model) {
  return model.label || (model.demo ? "synthetic demo model" : "");
}

// The time span the chart shows: up to the end of the last snippet (or the decoded duration, if longer).
export function chartDuration(result) {
  const ends = result.timeline.end_s;
  return Math.max(ends.length ? ends[ends.length - 1] : 0, result.video.duration_s || 0) || 1;
}

// "4.2 s" in a short video, "1:04.2" once it lasts a minute or more; `precise` false gives "1:04".
export function formatTime(t, duration, precise = true) {
  const minutes = Math.floor(Math.abs(t) / 60);
  const seconds = Math.abs(t) - 60 * minutes;
  const sign = t < 0 ? "-" : "";
  if (duration < 60 && precise) return `${sign}${seconds.toFixed(1)} s`;
  const s = precise ? seconds.toFixed(1).padStart(4, "0") : String(Math.floor(seconds)).padStart(2, "0");
  return `${sign}${minutes}:${s}`;
}

export function classColour(result, name) {
  const index = result.classes.indexOf(name) - 1;  // class 0 is the normal class
  return PALETTE[Math.max(index, 0) % PALETTE.length];
}

function node(name, attributes, parent) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (parent) parent.append(element);
  return element;
}

function niceStep(duration, maxTicks) {
  const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
  return steps.find((s) => duration / s <= maxTicks) || steps[steps.length - 1];
}

function tickLabel(t, step, duration) {
  if (duration >= 60) return formatTime(t, duration, false);
  return `${step < 1 ? t.toFixed(1) : t.toFixed(0)} s`;
}

// Event labels go above the plot, on as many rows (up to MAX_LABEL_ROWS) as it takes for them not to overlap.
function placeLabels(result, x, layer) {
  const ends = [];  // right end of the last label of each row
  return result.events.map((event) => {
    const left = x(event.start_s) + 3;
    const text = node("text", { class: "event-label", x: left, fill: classColour(result, event.class),
      "data-class": event.class }, layer);
    text.textContent = event.class;
    const right = left + (text.getComputedTextLength() || 7 * event.class.length);
    let row = ends.findIndex((end) => left >= end + 6);
    if (row < 0) row = ends.length < MAX_LABEL_ROWS ? ends.length : ends.indexOf(Math.min(...ends));
    ends[row] = right;
    return { text, row };
  });
}

function drawEvents(chart, result, g, x, labels) {
  const layer = node("g", { id: "events-layer" }, chart);
  result.events.forEach((event, i) => {
    const colour = classColour(result, event.class);
    const labelY = g.y0 - 5 - LABEL_ROW * labels[i].row;
    labels[i].text.setAttribute("y", String(labelY));
    const left = x(event.start_s);
    const rect = node("rect", {
      class: "event", x: left, y: g.y0, width: Math.max(1, x(event.end_s) - left), height: g.y1 - g.y0,
      fill: colour, "data-class": event.class, "data-start": event.start_s, "data-end": event.end_s,
      "data-peak": event.peak_score,
    }, layer);
    node("title", {}, rect).textContent = `${event.class} ${formatTime(event.start_s, g.duration)}–` +
      `${formatTime(event.end_s, g.duration)}, peak ${event.peak_score.toFixed(3)}`;
    node("line", { class: "event-edge", x1: left, x2: left, y1: labelY - 10, y2: g.y1, stroke: colour }, layer);
  });
}

function drawAxes(chart, g, x, y) {
  const yAxis = node("g", { id: "y-axis", class: "axis" }, chart);
  for (const s of [0, 0.25, 0.5, 0.75, 1]) {
    node("line", { class: "grid", x1: g.x0, x2: g.x1, y1: y(s), y2: y(s) }, yAxis);
    if (s * 2 === Math.round(s * 2)) {
      node("text", { x: g.x0 - 6, y: y(s) + 4, "text-anchor": "end" }, yAxis).textContent = String(s);
    }
  }
  const xAxis = node("g", { id: "x-axis", class: "axis" }, chart);
  node("line", { class: "baseline", x1: g.x0, x2: g.x1, y1: g.y1, y2: g.y1 }, xAxis);
  const step = niceStep(g.duration, Math.max(2, Math.floor((g.x1 - g.x0) / 70)));
  for (let i = 0; i * step <= g.duration + 1e-9; i++) {
    const t = i * step;
    node("line", { class: "tick", x1: x(t), x2: x(t), y1: g.y1, y2: g.y1 + 5 }, xAxis);
    node("text", { x: x(t), y: g.y1 + 18, "text-anchor": "middle" }, xAxis).textContent =
      tickLabel(t, step, g.duration);
  }
}

function drawScores(chart, result, g, x, y) {
  const tl = result.timeline;
  const points = tl.score.map((s, i) => `${x((tl.start_s[i] + tl.end_s[i]) / 2).toFixed(2)},${y(s).toFixed(2)}`);
  if (points.length) {
    const first = points[0].split(",")[0];
    const last = points[points.length - 1].split(",")[0];
    node("polygon", { id: "score-area", points: `${first},${g.y1} ${points.join(" ")} ${last},${g.y1}` }, chart);
  }
  node("polyline", { id: "score", points: points.join(" "), "data-count": points.length }, chart);
  const threshold = result.settings.threshold;
  node("line", { id: "threshold", x1: g.x0, x2: g.x1, y1: y(threshold), y2: y(threshold),
    "data-threshold": threshold }, chart);
}

// Draw `result` into the (rendered) svg element `chart`, `width` pixels wide; returns the chart's geometry.
export function drawChart(chart, width, result) {
  const height = width < 520 ? 200 : 240;
  const duration = chartDuration(result);
  const x0 = 38;
  const x1 = width - 20;
  const x = (t) => x0 + (t / duration) * (x1 - x0);
  chart.replaceChildren();
  chart.setAttribute("width", String(width));  // before the labels are measured
  const labels = placeLabels(result, x, node("g", { id: "event-labels" }, chart));
  const rows = Math.max(1, ...labels.map((label) => label.row + 1));
  const g = { x0, x1, y0: 12 + LABEL_ROW * rows, y1: height - 28, duration };
  const y = (s) => g.y1 - s * (g.y1 - g.y0);
  for (const [key, value] of Object.entries({ width, height, viewBox: `0 0 ${width} ${height}`,
    "data-duration": duration, "data-x0": g.x0, "data-x1": g.x1, "data-y0": g.y0, "data-y1": g.y1,
    "aria-valuemax": duration.toFixed(2) })) {
    chart.setAttribute(key, String(value));
  }
  node("rect", { class: "plot-bg", x: g.x0, y: g.y0, width: g.x1 - g.x0, height: g.y1 - g.y0 }, chart);
  drawAxes(chart, g, x, y);
  drawEvents(chart, result, g, x, labels);
  drawScores(chart, result, g, x, y);
  const label = demoLabel(result.model || {});
  if (label) node("text", { id: "demo-watermark", x: g.x1 - 6, y: g.y0 + 16, "text-anchor": "end" }, chart)
    .textContent = label;
  node("line", { id: "cursor", x1: g.x0, x2: g.x0, y1: g.y0 - 2, y2: g.y1 + 2, "data-time": 0 }, chart);
  return g;
}

// Put the cursor at time `t` (clamped to the chart); returns the clamped time.
export function moveCursor(chart, g, t) {
  const clamped = Math.min(Math.max(t, 0), g.duration);
  const px = (g.x0 + (clamped / g.duration) * (g.x1 - g.x0)).toFixed(2);
  const cursor = chart.querySelector("#cursor, .cursor");
  cursor.setAttribute("x1", px);
  cursor.setAttribute("x2", px);
  cursor.setAttribute("data-time", String(t));
  chart.setAttribute("aria-valuenow", clamped.toFixed(2));
  chart.setAttribute("aria-valuetext", formatTime(clamped, g.duration));
  return clamped;
}

// The time under a pointer at (clientX, clientY), clamped to the time axis.
export function timeAt(chart, g, clientX, clientY) {
  const point = chart.createSVGPoint();
  point.x = clientX;
  point.y = clientY;
  const local = point.matrixTransform(chart.getScreenCTM().inverse());
  const x = Math.min(Math.max(local.x, g.x0), g.x1);
  return ((x - g.x0) / (g.x1 - g.x0)) * g.duration;
}

// ---------- the live chart of a stream ----------
//
// The last `span` seconds of wall-clock time, scrolling: svg.live-chart[data-points][data-span], a
// polyline.score (one point per scored snippet, at the time it was scored), rect.event[data-event-id][data-open]
// per event shaded from its first snippet to its last (to the right edge while it is open), the threshold.

export function drawLiveChart(chart, width, { points, events, threshold, now, span = 60 }) {
  const height = 120;
  const g = { x0: 30, x1: width - 8, y0: 6, y1: height - 18 };
  const start = now - span;
  const x = (t) => g.x0 + ((t - start) / span) * (g.x1 - g.x0);
  const y = (s) => g.y1 - s * (g.y1 - g.y0);
  chart.replaceChildren();
  for (const [key, value] of Object.entries({ width, height, viewBox: `0 0 ${width} ${height}`,
    "data-span": span, "data-points": points.length })) {
    chart.setAttribute(key, String(value));
  }
  const axis = scoreAxis(chart, g, y);
  node("text", { x: g.x1, y: height - 4, "text-anchor": "end" }, axis).textContent = "now";
  node("text", { x: g.x0, y: height - 4 }, axis).textContent = `-${span} s`;
  const layer = node("g", { class: "events-layer" }, chart);
  for (const event of events) {
    const end = event.end === null ? now : event.end;
    if (end < start) continue;
    const left = x(Math.max(event.start, start));
    const rect = node("rect", { class: `event${event.end === null ? " open" : ""}`, x: left, y: g.y0,
      width: Math.max(2, x(end) - left), height: g.y1 - g.y0, fill: PALETTE[0], "data-event-id": event.id,
      "data-class": event.class, "data-open": String(event.end === null) }, layer);
    node("title", {}, rect).textContent = `${event.class}${event.end === null ? " (open)" : ""}`;
  }
  const shown = points.filter((p) => p.t >= start);
  node("polyline", { class: "score", points: shown.map((p) => `${x(p.t).toFixed(1)},${y(p.score).toFixed(1)}`)
    .join(" "), "data-count": shown.length }, chart);
  if (threshold !== null && threshold !== undefined) {
    node("line", { class: "threshold", x1: g.x0, x2: g.x1, y1: y(threshold), y2: y(threshold) }, chart);
  }
}

// The plot area and the score axis (0, 0.5, 1 with grid lines) of a live or clip chart; returns the axis group.
function scoreAxis(chart, g, y) {
  node("rect", { class: "plot-bg", x: g.x0, y: g.y0, width: g.x1 - g.x0, height: g.y1 - g.y0 }, chart);
  const axis = node("g", { class: "axis" }, chart);
  for (const s of [0, 0.5, 1]) {
    node("line", { class: "grid", x1: g.x0, x2: g.x1, y1: y(s), y2: y(s) }, axis);
    node("text", { x: g.x0 - 4, y: y(s) + 4, "text-anchor": "end" }, axis).textContent = String(s);
  }
  return axis;
}

// ---------- the score curve under an event's clip ----------
//
// The clip's own time (the video's currentTime) on the x axis: svg.clip-chart[data-duration][data-x0][data-x1]
// [data-offset] (the clip's start on the source's clock), a polyline.score (one point per snippet, at its middle),
// rect.event over the event, line.threshold, line.cursor[data-time]. moveCursor and timeAt work on it too.

export function drawClipChart(chart, width, { scores, event, threshold, offset, duration }) {
  const height = 150;
  const g = { x0: 30, x1: width - 10, y0: 8, y1: height - 24, duration: Math.max(duration, 0.1) };
  const x = (t) => g.x0 + (Math.min(Math.max(t, 0), g.duration) / g.duration) * (g.x1 - g.x0);
  const y = (s) => g.y1 - s * (g.y1 - g.y0);
  chart.replaceChildren();
  for (const [key, value] of Object.entries({ width, height, viewBox: `0 0 ${width} ${height}`,
    "data-duration": g.duration, "data-x0": g.x0, "data-x1": g.x1, "data-offset": offset,
    "aria-valuemin": 0, "aria-valuemax": g.duration.toFixed(2) })) {
    chart.setAttribute(key, String(value));
  }
  const axis = scoreAxis(chart, g, y);
  const step = niceStep(g.duration, Math.max(2, Math.floor((g.x1 - g.x0) / 70)));
  for (let i = 0; i * step <= g.duration + 1e-9; i++) {
    node("text", { x: x(i * step), y: height - 8, "text-anchor": "middle" }, axis).textContent =
      tickLabel(i * step, step, g.duration);
  }
  const end = event.end_s === null ? offset + g.duration : event.end_s;
  const left = x(event.start_s - offset);
  const rect = node("rect", { class: "event", x: left, y: g.y0, width: Math.max(2, x(end - offset) - left),
    height: g.y1 - g.y0, fill: PALETTE[0], "data-class": event.class }, chart);
  node("title", {}, rect).textContent = `${event.class}, peak ${event.peak_score.toFixed(3)}`;
  const points = [];
  scores.score.forEach((s, i) => {
    const t = (scores.start_s[i] + scores.end_s[i]) / 2 - offset;
    if (t >= 0 && t <= g.duration) points.push(`${x(t).toFixed(1)},${y(s).toFixed(1)}`);
  });
  node("polyline", { class: "score", points: points.join(" "), "data-count": points.length }, chart);
  if (threshold !== null && threshold !== undefined) {
    node("line", { class: "threshold", x1: g.x0, x2: g.x1, y1: y(threshold), y2: y(threshold),
      "data-threshold": threshold }, chart);
  }
  node("line", { class: "cursor", x1: g.x0, x2: g.x0, y1: g.y0 - 2, y2: g.y1 + 2, "data-time": 0 }, chart);
  return g;
}
