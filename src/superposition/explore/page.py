"""The explorer's one page: controls, three plotly figures and the script that keeps them current.

The page loads plotly.js from the server itself (``/plotly.min.js``, the copy bundled with the
installed plotly package) and makes no other request than to its own API: ``POST /api/train``,
``/api/stop`` and ``/api/save`` with the form as JSON, and ``GET /api/status`` every 200 ms while a
training runs, redrawing the figures with ``Plotly.react`` whenever the status has changed. Values
are sent as typed; the server checks them and the page shows its message in ``#message``.
"""

import html
import json

from superposition.colours import DIVERGING_SCALE
from superposition.explore.form import FIELDS, Field

STYLE = """
body { font: 14px system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { display: flex; align-items: baseline; gap: 1.5em; padding: 0.6em 1.2em;
         background: #fff; border-bottom: 1px solid #ddd; }
header h1 { font-size: 1.2em; margin: 0; }
main { display: grid; grid-template-columns: 17em 1fr; gap: 1em; padding: 1em; }
form label { display: flex; justify-content: space-between; align-items: center; gap: 0.5em;
             margin: 0.35em 0; }
form input, form select { width: 7.5em; font: inherit; }
form .buttons { display: flex; gap: 0.4em; margin-top: 0.9em; }
form button { font: inherit; padding: 0.3em 0.8em; }
#message { padding: 0.5em 0.8em; border-radius: 4px; margin: 0 0 0.8em 0; }
#message[data-kind="error"] { background: #fde2e1; color: #8a1c14; border: 1px solid #f3a59f; }
#message[data-kind="ok"] { background: #e3f4e1; color: #1d5c1a; border: 1px solid #9fd39a; }
#message[data-kind="info"] { background: #eef2f8; border: 1px solid #c5d1e4; }
#figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(22em, 1fr)); gap: 0.8em; }
.plot { height: 24em; background: #fff; border: 1px solid #e3e3e3; }
"""

SCRIPT = """
const $ = (id) => document.getElementById(id);
const CONFIG = {displaylogo: false, responsive: true};
const MARGIN = {l: 55, r: 20, t: 45, b: 45};
let shown = {job: -1, version: -1};
let timer = null;
window.explore = {redraws: 0, polls: 0};

function say(text, kind) {
  const m = $('message');
  m.textContent = text || '';
  m.dataset.kind = kind || 'info';
  m.hidden = !text;
}

function formValues() {
  const values = {};
  for (const el of $('controls').elements) {
    if (el.name) values[el.name] = el.value;
  }
  return values;
}

async function post(path, body) {
  let response;
  try {
    response = await fetch(path, {
      method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify(body || {}),
    });
  } catch (err) {
    return [false, {error: 'the explorer did not answer; is `superposition explore` running?'}];
  }
  let doc;
  try {
    doc = await response.json();
  } catch (err) {
    doc = {error: `the explorer answered ${response.status} without a message`};
  }
  return [response.ok, doc];
}

function statusText(doc) {
  switch (doc.state) {
    case 'idle': return 'ready: set the controls and press Train';
    case 'running':
      return `training: step ${doc.step} of ${doc.steps} (${doc.seconds.toFixed(1)} s)`;
    case 'done': {
      const r = doc.result;
      let text = `done in ${doc.seconds.toFixed(2)} s: held-out loss ${r.loss[r.best]} ` +
        `(instance ${r.best}, best of ${doc.instances}), geometry: ${r.geometry}`;
      if (doc.saved) text += `; saved to ${doc.saved}`;
      return text;
    }
    default: return doc.state;
  }
}

function drawEmpty() {
  for (const [id, title] of [['gram', 'W<sup>T</sup>W'], ['geometry', 'feature geometry'],
                             ['loss', 'training loss']]) {
    Plotly.newPlot(id, [], {title: {text: title}, margin: MARGIN}, CONFIG);
  }
}

function drawGram(f, which, rev) {
  const idx = [...Array(f.n_features).keys()];
  const a = Math.max(1e-6, ...f.gram.flat().map((v) => Math.abs(v || 0)));
  Plotly.react('gram', [{
    type: 'heatmap', z: f.gram, x: idx, y: idx, zmin: -a, zmax: a, zmid: 0,
    colorscale: DIVERGING,
    hovertemplate: 'W<sub>%{y}</sub>·W<sub>%{x}</sub> = %{z}<extra></extra>',
  }], {
    title: {text: `W<sup>T</sup>W (${which})`}, margin: MARGIN, uirevision: rev,
    xaxis: {title: {text: 'feature'}, constrain: 'domain'},
    yaxis: {title: {text: 'feature'}, autorange: 'reversed', scaleanchor: 'x'},
  }, CONFIG);
}

function drawGeometry(f, which, rev) {
  const idx = [...Array(f.n_features).keys()];
  if (f.directions) {
    const xs = [], ys = [];
    for (const [x, y] of f.directions) { xs.push(0, x, null); ys.push(0, y, null); }
    const r = Math.max(1.2, 1.15 * Math.max(...f.norms.map((v) => v || 0)));
    Plotly.react('geometry', [
      {type: 'scatter', mode: 'lines', x: xs, y: ys, hoverinfo: 'skip',
       line: {color: '#9aa5b1', width: 2}},
      {type: 'scatter', mode: 'markers+text', x: f.directions.map((d) => d[0]),
       y: f.directions.map((d) => d[1]), text: idx.map(String), textposition: 'top center',
       customdata: f.norms,
       marker: {size: 10, color: idx, colorscale: 'Viridis', cmin: 0,
                cmax: Math.max(1, f.n_features - 1)},
       hovertemplate: 'feature %{text}<br>norm %{customdata}<extra></extra>'},
    ], {
      title: {text: `feature directions W<sub>i</sub> (${which})`}, margin: MARGIN,
      showlegend: false, uirevision: rev,
      xaxis: {range: [-r, r], zeroline: true, title: {text: 'hidden 0'}},
      yaxis: {range: [-r, r], scaleanchor: 'x', zeroline: true, title: {text: 'hidden 1'}},
    }, CONFIG);
    return;
  }
  const top = Math.max(1, ...f.superposition.map((v) => v || 0));
  Plotly.react('geometry', [{
    type: 'bar', x: idx, y: f.norms, customdata: f.dimensionality.map((d, i) =>
      [f.superposition[i], d]),
    marker: {color: f.superposition, colorscale: 'Viridis', cmin: 0, cmax: top,
             colorbar: {title: {text: 'superposition'}}},
    hovertemplate: 'feature %{x}<br>norm %{y}<br>superposition %{customdata[0]}' +
      '<br>dimensionality %{customdata[1]}<extra></extra>',
  }], {
    title: {text: `feature norms ||W<sub>i</sub>|| (${which})`}, margin: MARGIN,
    uirevision: rev, xaxis: {title: {text: 'feature'}},
    yaxis: {title: {text: 'norm'}, rangemode: 'tozero'},
  }, CONFIG);
}

function drawLoss(doc, rev) {
  const k = doc.instance;
  const traces = doc.loss.instances.map((ys, i) => ({
    type: 'scatter', mode: 'lines', x: doc.loss.steps, y: ys, name: `instance ${i}`,
    line: {width: i === k ? 3 : 1}, opacity: i === k ? 1 : 0.55,
  }));
  Plotly.react('loss', traces, {
    title: {text: 'training loss'}, margin: MARGIN, uirevision: rev,
    showlegend: traces.length <= 8,
    xaxis: {title: {text: 'step'}},
    // one label a decade: the log axis' minor labels crowd a small panel
    yaxis: {title: {text: 'loss'}, type: 'log', dtick: 1, exponentformat: 'power'},
  }, CONFIG);
}

function draw(doc) {
  const which = doc.state === 'done'
    ? `instance ${doc.instance}, best of ${doc.instances}`
    : `instance ${doc.instance}, lowest loss so far`;
  drawGram(doc.frame, which, doc.job);
  drawGeometry(doc.frame, which, doc.job);
  drawLoss(doc, doc.job);
  window.explore.redraws += 1;
}

function show(doc) {
  document.body.dataset.state = doc.state;
  $('status').textContent = statusText(doc);
  $('train').disabled = doc.state === 'running';
  $('stop').disabled = doc.state !== 'running';
  $('save').disabled = doc.state !== 'done';
  if (doc.state === 'failed') say(doc.message, 'error');
  if (doc.state === 'stopped') say(doc.message, 'info');
  if (doc.job === shown.job && doc.version === shown.version) return;
  shown = {job: doc.job, version: doc.version};
  if (doc.frame) draw(doc);
}

async function poll() {
  clearTimeout(timer);
  let doc;
  try {
    const response = await fetch('/api/status', {cache: 'no-store'});
    doc = await response.json();
    if (!response.ok) throw new Error(doc.error);
  } catch (err) {
    say(`could not read the training's status (${err.message}); trying again`, 'error');
    timer = setTimeout(poll, 1000);
    return;
  }
  window.explore.polls += 1;
  show(doc);
  if (doc.state === 'running') timer = setTimeout(poll, 200);
}

$('controls').addEventListener('submit', async (event) => {
  event.preventDefault();
  const [ok, doc] = await post('/api/train', formValues());
  if (!ok) { say(doc.error, 'error'); return; }
  say('', 'info');
  poll();
});
$('stop').addEventListener('click', async () => {
  const [ok, doc] = await post('/api/stop');
  if (!ok) say(doc.error, 'error');
});
$('save').addEventListener('click', async () => {
  const [ok, doc] = await post('/api/save');
  say(ok ? `saved the run to ${doc.path}` : doc.error, ok ? 'ok' : 'error');
  if (ok) poll();
});
$('f-correlation').addEventListener('change', (e) => {
  $('f-set_size').disabled = e.target.value === 'none';
});
$('f-set_size').disabled = $('f-correlation').value === 'none';
drawEmpty();
poll();
"""


def _control(f: Field) -> str:
    """One labelled input (or select) of the form; its title says what is allowed."""
    title = html.escape(f"{f.help}: {f.allowed()}", quote=True)
    ident = f"f-{f.name}"
    if f.kind == "choice":
        options = "".join(
            f'<option value="{html.escape(c)}"{" selected" if c == f.default else ""}>'
            f"{html.escape(c)}</option>"
            for c in f.choices
        )
        widget = f'<select id="{ident}" name="{f.name}" title="{title}">{options}</select>'
    else:
        mode = "numeric" if f.kind == "int" else "decimal"
        widget = (
            f'<input id="{ident}" name="{f.name}" value="{html.escape(f.default)}" '
            f'inputmode="{mode}" autocomplete="off" spellcheck="false" title="{title}">'
        )
    return f'<label for="{ident}" title="{title}">{html.escape(f.label)} {widget}</label>'


def render() -> str:
    """The whole page, self-contained but for ``/plotly.min.js`` from the same server."""
    controls = "\n".join(_control(f) for f in FIELDS)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>superposition explore</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style>
<script src="/plotly.min.js"></script>
</head>
<body data-state="idle">
<header><h1>superposition explore</h1><span id="status">loading</span></header>
<main>
<form id="controls" autocomplete="off">
{controls}
<div class="buttons">
<button type="submit" id="train">Train</button>
<button type="button" id="stop" disabled>Stop</button>
<button type="button" id="save" disabled>Save run</button>
</div>
</form>
<div>
<p id="message" role="status" hidden></p>
<section id="figures">
<div id="gram" class="plot"></div>
<div id="geometry" class="plot"></div>
<div id="loss" class="plot"></div>
</section>
</div>
</main>
<script>const DIVERGING = {json.dumps(DIVERGING_SCALE)};
{SCRIPT}</script>
</body>
</html>
"""
