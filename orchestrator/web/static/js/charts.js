// Charts: metric curves overlaid on one uPlot chart, small per-metric charts, and a scatter of
// a parameter against a metric drawn on a plain canvas. Colours are per run (by its index), so
// a run keeps its colour across the table, the curves and the scatter.
'use strict';

(function () {
  const Orch = window.Orch;

  // ----------------------------------------------------------------------------- colours
  function hex(r, g, b) {
    return '#' + [r, g, b].map((v) => Math.round(v).toString(16).padStart(2, '0')).join('');
  }

  function hslToRgb(h, s, l) {
    const a = s * Math.min(l, 1 - l);
    const f = (n) => {
      const k = (n + h / 30) % 12;
      return 255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1)));
    };
    return [f(0), f(8), f(4)];
  }

  /** A run's colour: hues spread by the golden angle, so neighbours differ. */
  function colorOf(index) {
    const hue = (index * 137.508) % 360;
    const [r, g, b] = hslToRgb(hue, 0.7, 0.42);
    return hex(r, g, b);
  }

  /** The colour mixed towards white: how a run that is not selected is drawn when some are. */
  function dimmed(color, amount = 0.72) {
    const n = parseInt(color.slice(1), 16);
    const mix = (v) => v + (255 - v) * amount;
    return hex(mix((n >> 16) & 255), mix((n >> 8) & 255), mix(n & 255));
  }

  // ----------------------------------------------------------------------- uPlot charts
  /** [[x, y], ...] sorted by x with one y per x (the last reported wins), as two arrays. */
  function columns(points, logY) {
    const byStep = new Map();
    for (const [x, y] of points) {
      if (typeof x !== 'number' || !Number.isFinite(x)) continue;
      const value = typeof y === 'number' && Number.isFinite(y) && (!logY || y > 0) ? y : null;
      byStep.set(x, value);
    }
    const xs = Array.from(byStep.keys()).sort((a, b) => a - b);
    return [xs, xs.map((x) => byStep.get(x))];
  }

  /** Draw (or update) an overlay chart in container: series = [{key, label, color, width,
   * points: [[step, value], ...]}]. Keeps one uPlot per container; rebuilt only when the set
   * of series or their look changes, else its data is replaced. Sets data-series,
   * data-points and data-colors on the container. */
  function overlay(container, series, options = {}) {
    const logY = Boolean(options.logY);
    const look = JSON.stringify([series.map((s) => [s.key, s.color, s.width]), logY, options.height]);
    const tables = series.map((s) => columns(s.points, logY));
    let data;
    if (tables.length === 0) data = [[]];
    else if (tables.length === 1) data = tables[0];
    else data = uPlot.join(tables);
    let points = 0;
    for (const [xs, ys] of tables) {
      for (let i = 0; i < xs.length; i++) if (ys[i] !== null) points += 1;
    }
    let state = container._overlay;
    const width = Math.max(200, container.clientWidth || 600);
    const height = options.height || 300;
    if (!state || state.look !== look) {
      if (state) state.plot.destroy();
      container.textContent = '';
      const readout = Orch.h('div.readout', { text: '' });
      const opts = {
        width,
        height,
        legend: { show: false },
        cursor: { focus: { prox: 24 }, points: { size: 6 } },
        focus: { alpha: 0.35 },
        scales: { x: { time: false }, y: logY ? { distr: 3 } : {} },
        axes: [
          { label: options.xLabel || 'step', stroke: '#555', grid: { stroke: '#eee' } },
          { label: options.yLabel || '', stroke: '#555', grid: { stroke: '#eee' }, size: 60 },
        ],
        series: [{ label: 'step' }].concat(
          series.map((s) => ({
            label: s.label,
            stroke: s.color,
            width: s.width || 1.5,
            spanGaps: true,
            points: { show: false },
          }))
        ),
        hooks: {
          setSeries: [
            (u, i) => {
              if (i === null || i === undefined) {
                readout.textContent = '';
                return;
              }
              const label = u.series[i] ? u.series[i].label : '';
              const idx = u.cursor.idx;
              const value = idx !== null && idx !== undefined ? u.data[i][idx] : null;
              readout.textContent = value === null || value === undefined ? label : `${label}: ${Orch.fmt.number(value)}`;
            },
          ],
        },
      };
      const holder = Orch.h('div.plot');
      container.append(holder, readout);
      state = { look, plot: new uPlot(opts, data, holder), width };
      container._overlay = state;
      if (!container._resizer && window.ResizeObserver) {
        container._resizer = new ResizeObserver(() => {
          const s = container._overlay;
          const w = Math.max(200, container.clientWidth || 600);
          if (s && Math.abs(w - s.width) > 4) {
            s.width = w;
            s.plot.setSize({ width: w, height: s.plot.height });
          }
        });
        container._resizer.observe(container);
      }
    } else {
      state.plot.setData(data);
    }
    container.dataset.series = String(series.length);
    container.dataset.points = String(points);
    container.dataset.colors = JSON.stringify(series.map((s) => s.color));
    return { series: series.length, points };
  }

  // ------------------------------------------------------------------------------ scatter
  /** Round tick positions between lo and hi, about n of them. */
  function ticks(lo, hi, n) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / n;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
    return out;
  }

  /** Scatter of points [{x, y, color, index, selected, best}] on canvas; x may be numbers or
   * categories (then placed in order, spread a little so equal values do not hide each
   * other). Returns a hit test: (clientX, clientY) -> the nearest point within 8 px. */
  function scatter(canvas, points, options = {}) {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(200, canvas.clientWidth || 600);
    const height = options.height || 260;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.height = `${height}px`;
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const pad = { left: 64, right: 16, top: 12, bottom: 40 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const usable = points.filter((p) => typeof p.y === 'number' && Number.isFinite(p.y) && p.x !== undefined && p.x !== null);
    ctx.font = '12px system-ui, sans-serif';
    ctx.fillStyle = '#666';
    if (usable.length === 0) {
      ctx.fillText(options.empty || 'no run has both values yet', pad.left, pad.top + 20);
      return () => null;
    }
    const numeric = usable.every((p) => typeof p.x === 'number' && Number.isFinite(p.x));
    let toX;
    let xTicks;
    let xLabels;
    if (numeric) {
      let lo = Math.min(...usable.map((p) => p.x));
      let hi = Math.max(...usable.map((p) => p.x));
      const log = lo > 0 && hi / lo >= 100;
      const f = log ? Math.log10 : (v) => v;
      let a = f(lo);
      let b = f(hi);
      if (a === b) {
        a -= 0.5;
        b += 0.5;
      }
      const margin = (b - a) * 0.04;
      a -= margin;
      b += margin;
      toX = (v) => pad.left + ((f(v) - a) / (b - a)) * plotW;
      if (log) {
        xTicks = [];
        for (let e = Math.ceil(a); e <= Math.floor(b); e++) xTicks.push(Math.pow(10, e));
        if (xTicks.length < 2) xTicks = [lo, hi];
      } else {
        xTicks = ticks(a, b, 6);
      }
      xLabels = xTicks.map((t) => Orch.fmt.number(t));
    } else {
      const cats = Array.from(new Set(usable.map((p) => String(p.x)))).sort((p, q) => p.localeCompare(q, undefined, { numeric: true }));
      const slot = plotW / cats.length;
      const where = new Map(cats.map((c, i) => [c, i]));
      toX = (v, p) => pad.left + slot * (where.get(String(v)) + 0.5) + (p ? ((p.index * 0.6180339) % 1 - 0.5) * slot * 0.5 : 0);
      xTicks = cats;
      xLabels = cats;
    }
    let yLo = Math.min(...usable.map((p) => p.y));
    let yHi = Math.max(...usable.map((p) => p.y));
    if (yLo === yHi) {
      yLo -= 0.5;
      yHi += 0.5;
    }
    const yMargin = (yHi - yLo) * 0.06;
    yLo -= yMargin;
    yHi += yMargin;
    const toY = (v) => pad.top + (1 - (v - yLo) / (yHi - yLo)) * plotH;
    // axes and grid
    ctx.strokeStyle = '#eee';
    ctx.lineWidth = 1;
    ctx.fillStyle = '#555';
    ctx.textAlign = 'right';
    for (const t of ticks(yLo, yHi, 5)) {
      const y = toY(t);
      ctx.beginPath();
      ctx.moveTo(pad.left, y);
      ctx.lineTo(width - pad.right, y);
      ctx.stroke();
      ctx.fillText(Orch.fmt.number(t), pad.left - 6, y + 4);
    }
    ctx.textAlign = 'center';
    xTicks.forEach((t, i) => {
      const x = toX(t);
      ctx.beginPath();
      ctx.moveTo(x, pad.top);
      ctx.lineTo(x, pad.top + plotH);
      ctx.stroke();
      ctx.fillText(String(xLabels[i]).slice(0, 14), x, pad.top + plotH + 16);
    });
    ctx.fillText(options.xLabel || '', pad.left + plotW / 2, height - 6);
    ctx.save();
    ctx.translate(12, pad.top + plotH / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(options.yLabel || '', 0, 0);
    ctx.restore();
    ctx.strokeStyle = '#999';
    ctx.strokeRect(pad.left, pad.top, plotW, plotH);
    // points: the others first, then the selected, then the best on top
    const anySelected = usable.some((p) => p.selected);
    const placed = usable.map((p) => ({ p, x: toX(p.x, p), y: toY(p.y) }));
    const order = (q) => (q.p.best ? 2 : q.p.selected ? 1 : 0);
    placed.sort((q1, q2) => order(q1) - order(q2));
    for (const q of placed) {
      const color = anySelected && !q.p.selected && !q.p.best ? dimmed(q.p.color) : q.p.color;
      ctx.fillStyle = color;
      ctx.beginPath();
      ctx.arc(q.x, q.y, q.p.selected ? 4.5 : 3.2, 0, Math.PI * 2);
      ctx.fill();
      if (q.p.best) {
        ctx.strokeStyle = '#111';
        ctx.lineWidth = 2;
        ctx.beginPath();
        ctx.arc(q.x, q.y, 8, 0, Math.PI * 2);
        ctx.stroke();
        ctx.fillStyle = '#111';
        const label = `best #${q.p.index}`;
        const right = q.x + 11 + ctx.measureText(label).width < width;
        ctx.textAlign = right ? 'left' : 'right';
        ctx.fillText(label, right ? q.x + 11 : q.x - 11, q.y < pad.top + 16 ? q.y + 16 : q.y - 6);
      }
    }
    return (clientX, clientY) => {
      const box = canvas.getBoundingClientRect();
      const x = clientX - box.left;
      const y = clientY - box.top;
      let best = null;
      let bestD = 64;
      for (const q of placed) {
        const d = (q.x - x) ** 2 + (q.y - y) ** 2;
        if (d <= bestD) {
          best = q.p;
          bestD = d;
        }
      }
      return best;
    };
  }

  Orch.charts = { colorOf, dimmed, overlay, scatter };
})();
