// The sweep page: the run table (virtual, sortable, filterable), the chosen metric's curves
// of the runs overlaid, a scatter of a parameter against that metric, the best run, and the
// sweep's actions. Everything is kept in one state object and redrawn at most once a frame.
'use strict';

(function () {
  const Orch = window.Orch;
  const { h, fmt } = Orch;
  const { colorOf, dimmed } = Orch.charts;

  const ROW_HEIGHT = 28;
  //: Series drawn on the overlay at most (the best by the metric), plus the selected runs.
  const MAX_SERIES = 100;
  //: Points kept per run and metric across the whole sweep (fetched and live): bounds memory.
  const POINT_BUDGET = 300000;
  const MAXIMIZE = /acc|auc|f1|precision|recall|score|reward|return|iou|map|bleu|r2/i;

  function pointsPerRun(runs) {
    return Math.max(20, Math.min(1000, Math.floor(POINT_BUDGET / Math.max(1, runs))));
  }

  /** Thin [[step, value]] to about half, keeping the first and the last. */
  function thin(points) {
    const out = points.filter((_, i) => i % 2 === 0);
    if (out[out.length - 1] !== points[points.length - 1]) out.push(points[points.length - 1]);
    return out;
  }

  const VARIES = {};

  function isEnd(state) {
    return Orch.END_STATES.has(state);
  }

  class SweepPage {
    constructor(root, ref) {
      this.root = root;
      this.ref = ref;
      this.id = null;
      this.sweep = null;
      this.runs = new Map(); // index -> run (replaced, never mutated, when it changes)
      this.selected = new Set(); // indexes
      this.filter = Orch.filter.parse('');
      this.sortKey = 'index';
      this.descending = false;
      this.metric = null;
      this.goal = 'minimize';
      this.objective = null;
      this.metricNames = [];
      this.series = new Map(); // index -> [[step, value]] of this.metric
      this.seriesSource = 'api'; // 'api' or 'live' (no metrics endpoint)
      this.scatterParam = null;
      this.logY = false;
      this.bestIndex = null;
      this.view = [];
      this.started = new Map(); // index -> ts it began running (for live durations)
      this.keys = { p: new Set(), o: new Set(), m: new Set() };
      this.paramSeen = new Map(); // param -> JSON of its first value, or VARIES
      // A big sweep's table is filtered and sorted less often: each pass visits every run.
      this.redrawTable = Orch.batched(() => this.renderTable(), () => (this.runs.size > 2000 ? 400 : 60));
      this.redrawChart = Orch.batched(() => this.renderChart(), 100);
      this.redrawScatter = Orch.batched(() => this.renderScatter(), () => (this.runs.size > 2000 ? 1000 : 250));
      this.redrawHeader = Orch.batched(() => this.renderHeader(), 100);
      this.reload = Orch.batched(() => this.load().catch((err) => Orch.say(err.message, true)), 1000);
    }

    // --------------------------------------------------------------------------- loading
    async start() {
      this.readUrl();
      this.listen(); // first: what happens while the snapshot loads is queued, then applied
      try {
        await this.load();
      } catch (err) {
        this.root.replaceChildren(h('p.error', { text: `Cannot show sweep ${this.ref}: ${err.message}` }));
        return;
      }
      const warnings = sessionStorage.getItem('orchestrator-warnings');
      if (warnings) {
        sessionStorage.removeItem('orchestrator-warnings');
        Orch.say(warnings);
      }
      setInterval(() => {
        if (this.sweep && !isEnd(this.sweep.state) && this.view.some((r) => r.state === 'running')) this.redrawTable();
      }, 1000);
    }

    /** Read the sweep and its runs (pages of them) and the chosen metric's series; events
     * that arrive meanwhile are queued and applied on top (they are upserts). */
    async load() {
      this.loading = true;
      try {
        await this.read();
      } finally {
        this.loading = false;
        const queued = this.queued || [];
        this.queued = [];
        for (const [fn, e] of queued) fn(e);
      }
    }

    async read() {
      const ref = encodeURIComponent(this.id || this.ref);
      const first = await Orch.api.get(`/api/v1/sweeps/${ref}?limit=1000`);
      let runs = first.runs || [];
      let next = first.next_offset;
      const firstLoad = this.id === null;
      this.id = first.sweep;
      this.sweep = { id: first.sweep, name: first.name, state: first.state, reason: first.reason, total: first.total, spec: first.spec, parent: first.parent || null, node: first.node || null };
      if (firstLoad) this.build();
      await this.loadObjective(); // and who runs it (the daemon, or a CLI elsewhere)
      this.setRuns(runs);
      while (next !== null && next !== undefined) {
        const page = await Orch.api.get(`/api/v1/sweeps/${encodeURIComponent(this.id)}?limit=5000&offset=${next}`);
        runs = runs.concat(page.runs || []);
        next = page.next_offset;
        this.setRuns(runs);
      }
      if (firstLoad) await this.loadMetricNames();
      await this.loadSeries();
    }

    setRuns(list) {
      const fresh = new Map();
      const now = Date.now() / 1000;
      for (const run of list) {
        fresh.set(run.index, run);
        if (run.state === 'running' && typeof run.duration_s === 'number') this.started.set(run.index, now - run.duration_s);
      }
      // Runs created by events since the answer was made stay.
      for (const [index, run] of this.runs) if (!fresh.has(index)) fresh.set(index, run);
      this.runs = fresh;
      this.collectKeys(list);
      this.changed();
    }

    async loadObjective() {
      try {
        const items = await Orch.api.get('/api/v1/sweeps');
        const item = (items || []).find((i) => i.id === this.id);
        this.listItem = item || null;
        const parent = this.sweep && this.sweep.parent;
        this.parentItem = parent ? (items || []).find((i) => i.id === parent) || null : null;
        if (item && item.objective) {
          this.objective = item.objective;
        }
      } catch (err) {
        /* the list is optional here: guess the goal from the name */
      }
    }

    async loadMetricNames() {
      let names = [];
      try {
        names = (await Orch.api.get(`/api/v1/sweeps/${encodeURIComponent(this.id)}/metrics/names`)).names || [];
      } catch (err) {
        names = [];
      }
      this.addMetricNames(names);
      if (!this.metric) {
        const wanted = this.objective && this.objective.metric;
        this.chooseMetric(wanted && this.metricNames.includes(wanted) ? wanted : this.metricNames[0] || null, false);
      }
    }

    /** Metric names: those the API knows, and every numeric output or last metric seen. */
    addMetricNames(names) {
      const all = new Set(this.metricNames);
      for (const n of names) all.add(n);
      for (const n of this.keys.m) all.add(n);
      for (const run of this.runs.values()) {
        for (const [k, v] of Object.entries(run.outputs || {})) if (typeof v === 'number') all.add(k);
      }
      if (all.size === this.metricNames.length) return;
      this.metricNames = Array.from(all).sort();
      this.renderMetricChooser();
    }

    async loadSeries() {
      const metric = this.metric;
      if (!metric) {
        this.series = new Map();
        this.redrawChart();
        return;
      }
      const max = pointsPerRun(this.runs.size);
      try {
        const path = `/api/v1/sweeps/${encodeURIComponent(this.id)}/metrics?names=${encodeURIComponent(metric)}&max_points=${max}`;
        const answer = await Orch.api.get(path);
        if (metric !== this.metric) return; // chosen again meanwhile
        const byIndex = (answer.metrics || {})[metric] || {};
        const series = new Map();
        for (const [index, points] of Object.entries(byIndex)) series.set(Number(index), points);
        // Points reported while the answer was on its way stay.
        for (const [index, points] of this.series) {
          const have = series.get(index);
          const lastStep = have && have.length ? have[have.length - 1][0] : -Infinity;
          const newer = points.filter((p) => p[0] > lastStep);
          if (newer.length) series.set(index, (have || []).concat(newer));
        }
        this.series = series;
        this.seriesSource = 'api';
      } catch (err) {
        this.seriesSource = 'live'; // no metrics endpoint: curves grow from live reports only
      }
      this.redrawChart();
    }

    // ---------------------------------------------------------------------------- events
    listen() {
      const mine = (e) => e.sweep_id === this.id;
      const on = (type, fn) =>
        Orch.events.on(type, (e) => {
          if (this.loading) (this.queued || (this.queued = [])).push([fn, e]);
          else if (this.id !== null) fn(e);
        });
      on('SweepStarted', (e) => {
        if (!mine(e)) return;
        this.sweep = { ...this.sweep, state: 'running', reason: null, total: e.total || this.sweep.total };
        this.redrawHeader();
        this.reload(); // who runs it now, and the runs a resume reset
      });
      on('SweepStopping', (e) => {
        if (!mine(e)) return;
        this.sweep = { ...this.sweep, state: 'stopping', reason: e.reason };
        this.redrawHeader();
      });
      on('SweepFinished', (e) => {
        if (!mine(e)) return;
        this.sweep = { ...this.sweep, state: e.state, reason: e.reason };
        this.redrawHeader();
        this.reload(); // exact final numbers (durations, outputs)
      });
      on('RunCreated', (e) => {
        if (!mine(e)) return;
        const old = this.runs.get(e.index);
        if (old && old.id === e.run_id) return;
        const attempt = old ? (old.attempt || 1) + 1 : 1;
        this.upsert({ index: e.index, id: e.run_id, state: 'created', reason: null, params: e.params || {}, outputs: {}, metrics: {}, duration_s: null, attempt });
        if (old) this.series.delete(e.index); // a new attempt starts its curves afresh
        this.collectKeys([{ params: e.params }]);
      });
      on('RunStateChanged', (e) => {
        if (!mine(e)) return;
        const old = this.runs.get(e.index) || { index: e.index, params: {}, outputs: {}, metrics: {} };
        if (old.id === e.run_id && !Orch.advances(old.state, e.previous, e.state)) return; // older news
        const run = { ...old, id: e.run_id, state: e.state, reason: e.reason || null, exit_code: e.exit_code };
        if (e.outputs) {
          run.outputs = { ...old.outputs, ...e.outputs };
          this.collectKeys([run]);
        }
        if (e.state === 'running') this.started.set(e.index, e.ts);
        if (isEnd(e.state) && this.started.has(e.index)) run.duration_s = e.ts - this.started.get(e.index);
        this.upsert(run);
      });
      on('MetricReported', (e) => {
        if (!mine(e)) return;
        const old = this.runs.get(e.index);
        if (old) {
          this.runs.set(e.index, { ...old, metrics: { ...old.metrics, ...e.values } });
          this.collectKeys([{ metrics: e.values }]);
          this.changed(false);
        }
        if (this.metric && this.metric in e.values) {
          this.addPoint(e.index, e.step, e.values[this.metric]);
        }
        if (!this.metric) this.loadMetricNames();
      });
      Orch.events.onReconnect(() => this.reload());
    }

    addPoint(index, step, value) {
      let points = this.series.get(index);
      if (!points) {
        points = [];
        this.series.set(index, points);
      }
      const x = step === null || step === undefined ? points.length : step;
      if (points.length && points[points.length - 1][0] >= x && step !== null && step !== undefined) {
        if (points[points.length - 1][0] === x) points[points.length - 1] = [x, value]; // a replay or a re-report
        return this.redrawChart();
      }
      points.push([x, value]);
      if (points.length > 2 * pointsPerRun(this.runs.size)) this.series.set(index, thin(points));
      this.redrawChart();
    }

    upsert(run) {
      this.runs.set(run.index, run);
      this.changed();
    }

    collectKeys(runs) {
      let grew = false;
      for (const run of runs) {
        for (const [kind, group] of [['p', run.params], ['o', run.outputs], ['m', run.metrics]]) {
          for (const name of Object.keys(group || {})) {
            if (!this.keys[kind].has(name)) {
              this.keys[kind].add(name);
              grew = true;
            }
            if (kind === 'p') grew = this.seeParam(name, group[name]) || grew;
          }
        }
      }
      if (grew) {
        this.columnsChanged = true;
        if (this.metricNames.length || this.metric) this.addMetricNames([]);
      }
    }

    /** Note a param's value; true when the param turns out to vary (it gets a column). */
    seeParam(name, value) {
      const text = JSON.stringify(value);
      const seen = this.paramSeen.get(name);
      if (seen === undefined) this.paramSeen.set(name, text);
      else if (seen !== VARIES && seen !== text) {
        this.paramSeen.set(name, VARIES);
        return true;
      }
      return false;
    }

    /** Params with one value in every run (once there are two runs): a line, not columns. */
    constantParams() {
      if (this.runs.size < 2) return [];
      return Array.from(this.keys.p)
        .filter((p) => this.paramSeen.get(p) !== VARIES)
        .sort();
    }

    /** Something about the runs changed: the table, the best, the header, the charts. */
    changed(scatter = true) {
      this.redrawTable();
      this.redrawHeader();
      if (scatter) this.redrawScatter();
    }

    // ------------------------------------------------------------------------ the layout
    build() {
      const actions = h(
        'div.actions',
        null,
        h('button#stop-sweep', { type: 'button', text: 'Stop sweep', title: 'No new runs start; running ones are stopped', onclick: () => this.stop() }),
        h('button#resume-sweep', { type: 'button', text: 'Resume', title: 'Run every configuration that has not succeeded', onclick: () => this.resume(null) }),
        h('button#rerun-failed', { type: 'button', text: 'Re-run failed', title: 'Run the failed and stopped configurations again', onclick: () => this.resume(['failed', 'stopped']) }),
        h('span.sep'),
        h('button#compare-selected', { type: 'button', text: 'Compare', disabled: true, title: 'Select 2 to 4 runs', onclick: () => this.compare() }),
        h('button#clear-selection', { type: 'button', class: 'link', text: 'clear selection', onclick: () => this.select(null) })
      );
      this.el = {
        title: h('h1'),
        meta: h('div.meta'),
        summary: h('div.summary'),
        best: h('span#best', { text: '' }),
        actions,
        metric: h('select#metric', { title: 'The metric of the curves, the scatter and the best run', onchange: (ev) => this.chooseMetric(ev.target.value, true) }),
        goal: h('button#goal.link', { type: 'button', onclick: () => this.flipGoal() }),
        logY: h('input#log-y', { type: 'checkbox', onchange: (ev) => this.setLogY(ev.target.checked) }),
        chart: h('div#chart.chart', { dataset: { series: '0', points: '0', colors: '[]' } }),
        chartNote: h('div#chart-note.muted.small'),
        scatterParam: h('select#scatter-param', { onchange: (ev) => this.chooseScatterParam(ev.target.value) }),
        scatter: h('div#scatter', null, h('canvas')),
        filter: h('input#filter', {
          type: 'search',
          placeholder: 'filter: text   lr<0.01   optimizer=adam   state:failed   loss>=0.5',
          spellcheck: 'false',
          autocomplete: 'off',
          value: this.filterText || '',
        }),
        filterNote: h('span#filter-note.muted.small'),
        constants: h('span#constant-params.muted.small'),
        wrap: h('div#runs-wrap.table-wrap'),
        table: h('table#runs.grid.runs', { dataset: { rows: '0', done: '0' } }),
      };
      const el = this.el;
      el.wrap.append(el.table);
      let filterTimer = null;
      el.filter.addEventListener('input', () => {
        clearTimeout(filterTimer);
        filterTimer = setTimeout(() => this.setFilter(el.filter.value), 120);
      });
      el.scatter.querySelector('canvas').addEventListener('click', (ev) => {
        const hit = this.hitScatter && this.hitScatter(ev.clientX, ev.clientY);
        if (hit) this.toggle(hit.index);
      });
      this.table = new Orch.VTable({
        wrap: el.wrap,
        table: el.table,
        rowHeight: ROW_HEIGHT,
        cells: (run, tr) => this.cells(run, tr),
        update: (run, tr) => this.update(run, tr),
        decorate: (run, tr) => this.decorate(run, tr),
        keyOf: (run) => run.index,
        onSort: (key) => this.sortBy(key),
      });
      this.table.setSort(this.sortKey, this.descending);
      const sweepEl = h('section#sweep', { dataset: { sweep: this.sweep.id, state: this.sweep.state } });
      sweepEl.append(
        el.title,
        el.meta,
        h('div.bar', null, el.summary, el.best),
        el.actions,
        h(
          'div.panels',
          null,
          h(
            'div.panel',
            null,
            h('div.panel-head', null, h('label', null, 'metric ', el.metric), ' ', el.goal, h('label.small', null, el.logY, ' log y'), el.chartNote),
            el.chart
          ),
          h(
            'div.panel',
            null,
            h('div.panel-head', null, h('label', null, 'param ', el.scatterParam), h('span.muted.small', { text: ' against the metric; click a point to select its run' })),
            el.scatter
          )
        ),
        h('div.filter-bar', null, el.filter, el.filterNote, el.constants),
        el.wrap
      );
      this.root.replaceChildren(sweepEl);
      this.sweepEl = sweepEl;
      if (this.filterText) this.filter = Orch.filter.parse(this.filterText);
      if (window.ResizeObserver) new ResizeObserver(() => this.redrawScatter()).observe(el.scatter);
      // "/" jumps to the filter, Escape there clears it.
      document.addEventListener('keydown', (ev) => {
        const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement && document.activeElement.tagName);
        if (ev.key === '/' && !typing) {
          ev.preventDefault();
          el.filter.focus();
        } else if (ev.key === 'Escape' && document.activeElement === el.filter) {
          el.filter.value = '';
          this.setFilter('');
        }
      });
      el.filter.title = 'Press / to filter. Words: free text; name=value, name!=value, name<x, name>=x, name~text; state:failed,stopped. A name is a param, output or metric (p:, o:, m: to say which).';
    }

    // ------------------------------------------------------------------- user's choices
    readUrl() {
      const params = Orch.route().searchParams;
      this.filterText = params.get('q') || '';
      const sort = params.get('sort');
      if (sort) {
        this.descending = sort.startsWith('-');
        this.sortKey = sort.replace(/^-/, '');
      }
      this.wantedMetric = params.get('metric');
      const runs = params.get('select');
      if (runs) for (const i of runs.split(',')) if (/^\d+$/.test(i)) this.selected.add(Number(i));
    }

    writeUrl() {
      if (Orch.offline) return;
      const url = new URL(window.location.href);
      const set = (k, v) => (v ? url.searchParams.set(k, v) : url.searchParams.delete(k));
      set('q', this.filterText);
      set('sort', this.sortKey === 'index' && !this.descending ? '' : `${this.descending ? '-' : ''}${this.sortKey}`);
      set('metric', this.metric);
      set('select', Array.from(this.selected).join(','));
      window.history.replaceState(null, '', url);
    }

    setFilter(text) {
      this.filterText = text.trim();
      this.filter = Orch.filter.parse(this.filterText);
      this.writeUrl();
      this.redrawTable(); // then the charts, which show the runs that match
    }

    sortBy(key) {
      if (this.sortKey === key) this.descending = !this.descending;
      else {
        this.sortKey = key;
        // Metrics and outputs sort best first.
        this.descending = key === `m:${this.metric}` || key === `o:${this.metric}` ? this.goal === 'maximize' : false;
      }
      this.table.setSort(this.sortKey, this.descending);
      this.writeUrl();
      this.redrawTable();
    }

    chooseMetric(name, userChose) {
      if (!userChose && this.wantedMetric && this.metricNames.includes(this.wantedMetric)) name = this.wantedMetric;
      this.metric = name || null;
      if (this.objective && this.objective.metric === name) this.goal = this.objective.goal;
      else this.goal = name && MAXIMIZE.test(name) ? 'maximize' : 'minimize';
      this.series = new Map();
      if (this.table) this.table.forget(); // the chosen metric's cells are marked
      this.renderMetricChooser();
      this.writeUrl();
      this.changed();
      this.loadSeries();
    }

    flipGoal() {
      this.goal = this.goal === 'minimize' ? 'maximize' : 'minimize';
      this.renderMetricChooser();
      this.changed();
      this.redrawChart();
    }

    setLogY(on) {
      this.logY = on;
      this.redrawChart();
    }

    chooseScatterParam(name) {
      this.scatterParam = name || null;
      this.redrawScatter();
    }

    toggle(index) {
      if (this.selected.has(index)) this.selected.delete(index);
      else this.selected.add(index);
      this.selectionChanged();
    }

    select(indexes) {
      this.selected = new Set(indexes || []);
      this.selectionChanged();
    }

    selectionChanged() {
      this.writeUrl();
      this.redrawTable();
      this.redrawChart();
      this.redrawScatter();
      this.renderHeader();
    }

    // ------------------------------------------------------------------------- actions
    async stop() {
      await Orch.act('stopping the sweep', `/api/v1/sweeps/${encodeURIComponent(this.id)}/stop`);
    }

    async resume(only) {
      const body = only ? { only } : {};
      const what = only ? 're-running the failed and stopped runs' : 'resuming the sweep';
      const answer = await Orch.act(what, `/api/v1/sweeps/${encodeURIComponent(this.id)}/resume`, body);
      if (answer) {
        this.sweep = { ...this.sweep, state: 'running', reason: null };
        this.renderHeader();
        this.reload();
      }
    }

    compare() {
      const ids = Array.from(this.selected)
        .sort((a, b) => a - b)
        .map((i) => this.runs.get(i))
        .filter(Boolean)
        .map((r) => r.id);
      if (ids.length >= 2 && ids.length <= 4) window.location.href = `/compare?runs=${ids.map(encodeURIComponent).join(',')}`;
    }

    // ----------------------------------------------------------------------- rendering
    metricValue(run) {
      return Orch.filter.metricOf(run, this.metric);
    }

    /** The best run by the chosen metric (failed runs excluded): its index, or null. */
    findBest() {
      if (!this.metric) return null;
      let best = null;
      let bestValue = null;
      const better = this.goal === 'maximize' ? (a, b) => a > b : (a, b) => a < b;
      for (const run of this.runs.values()) {
        if (run.state === 'failed' || run.state === 'upstream_failed') continue;
        const v = this.metricValue(run);
        if (typeof v !== 'number' || !Number.isFinite(v)) continue;
        if (bestValue === null || better(v, bestValue)) {
          best = run.index;
          bestValue = v;
        }
      }
      return best;
    }

    columns() {
      const cols = [
        { key: 'select', label: '', sortable: false, head: '' },
        { key: 'index', label: '#' },
        { key: 'state', label: 'state' },
        { key: 'duration', label: 'time' },
      ];
      const constant = new Set(this.constantParams());
      for (const p of Array.from(this.keys.p).sort()) {
        if (!constant.has(p)) cols.push({ key: `p:${p}`, label: p, title: `param ${p}`, cls: 'param' });
      }
      for (const o of Array.from(this.keys.o).sort()) cols.push({ key: `o:${o}`, label: o, title: `output ${o}`, cls: 'output' });
      for (const m of Array.from(this.keys.m).sort()) {
        if (!this.keys.o.has(m)) cols.push({ key: `m:${m}`, label: m, title: `metric ${m} (last reported)`, cls: 'metric' });
      }
      return cols;
    }

    renderTable() {
      if (!this.el) return;
      const hideConstants = this.runs.size >= 2;
      if (this.columnsChanged || !this.table.columns.length || hideConstants !== this.hidingConstants) {
        this.columnsChanged = false;
        this.hidingConstants = hideConstants;
        this.table.setColumns(this.columns());
        this.renderScatterChooser();
        const constant = this.constantParams();
        this.el.constants.textContent = constant.length
          ? `the same in every run: ${constant.map((p) => `${p}=${fmt.value(JSON.parse(this.paramSeen.get(p) || 'null'))}`).join(', ')}`
          : '';
      }
      const all = Array.from(this.runs.values());
      const view = this.filter.terms ? all.filter(this.filter.test) : all;
      view.sort(Orch.filter.comparator(this.sortKey, this.descending));
      this.view = view;
      if (this.viewFilter !== this.filter) {
        this.viewFilter = this.filter;
        this.redrawChart();
        this.redrawScatter();
      }
      this.bestIndex = this.findBest();
      let done = 0;
      for (const run of all) if (isEnd(run.state)) done += 1;
      this.el.table.dataset.rows = String(view.length);
      this.el.table.dataset.done = String(done);
      const filtered = this.filter.terms ? `${view.length} of ${all.length} runs match` : `${all.length} runs`;
      this.el.filterNote.textContent = this.filter.error ? `${filtered} · ${this.filter.error}` : filtered;
      this.el.filterNote.classList.toggle('error', Boolean(this.filter.error));
      this.table.setRows(view);
    }

    /** One row's cells, made once per row and set of columns (then updated in place, so an
     * element a user or a test holds stays the same while its run changes). */
    cells(run, tr) {
      const index = run.index;
      tr.dataset.index = String(index);
      const box = h('input.select-run', { type: 'checkbox', dataset: { index: String(index) }, title: 'select to highlight and compare' });
      box.addEventListener('change', () => this.toggle(index));
      const swatch = h('span.swatch');
      swatch.style.background = colorOf(index);
      const name = Orch.offline ? h('span.run-link', { text: `#${index}` }) : h('a.run-link', { text: `#${index}` });
      const out = [h('td', null, box), h('td', null, swatch, name), h('td', null, Orch.badge('')), h('td.num.duration')];
      for (const col of this.table.columns.slice(4)) out.push(h('td', { dataset: { key: col.key } }));
      tr.replaceChildren(...out);
    }

    /** A row's values, set when its run changes (a new object). */
    update(run, tr) {
      tr.dataset.state = run.state || '';
      const cells = tr.children;
      const link = cells[1].lastElementChild;
      if (link.tagName === 'A') {
        if (run.id) link.setAttribute('href', `/runs/${encodeURIComponent(run.id)}`);
        else link.removeAttribute('href');
      }
      const badge = cells[2].firstElementChild;
      badge.textContent = run.state || '';
      badge.dataset.state = run.state || '';
      cells[2].title = run.reason ? `${run.state}: ${run.reason}` : run.state || '';
      for (let i = 4; i < cells.length; i++) {
        const td = cells[i];
        const key = td.dataset.key;
        const v = Orch.filter.valueOf(run, key);
        const text = fmt.value(v);
        if (td.textContent !== text) {
          td.textContent = text;
          td.title = `${key.slice(2)} = ${text}`;
        }
        td.className = typeof v === 'number' ? 'num' : '';
        if (key === `o:${this.metric}` || key === `m:${this.metric}`) td.classList.add('chosen');
      }
    }

    /** What changes without the run changing, on every draw: selection, best, live time. */
    decorate(run, tr) {
      const index = run.index;
      const selected = this.selected.has(index);
      tr.classList.toggle('best', index === this.bestIndex);
      tr.classList.toggle('selected', selected);
      const box = tr.firstElementChild.firstElementChild;
      if (box.checked !== selected) box.checked = selected;
      let duration = run.duration_s;
      if (run.state === 'running' && this.started.has(index)) duration = Date.now() / 1000 - this.started.get(index);
      const text = fmt.duration(duration);
      const cell = tr.children[3];
      if (cell.textContent !== text) cell.textContent = text;
    }

    renderHeader() {
      if (!this.el || !this.sweep) return;
      const s = this.sweep;
      this.sweepEl.dataset.state = s.state;
      Orch.setTitle(s.name || fmt.short(s.id));
      this.el.title.replaceChildren(s.name || `sweep ${fmt.short(s.id)}`, ' ', Orch.badge(s.state));
      Orch.fill(
        this.el.meta,
        s.parent ? this.pipelineLine(s) : null,
        h('span.mono', { text: s.id, title: 'sweep id' }),
        s.spec ? h('span.muted', { text: ` · ${s.spec}` }) : null,
        s.reason ? h('span.reason', { text: ` · ${s.reason}` }) : null
      );
      const counts = {};
      let done = 0;
      for (const run of this.runs.values()) {
        counts[run.state] = (counts[run.state] || 0) + 1;
        if (isEnd(run.state)) done += 1;
      }
      const total = Math.max(s.total || 0, this.runs.size);
      const chips = Object.entries(counts).sort((a, b) => Orch.STATE_ORDER.indexOf(a[0]) - Orch.STATE_ORDER.indexOf(b[0]));
      const bar = h('div.progress', { title: `${done} of ${total} finished` });
      const ok = h('span.ok');
      ok.style.width = `${total ? (100 * (done - (counts.failed || 0))) / total : 0}%`;
      const bad = h('span.bad');
      bad.style.width = `${total ? (100 * (counts.failed || 0)) / total : 0}%`;
      bar.append(ok, bad);
      this.el.summary.replaceChildren(
        bar,
        h('span', { text: ` ${done}/${total} done ` }),
        h('span.counts', null, chips.map(([state, n]) => h('span.count', { dataset: { state }, text: `${n} ${state}`, onclick: () => this.filterState(state), title: `show the ${state} runs` })))
      );
      // the best run
      const best = this.bestIndex !== null ? this.runs.get(this.bestIndex) : null;
      if (best) {
        this.el.best.dataset.index = String(best.index);
        this.el.best.replaceChildren(
          'best ',
          Orch.link(`/runs/${encodeURIComponent(best.id)}`, `#${best.index}`),
          ` ${this.metric} = ${fmt.number(this.metricValue(best))}`,
          h('button.link', { type: 'button', text: 'show', onclick: () => this.reveal(best.index) })
        );
      } else {
        delete this.el.best.dataset.index;
        this.el.best.textContent = this.metric ? `no ${this.metric} yet` : '';
      }
      // actions
      const running = ['running', 'created', 'stopping'].includes(s.state);
      // A sweep run by another process (the CLI's `run`) is stopped there, not here.
      const owner = this.listItem || this.parentItem; // a node is run by its pipeline's process
      const elsewhere = running && owner && owner.via_daemon === false;
      const stopButton = document.getElementById('stop-sweep');
      stopButton.disabled = !running || s.state === 'stopping' || elsewhere;
      stopButton.title = elsewhere ? 'run by another process (orchestrator run): stop it there' : 'No new runs start; running ones are stopped';
      // A node is resumed with its pipeline (which decides what runs again), not alone.
      const resumeButton = document.getElementById('resume-sweep');
      resumeButton.disabled = running || Boolean(s.parent);
      const rerunButton = document.getElementById('rerun-failed');
      rerunButton.disabled = running || Boolean(s.parent) || !((counts.failed || 0) + (counts.stopped || 0));
      if (s.parent) resumeButton.title = rerunButton.title = 'a node of a pipeline: resume or re-run the pipeline';
      const n = this.selected.size;
      const compareButton = document.getElementById('compare-selected');
      compareButton.disabled = n < 2 || n > 4;
      compareButton.textContent = n ? `Compare ${n} selected` : 'Compare';
      document.getElementById('clear-selection').hidden = n === 0;
    }

    /** "node N of pipeline P" (a link back), on a node sweep's page. */
    pipelineLine(s) {
      const parent = this.parentItem;
      const name = (parent && parent.name) || fmt.short(s.parent);
      return h(
        'div#pipeline-of.pipeline-of',
        { dataset: { parent: s.parent, node: s.node || '' } },
        'node ',
        h('strong', { text: s.node || '?' }),
        ' of pipeline ',
        Orch.link(`/sweeps/${encodeURIComponent(s.parent)}`, name, 'pipeline-link')
      );
    }

    filterState(state) {
      this.el.filter.value = `state:${state}`;
      this.setFilter(this.el.filter.value);
    }

    reveal(index) {
      const i = this.view.findIndex((r) => r.index === index);
      if (i >= 0) this.table.reveal(i);
    }

    renderMetricChooser() {
      if (!this.el) return;
      const select = this.el.metric;
      const options = this.metricNames.map((n) => h('option', { value: n, text: n }));
      if (!options.length) options.push(h('option', { value: '', text: '(no metrics yet)' }));
      select.replaceChildren(...options);
      select.value = this.metric || '';
      this.el.goal.textContent = this.goal === 'maximize' ? '↑ higher is better' : '↓ lower is better';
      this.el.goal.title = 'which way is better (click to flip)';
    }

    renderScatterChooser() {
      const params = Array.from(this.keys.p).sort();
      if (!this.scatterParam || !params.includes(this.scatterParam)) {
        // the param with the most distinct values (looked for in the first 2,000 runs)
        let most = 0;
        this.scatterParam = params[0] || null;
        for (const p of params) {
          const seen = new Set();
          let n = 0;
          for (const run of this.runs.values()) {
            seen.add(JSON.stringify(run.params ? run.params[p] : null));
            if (++n >= 2000) break;
          }
          if (seen.size > most) {
            most = seen.size;
            this.scatterParam = p;
          }
        }
      }
      this.el.scatterParam.replaceChildren(...params.map((p) => h('option', { value: p, text: p })));
      this.el.scatterParam.value = this.scatterParam || '';
    }

    /** The runs drawn on the overlay: the best MAX_SERIES with a series, then the selected. */
    drawnRuns() {
      const pool = this.filter.terms ? new Set(this.view.map((r) => r.index)) : null;
      const withSeries = Array.from(this.series.keys()).filter((i) => this.series.get(i).length && (!pool || pool.has(i)));
      const sign = this.goal === 'maximize' ? -1 : 1;
      const valueOf = (i) => {
        const run = this.runs.get(i);
        const v = run ? this.metricValue(run) : undefined;
        if (typeof v === 'number' && Number.isFinite(v)) return v;
        const pts = this.series.get(i);
        const last = pts[pts.length - 1][1];
        return typeof last === 'number' ? last : NaN;
      };
      const ranked = withSeries
        .map((i) => [i, valueOf(i)])
        .sort((a, b) => {
          const an = Number.isNaN(a[1]);
          const bn = Number.isNaN(b[1]);
          if (an || bn) return an === bn ? a[0] - b[0] : an ? 1 : -1;
          return sign * (a[1] - b[1]) || a[0] - b[0];
        })
        .map(([i]) => i);
      const drawn = new Set(ranked.slice(0, MAX_SERIES));
      for (const i of this.selected) if (this.series.has(i)) drawn.add(i);
      return { drawn: Array.from(drawn), available: withSeries.length };
    }

    renderChart() {
      if (!this.el) return;
      const { drawn, available } = this.drawnRuns();
      const anySelected = drawn.some((i) => this.selected.has(i));
      // dimmed first, so the highlighted are drawn on top
      drawn.sort((a, b) => Number(this.selected.has(a)) - Number(this.selected.has(b)) || a - b);
      const series = drawn.map((i) => {
        const hot = this.selected.has(i);
        const color = anySelected && !hot ? dimmed(colorOf(i)) : colorOf(i);
        return { key: i, label: `#${i}`, color, width: hot ? 2.5 : i === this.bestIndex ? 2 : 1.25, points: this.series.get(i) };
      });
      const options = { yLabel: this.metric || '', logY: this.logY, height: 300 };
      Orch.charts.overlay(this.el.chart, series, options);
      let note = `showing ${series.length} of ${available} runs${this.filter.terms ? ' that match the filter' : ''}`;
      if (available > series.length) note += ` (the best ${MAX_SERIES} by ${this.metric}, and the selected)`;
      if (this.seriesSource === 'live') note += ' · curves from live reports only (this daemon serves no metric series)';
      if (!this.metric) note = 'no metric reported yet';
      this.el.chartNote.textContent = note;
    }

    renderScatter() {
      if (!this.el) return;
      const canvas = this.el.scatter.querySelector('canvas');
      const p = this.scatterParam;
      const points = [];
      if (p && this.metric) {
        for (const run of this.filter.terms ? this.view : this.runs.values()) {
          const x = run.params ? run.params[p] : undefined;
          const y = this.metricValue(run);
          points.push({ x, y, index: run.index, color: colorOf(run.index), selected: this.selected.has(run.index), best: run.index === this.bestIndex });
        }
      }
      this.hitScatter = Orch.charts.scatter(canvas, points, { xLabel: p || '', yLabel: this.metric || '', height: 300 });
      this.el.scatter.dataset.points = String(points.filter((q) => typeof q.y === 'number').length);
    }
  }

  Orch.pages = Orch.pages || {};
  Orch.pages.sweep = async function (root, page) {
    // A pipeline has a page of its own (its nodes); a first small read says which it is.
    let peek = null;
    try {
      peek = await Orch.api.get(`/api/v1/sweeps/${encodeURIComponent(page.id)}?limit=1`);
    } catch (err) {
      peek = null; // the sweep page says why it cannot show it
    }
    if (peek && peek.kind === 'dag') {
      const pipeline = new Orch.PipelinePage(root, peek.sweep);
      Orch.sweepPage = pipeline;
      await pipeline.start();
      return;
    }
    const view = new SweepPage(root, page.id);
    Orch.sweepPage = view; // for the console and the tests
    await view.start();
  };
})();
