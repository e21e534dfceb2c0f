// The compare view of 2 to 4 runs (/compare?runs=ID,ID[,ID,ID]): the params that differ, their
// outputs and last metrics, what else differs (code, packages, environment, machine), and each
// metric's curves of the runs side by side on one chart per metric.
'use strict';

(function () {
  const Orch = window.Orch;
  const { h, fmt } = Orch;
  //: One clear colour per compared run (indexes of different sweeps could share a colour).
  const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];

  function same(values) {
    const first = JSON.stringify(values[0]);
    return values.every((v) => JSON.stringify(v) === first);
  }

  class ComparePage {
    constructor(root, ids) {
      this.root = root;
      this.ids = ids;
      this.runs = [];
      this.series = []; // per run: {name: [[step, value]]}
      this.redraw = Orch.batched(() => this.renderCharts(), 150);
    }

    async start() {
      if (this.ids.length < 2 || this.ids.length > 4) {
        this.root.replaceChildren(h('p.error', { text: 'Compare 2 to 4 runs: /compare?runs=ID,ID[,ID,ID] (select them on a sweep page).' }));
        return;
      }
      try {
        this.runs = await Promise.all(this.ids.map((id) => Orch.api.get(`/api/v1/runs/${encodeURIComponent(id)}`)));
      } catch (err) {
        this.root.replaceChildren(h('p.error', { text: `Cannot compare: ${err.message}` }));
        return;
      }
      this.series = await Promise.all(
        this.runs.map((r) =>
          Orch.api
            .get(`/api/v1/runs/${encodeURIComponent(r.run)}/metrics?max_points=2000`)
            .then((a) => a.metrics || {})
            .catch(() => ({}))
        )
      );
      this.render();
      this.renderOtherDifferences();
      Orch.events.on('MetricReported', (e) => {
        const i = this.runs.findIndex((r) => r.run === e.run_id);
        if (i < 0) return;
        for (const [name, value] of Object.entries(e.values)) {
          const points = this.series[i][name] || (this.series[i][name] = []);
          const x = e.step === null || e.step === undefined ? points.length : e.step;
          if (points.length && points[points.length - 1][0] >= x && e.step !== null && e.step !== undefined) continue;
          points.push([x, value]);
        }
        this.redraw();
      });
    }

    head() {
      return h(
        'tr',
        null,
        h('th', { text: '' }),
        this.runs.map((r, i) => {
          const swatch = h('span.swatch');
          swatch.style.background = COLORS[i];
          return h('th', null, swatch, Orch.link(`/runs/${encodeURIComponent(r.run)}`, `#${r.index}`), ' ', Orch.badge(r.state), h('div.muted.small.mono', { text: `${fmt.short(r.sweep)}` }));
        })
      );
    }

    table(id, rows) {
      const table = h('table.grid.compare', { id });
      table.append(h('thead', null, this.head()));
      const body = h('tbody');
      for (const [name, values] of rows) {
        body.append(h('tr', { dataset: { name } }, h('th', { text: name }), values.map((v) => h('td', { text: fmt.value(v), class: typeof v === 'number' ? 'num' : null }))));
      }
      table.append(body);
      return table;
    }

    render() {
      const runs = this.runs;
      Orch.setTitle(`compare ${runs.map((r) => `#${r.index}`).join(' ')}`);
      const names = (group) => Array.from(new Set(runs.flatMap((r) => Object.keys(r[group] || {})))).sort();
      const paramRows = [];
      for (const name of names('params')) {
        const values = runs.map((r) => (r.params || {})[name]);
        if (!same(values)) paramRows.push([name, values]);
      }
      const resultRows = [];
      for (const name of names('outputs')) resultRows.push([name, runs.map((r) => (r.outputs || {})[name])]);
      for (const name of names('metrics')) {
        if (resultRows.some(([n]) => n === name)) continue;
        resultRows.push([`${name} (last)`, runs.map((r) => ((r.metrics || {})[name] || {}).last)]);
      }
      resultRows.push(['state', runs.map((r) => r.state)]);
      resultRows.push(['duration', runs.map((r) => fmt.duration(r.duration_s))]);
      const sameParams = names('params').length - paramRows.length;
      this.el = { charts: h('div#compare-charts.charts'), other: h('div#compare-other') };
      const section = h('section#compare', { dataset: { runs: runs.map((r) => r.run).join(',') } });
      section.append(
        h('h1', { text: `Compare ${runs.length} runs` }),
        h('div.section', null, h('h2', { text: 'Params that differ' }), this.table('compare-params', paramRows), h('p.muted.small', { text: paramRows.length ? (sameParams === 1 ? '1 other param is the same' : `${sameParams} other params are the same`) : 'every param is the same' })),
        h('div.section', null, h('h2', { text: 'Results' }), this.table('compare-results', resultRows)),
        h('div.section', null, h('h2', { text: 'Curves' }), this.el.charts),
        h('div.section', null, h('h2', { text: 'What else differs' }), this.el.other)
      );
      this.root.replaceChildren(section);
      this.renderCharts();
    }

    renderCharts() {
      const box = this.el.charts;
      const names = Array.from(new Set(this.series.flatMap((s) => Object.keys(s)))).sort();
      if (!names.length) {
        box.replaceChildren(h('p.muted', { text: 'no per-step metrics' }));
        return;
      }
      const have = new Map(Array.from(box.querySelectorAll('.chart')).map((c) => [c.dataset.metric, c]));
      if (!have.size) box.replaceChildren();
      for (const name of names) {
        let holder = have.get(name);
        if (!holder) {
          holder = h('div.chart', { dataset: { metric: name } }, h('div.chart-title', { text: name }), h('div.chart-body'));
          box.append(holder);
        }
        const series = this.runs
          .map((r, i) => ({ key: r.run, label: `#${r.index}`, color: COLORS[i], width: 2, points: this.series[i][name] || [] }))
          .filter((s) => s.points.length);
        const drew = Orch.charts.overlay(holder.querySelector('.chart-body'), series, { yLabel: name, height: 220 });
        holder.dataset.points = String(drew.points);
      }
    }

    /** Code, packages, environment and machine: what /diff says differs from the first run. */
    async renderOtherDifferences() {
      const first = this.runs[0];
      const parts = [];
      for (const other of this.runs.slice(1)) {
        let diff;
        try {
          diff = await Orch.api.get(`/api/v1/runs/${encodeURIComponent(first.run)}/diff?with=${encodeURIComponent(other.run)}`);
        } catch (err) {
          continue;
        }
        const rows = [];
        for (const [group, names] of Object.entries(diff.differs || {})) {
          if (group === 'params' || group === 'outputs' || group === 'metrics') continue;
          for (const [name, pair] of Object.entries(names)) rows.push([`${group}: ${name}`, pair]);
        }
        if (diff.argv) rows.push(['command line', diff.argv.map((a) => fmt.argv(a))]);
        const title = `#${first.index} against #${other.index}`;
        if (!rows.length) {
          parts.push(h('p.small', { text: `${title}: nothing else differs` }));
          continue;
        }
        const table = h('table.grid.small');
        table.append(h('thead', null, h('tr', null, h('th', { text: title }), h('th', { text: `#${first.index}` }), h('th', { text: `#${other.index}` }))));
        table.append(h('tbody', null, rows.map(([n, [a, b]]) => h('tr', null, h('th', { text: n }), h('td', { text: fmt.value(a) }), h('td', { text: fmt.value(b) })))));
        parts.push(table);
      }
      this.el.other.replaceChildren(...(parts.length ? parts : [h('p.muted', { text: 'not available' })]));
    }
  }

  Orch.pages = Orch.pages || {};
  Orch.pages.compare = async function (root, page) {
    const ids = (page.url.searchParams.get('runs') || '').split(',').filter(Boolean);
    const view = new ComparePage(root, ids);
    Orch.comparePage = view;
    await view.start();
  };
})();
