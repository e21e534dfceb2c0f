// The run page: state and the reason it ended, the exact command line, params, outputs,
// per-step metric charts, the live tail of stdout and stderr, environment, provenance and
// the states it went through; a stop button.
//
// Connections: the tab's event stream plus one follow stream per log (3 of the browser's 6 per
// origin). Each log keeps its last MAX_LINES lines; a long log starts near its end.
'use strict';

(function () {
  const Orch = window.Orch;
  const { h, fmt } = Orch;

  const MAX_LINES = 5000;
  const TAIL_BYTES = 256 * 1024;

  /** One log's live tail in an element, one div.line per line, bounded. */
  class LogTail {
    constructor(el, runId, stream) {
      this.el = el;
      this.runId = runId;
      this.stream = stream;
      this.pending = [];
      this.dropFirst = false;
      this.flush = Orch.batched(() => this.render());
    }

    async start() {
      if (Orch.offline) {
        this.el.append(h('div.muted', { text: 'not in this report' }));
        return;
      }
      const base = `/api/v1/runs/${encodeURIComponent(this.runId)}/logs?stream=${this.stream}`;
      let offset = 0;
      try {
        const head = await fetch(base, { method: 'HEAD', credentials: 'same-origin' });
        const size = Number(head.headers.get('content-length') || 0);
        if (size > TAIL_BYTES) {
          offset = size - TAIL_BYTES;
          this.dropFirst = true; // it starts mid-line
          this.el.append(h('div.skipped.muted', { text: `… ${fmt.bytes(offset)} before this not shown` }));
        }
      } catch (err) {
        offset = 0;
      }
      this.source = new EventSource(`${base}&follow=1&offset=${offset}`);
      this.source.onmessage = (message) => {
        const lines = message.data.split('\n');
        if (this.dropFirst) {
          lines.shift();
          this.dropFirst = false;
        }
        for (const line of lines) this.pending.push(line);
        if (this.pending.length > MAX_LINES) this.pending.splice(0, this.pending.length - MAX_LINES);
        this.flush();
      };
      this.source.addEventListener('end', () => this.close());
      this.el.dataset.following = '1';
    }

    close() {
      if (this.source) this.source.close();
      this.source = null;
      delete this.el.dataset.following;
    }

    render() {
      if (!this.pending.length) return;
      const atBottom = this.el.scrollTop + this.el.clientHeight >= this.el.scrollHeight - 4;
      const fragment = document.createDocumentFragment();
      for (const line of this.pending) fragment.append(h('div.line', { text: line }));
      this.pending = [];
      this.el.append(fragment);
      let extra = this.el.childElementCount - MAX_LINES;
      while (extra-- > 0) this.el.firstElementChild.remove();
      this.el.dataset.lines = String(this.el.childElementCount);
      if (atBottom) this.el.scrollTop = this.el.scrollHeight;
    }
  }

  function kv(rows) {
    const table = h('table.kv');
    const entries = Object.entries(rows || {});
    if (!entries.length) table.append(h('tr', null, h('td.muted', { text: 'none' })));
    for (const [k, v] of entries) table.append(h('tr', null, h('th', { text: k }), h('td', { text: fmt.value(v) })));
    return table;
  }

  class RunPage {
    constructor(root, ref) {
      this.root = root;
      this.ref = ref;
      this.detail = null;
      this.series = {}; // metric name -> [[step, value]]
      this.redrawCharts = Orch.batched(() => this.renderCharts(), 100);
      this.reload = Orch.batched(() => this.load().catch((err) => Orch.say(err.message, true)), 500);
    }

    async start() {
      this.listen(); // first, so nothing reported while the run loads is missed
      for (;;) {
        try {
          await this.load();
          break;
        } catch (err) {
          // SWEEP:INDEX of a run not created yet (the page opened with its sweep): wait
          // for it, as `logs -f` does, asking again every second.
          const pending = err.status === 404 && this.ref.includes(':');
          this.root.replaceChildren(h(pending ? 'p.muted' : 'p.error', {
            text: pending ? `Waiting for run ${this.ref} to start…` : `Cannot show run ${this.ref}: ${err.message}`,
          }));
          if (!pending) return;
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }
      await this.loadMetrics();
      this.tails = ['stdout', 'stderr'].map((s) => new LogTail(document.getElementById(`log-${s}`), this.detail.run, s));
      this.tails.forEach((t) => t.start());
    }

    /** Read the run; events that arrive meanwhile are queued, then applied on top (the
     * answer may have been read just before them). */
    async load() {
      this.loading = true;
      try {
        const ref = this.detail ? this.detail.run : this.ref;
        const detail = await Orch.api.get(`/api/v1/runs/${encodeURIComponent(ref)}`);
        const first = this.detail === null;
        this.detail = detail;
        if (first) this.build();
        this.render();
      } finally {
        this.loading = false;
        const queued = this.queued || [];
        this.queued = [];
        if (this.detail) for (const [fn, e] of queued) fn(e);
      }
    }

    async loadMetrics() {
      try {
        const answer = await Orch.api.get(`/api/v1/runs/${encodeURIComponent(this.detail.run)}/metrics?max_points=2000`);
        const metrics = answer.metrics || {};
        for (const [name, points] of Object.entries(metrics)) this.series[name] = points;
        this.seriesSource = 'api';
      } catch (err) {
        this.seriesSource = 'live';
      }
      this.redrawCharts();
    }

    listen() {
      const d = () => this.detail;
      const on = (type, fn) =>
        Orch.events.on(type, (e) => {
          if (this.loading) (this.queued || (this.queued = [])).push([fn, e]);
          else if (this.detail) fn(e);
        });
      on('RunStateChanged', (e) => {
        if (!d() || e.run_id !== d().run || !Orch.advances(d().state, e.previous, e.state)) return;
        this.detail = { ...d(), state: e.state, reason: e.reason || d().reason, exit_code: e.exit_code };
        this.renderState();
        if (Orch.END_STATES.has(e.state) || e.state === 'running') this.reload();
      });
      on('RunCreated', (e) => {
        if (!d() || e.sweep_id !== d().sweep || e.index !== d().index || e.run_id === d().run) return;
        this.el.newer.replaceChildren('a newer attempt of this configuration: ', Orch.link(`/runs/${encodeURIComponent(e.run_id)}`, fmt.short(e.run_id)));
        this.el.newer.hidden = false;
      });
      on('MetricReported', (e) => {
        if (!d() || e.run_id !== d().run) return;
        for (const [name, value] of Object.entries(e.values)) {
          const points = this.series[name] || (this.series[name] = []);
          const x = e.step === null || e.step === undefined ? points.length : e.step;
          if (points.length && points[points.length - 1][0] >= x && e.step !== null && e.step !== undefined) continue;
          points.push([x, value]);
          if (points.length > 4000) this.series[name] = points.filter((_, i) => i % 2 === 0 || i === points.length - 1);
        }
        this.redrawCharts();
      });
      Orch.events.onReconnect(() => this.reload());
    }

    build() {
      const r = this.detail;
      this.el = {
        title: h('h1'),
        meta: h('div.meta'),
        reason: h('div#run-reason.reason'),
        newer: h('div.note', { hidden: true }),
        stop: h('button#stop-run', { type: 'button', text: 'Stop run', onclick: () => this.stop() }),
        argv: h('pre#argv.argv'),
        params: h('div#params'),
        outputs: h('div#outputs'),
        charts: h('div#run-charts.charts'),
        chartNote: h('div.muted.small'),
        stdout: h('div#log-stdout.log', { tabindex: '0' }),
        stderr: h('div#log-stderr.log.stderr', { tabindex: '0' }),
        env: h('div#env'),
        provenance: h('div#provenance'),
        attempts: h('div#attempts'),
        usage: h('div'),
      };
      const e = this.el;
      const copy = h('button.link', {
        type: 'button',
        text: 'copy',
        onclick: () => navigator.clipboard && navigator.clipboard.writeText(e.argv.textContent).then(() => Orch.say('command line copied')),
      });
      const runEl = h('section#run', { dataset: { run: r.run, state: r.state } });
      runEl.append(
        e.title,
        e.meta,
        e.reason,
        e.newer,
        h('div.actions', null, e.stop),
        h('div.section', null, h('h2', null, 'Command line ', copy), e.argv),
        h('div.columns', null, h('div.section', null, h('h2', { text: 'Params' }), e.params), h('div.section', null, h('h2', { text: 'Outputs' }), e.outputs), h('div.section', null, h('h2', { text: 'Resources' }), e.usage)),
        h('div.section', null, h('h2', { text: 'Metrics' }), e.chartNote, e.charts),
        h('div.logs', null, h('div.section', null, h('h2', { text: 'stdout' }), e.stdout), h('div.section', null, h('h2', { text: 'stderr' }), e.stderr)),
        h('div.section', null, h('h2', { text: 'States' }), e.attempts),
        h('div.columns', null, h('div.section', null, h('h2', { text: 'Environment' }), e.env), h('div.section', null, h('h2', { text: 'Provenance' }), e.provenance))
      );
      this.root.replaceChildren(runEl);
      this.runEl = runEl;
    }

    renderState() {
      const r = this.detail;
      this.runEl.dataset.state = r.state;
      this.el.title.replaceChildren(`run #${r.index} `, Orch.badge(r.state));
      Orch.setTitle(`run #${r.index} ${r.state}`);
      const why = [];
      if (r.reason) why.push(r.reason);
      const code = `exit code ${r.exit_code}`;
      if (r.exit_code !== null && r.exit_code !== undefined && !why.some((w) => w.includes(code))) why.push(code);
      this.el.reason.textContent = why.length ? why.join(' · ') : Orch.END_STATES.has(r.state) ? '' : 'still going';
      this.el.stop.disabled = Orch.END_STATES.has(r.state) || r.state === 'stopping';
    }

    render() {
      const r = this.detail;
      this.renderState();
      this.el.meta.replaceChildren(
        'sweep ',
        Orch.link(`/sweeps/${encodeURIComponent(r.sweep)}`, fmt.short(r.sweep), 'mono'),
        ` · run `,
        h('span.mono', { text: r.run }),
        ` · attempt ${r.attempt || 1}`,
        r.started_at ? ` · started ${fmt.time(r.started_at)}` : '',
        r.duration_s !== null && r.duration_s !== undefined ? ` · ${fmt.duration(r.duration_s)}` : ''
      );
      this.el.argv.textContent = fmt.argv(r.argv);
      this.el.params.replaceChildren(kv(r.params));
      this.el.outputs.replaceChildren(kv(r.outputs));
      this.el.usage.replaceChildren(
        kv({
          'cpu time': r.cpu_s !== null && r.cpu_s !== undefined ? `${fmt.number(r.cpu_s)} s` : '',
          'peak memory': r.max_rss !== null && r.max_rss !== undefined ? fmt.bytes(r.max_rss) : '',
          given: r.resources ? JSON.stringify(r.resources) : 'nothing asked',
          place: r.place ? JSON.stringify(r.place) : '',
          folder: r.paths ? r.paths.run : '',
        })
      );
      this.el.env.replaceChildren(kv(r.env));
      this.renderProvenance(r.provenance);
      this.renderStates(r.states || []);
      this.redrawCharts();
    }

    renderProvenance(p) {
      const box = this.el.provenance;
      if (!p) {
        box.replaceChildren(h('p.muted', { text: 'no provenance journaled for this run' }));
        return;
      }
      const plain = {};
      const large = [];
      for (const [k, v] of Object.entries(p)) {
        if (k.endsWith('_hash')) continue;
        if (v !== null && typeof v === 'object') large.push([k, v]);
        else if (typeof v === 'string' && v.includes('\n')) large.push([k, v]);
        else plain[k] = v;
      }
      box.replaceChildren(
        kv(plain),
        ...large.map(([k, v]) =>
          h(
            'details',
            null,
            h('summary', { text: `${k} (${Array.isArray(v) ? v.length : typeof v === 'string' ? `${v.split('\n').length} lines` : Object.keys(v).length})` }),
            typeof v === 'string' ? h('pre', { text: v }) : Array.isArray(v) ? h('pre', { text: v.map(fmt.value).join('\n') }) : kv(v)
          )
        )
      );
    }

    renderStates(states) {
      const table = h('table.grid.small');
      table.append(h('thead', null, h('tr', null, ['at', 'from', 'to', 'reason'].map((t) => h('th', { text: t })))));
      const body = h('tbody');
      for (const s of states) {
        body.append(h('tr', { dataset: { state: s.to } }, h('td', { text: fmt.time(s.at) }), h('td', null, s.from ? Orch.badge(s.from) : ''), h('td', null, Orch.badge(s.to)), h('td', { text: s.reason || '' })));
      }
      table.append(body);
      this.el.attempts.replaceChildren(h('p.small', { text: `attempt ${this.detail.attempt || 1}` }), table);
    }

    renderCharts() {
      if (!this.el) return;
      const names = new Set(Object.keys(this.series));
      for (const n of Object.keys(this.detail.metrics || {})) names.add(n);
      const box = this.el.charts;
      const have = new Map(Array.from(box.children).map((c) => [c.dataset.metric, c]));
      for (const name of Array.from(names).sort()) {
        let holder = have.get(name);
        if (!holder) {
          holder = h('div.chart', { dataset: { metric: name, points: '0' } }, h('div.chart-title', { text: name }), h('div.chart-body'));
          box.append(holder);
        }
        const points = this.series[name] || [];
        const body = holder.querySelector('.chart-body');
        if (points.length) {
          Orch.charts.overlay(body, [{ key: name, label: name, color: Orch.charts.colorOf(this.detail.index), width: 2, points }], { yLabel: name, height: 200 });
        } else {
          const s = (this.detail.metrics || {})[name] || {};
          body.textContent = `last ${fmt.number(s.last)} · min ${fmt.number(s.min)} · max ${fmt.number(s.max)} · ${s.reports || 0} reports`;
        }
        holder.dataset.points = String(points.length);
      }
      this.el.chartNote.textContent = names.size ? (this.seriesSource === 'live' ? 'per-step curves from live reports only (this daemon serves no metric series)' : '') : 'no metric reported';
    }

    async stop() {
      const answer = await Orch.act('stopping the run', `/api/v1/runs/${encodeURIComponent(this.detail.run)}/stop`);
      if (answer) {
        this.el.stop.disabled = true;
      }
    }
  }

  Orch.pages = Orch.pages || {};
  Orch.pages.run = async function (root, page) {
    const view = new RunPage(root, page.id);
    Orch.runPage = view;
    await view.start();
  };
})();
