// The page of a pipeline (run.kind: dag): its nodes in the order they were decided, each with
// what it waits for, its kind, state and reason, progress, duration and best value, a link to
// the node's own sweep page, and its runs. Live: the node sweeps' events (which carry their own
// sweep id) are mapped to their node; a sweep not known yet that starts is read as a new node.
'use strict';

(function () {
  const Orch = window.Orch;
  const { h, fmt } = Orch;

  //: Runs listed under a node on this page (its own page lists them all).
  const RUNS_SHOWN = 50;
  const LIVE = ['running', 'created', 'stopping', 'queued', 'starting'];

  function isEnd(state) {
    return Orch.END_STATES.has(state);
  }

  /** 'job' for a one-run node, else the matrix's kind (grid, random, mapping...). */
  function kindOf(node) {
    return !node.kind || node.kind === 'single' ? 'job' : `matrix: ${node.kind}`;
  }

  /** The value a run is judged by: an output of that name first, else its last metric. */
  function valueOf(run, name) {
    const v = run.outputs && name in run.outputs ? run.outputs[name] : run.metrics ? run.metrics[name] : undefined;
    return typeof v === 'number' && Number.isFinite(v) ? v : null;
  }

  /** What a node's card shows of its results: with an objective (its matrix's early-stopping
   * metric or search metric, from the API), the best run by it, either way; a one-run node
   * without one, its first numeric output; else null (no direction is guessed from a name). */
  function bestOf(node, runs) {
    const objective = node.objective;
    if (objective) {
      const better = objective.goal === 'maximize' ? (a, b) => a > b : (a, b) => a < b;
      let best = null;
      for (const run of runs) {
        if (run.state === 'failed') continue;
        const v = valueOf(run, objective.metric);
        if (v !== null && (best === null || better(v, best.value))) best = { run, value: v };
      }
      return best && { metric: objective.metric, ...best };
    }
    if (runs.length !== 1) return null;
    const [run] = runs;
    const metric = Object.keys(run.outputs || {}).sort().find((k) => valueOf(run, k) !== null);
    return metric ? { metric, run, value: valueOf(run, metric) } : null;
  }

  class PipelinePage {
    constructor(root, ref) {
      this.root = root;
      this.ref = ref;
      this.id = null;
      this.sweep = null;
      this.nodes = []; // in the order the API gives them
      this.byId = new Map(); // node sweep id -> node
      this.started = new Map(); // node sweep id -> ts it started (for live durations)
      this.redraw = Orch.batched(() => this.render(), 100);
      this.reload = Orch.batched(() => this.load().catch((err) => Orch.say(err.message, true)), 500);
    }

    async start() {
      this.listen(); // first: what happens while the snapshot loads is queued, then applied
      try {
        await this.load();
      } catch (err) {
        this.root.replaceChildren(h('p.error', { text: `Cannot show pipeline ${this.ref}: ${err.message}` }));
        return;
      }
      setInterval(() => this.tick(), 1000);
    }

    async load() {
      this.loading = true;
      try {
        const detail = await Orch.api.get(`/api/v1/sweeps/${encodeURIComponent(this.id || this.ref)}`);
        this.id = detail.sweep;
        this.sweep = { id: detail.sweep, name: detail.name, state: detail.state, reason: detail.reason, total: detail.total, spec: detail.spec };
        const now = Date.now() / 1000;
        this.nodes = (detail.nodes || []).map((node) => {
          const runs = new Map();
          for (const run of node.runs || []) runs.set(run.index, run);
          if (LIVE.includes(node.state) && typeof node.duration_s === 'number') this.started.set(node.sweep_id, now - node.duration_s);
          return { ...node, runs };
        });
        this.byId = new Map(this.nodes.map((n) => [n.sweep_id, n]));
        await this.loadListItem();
        this.render();
      } finally {
        this.loading = false;
        const queued = this.queued || [];
        this.queued = [];
        for (const [fn, e] of queued) fn(e);
      }
    }

    /** Whether a process runs it now, and which (the daemon, or a CLI in the same home). */
    async loadListItem() {
      try {
        const items = await Orch.api.get('/api/v1/sweeps');
        this.listItem = (items || []).find((i) => i.id === this.id) || null;
      } catch (err) {
        this.listItem = null;
      }
    }

    // ---------------------------------------------------------------------------- events
    listen() {
      const on = (type, fn) =>
        Orch.events.on(type, (e) => {
          if (this.loading) (this.queued || (this.queued = [])).push([fn, e]);
          else if (this.id !== null) fn(e);
        });
      on('SweepStarted', (e) => {
        if (e.sweep_id === this.id) {
          this.sweep = { ...this.sweep, state: 'running', reason: null };
          this.reload(); // a resume: nodes decided anew
          return;
        }
        const node = this.byId.get(e.sweep_id);
        if (node) {
          this.started.set(node.sweep_id, e.ts);
          this.setNode(node, { state: 'running', reason: null });
        } else if (this.sweep && !isEnd(this.sweep.state)) {
          this.reload(); // a sweep not known yet: a node of this pipeline, perhaps
        }
      });
      on('SweepStopping', (e) => {
        if (e.sweep_id === this.id) {
          this.sweep = { ...this.sweep, state: 'stopping', reason: e.reason };
          this.redraw();
        }
      });
      on('SweepFinished', (e) => {
        if (e.sweep_id === this.id) {
          this.sweep = { ...this.sweep, state: e.state, reason: e.reason };
          this.reload(); // the nodes decided at the end (skipped, upstream_failed), exact times
          return;
        }
        const node = this.byId.get(e.sweep_id);
        if (node) {
          const started = this.started.get(node.sweep_id);
          this.setNode(node, { state: e.state, reason: e.reason, duration_s: started ? e.ts - started : node.duration_s });
          this.reload(); // its runs' final numbers
        }
      });
      on('RunCreated', (e) => {
        const node = this.byId.get(e.sweep_id);
        if (!node) return;
        const old = node.runs.get(e.index);
        if (old && old.id === e.run_id) return;
        node.runs.set(e.index, { index: e.index, id: e.run_id, state: 'created', reason: null, params: e.params || {}, outputs: {}, metrics: {}, duration_s: null });
        this.redraw();
      });
      on('RunStateChanged', (e) => {
        const node = this.byId.get(e.sweep_id);
        if (!node) return;
        const old = node.runs.get(e.index) || { index: e.index, params: {}, outputs: {}, metrics: {} };
        if (old.id === e.run_id && !Orch.advances(old.state, e.previous, e.state)) return; // older news
        const run = { ...old, id: e.run_id, state: e.state, reason: e.reason || null };
        if (e.outputs) run.outputs = { ...old.outputs, ...e.outputs };
        node.runs.set(e.index, run);
        this.redraw();
      });
      on('MetricReported', (e) => {
        const node = this.byId.get(e.sweep_id);
        const old = node && node.runs.get(e.index);
        if (!old) return;
        node.runs.set(e.index, { ...old, metrics: { ...old.metrics, ...e.values } });
        this.redraw();
      });
      Orch.events.onReconnect(() => this.reload());
    }

    setNode(node, changes) {
      Object.assign(node, changes);
      this.redraw();
    }

    // ---------------------------------------------------------------------------- actions
    async stop() {
      if (!window.confirm('Stop this pipeline? No new node starts; running runs are stopped.')) return;
      await Orch.act('Stopping the pipeline', `/api/v1/sweeps/${encodeURIComponent(this.id)}/stop`, {});
    }

    async resume(states) {
      const body = states ? { states } : {};
      const what = states ? 'Re-running the failed nodes' : 'Resuming the pipeline';
      if (await Orch.act(what, `/api/v1/sweeps/${encodeURIComponent(this.id)}/resume`, body)) this.reload();
    }

    // -------------------------------------------------------------------------- rendering
    /** The running nodes' times tick, in place. */
    tick() {
      for (const el of this.root.querySelectorAll('.node[data-live="1"] .node-duration')) {
        const started = this.started.get(el.closest('.node').dataset.sweep);
        if (started) el.textContent = fmt.duration(Date.now() / 1000 - started);
      }
    }

    /** What the page shows, as text: the page is drawn again only when it changes, so a
     * reload that brings nothing new leaves what a user points at (or clicks) in place. */
    signature() {
      const nodes = this.nodes.map((n) => {
        const runs = Array.from(n.runs.values());
        const states = runs.map((r) => r.state).sort();
        const best = bestOf(n, runs);
        const shown = runs.sort((x, y) => x.index - y.index).slice(0, RUNS_SHOWN);
        return [n.name, n.sweep_id, n.state, n.reason, n.total, n.upstream, LIVE.includes(n.state) ? null : n.duration_s, states, best && [best.metric, best.value, best.run.id], shown];
      });
      return JSON.stringify([this.sweep, nodes, this.listItem ? this.listItem.via_daemon : null]);
    }

    render() {
      if (!this.sweep) return;
      const signature = this.signature();
      if (signature === this.drawn) return;
      this.drawn = signature;
      const s = this.sweep;
      Orch.setTitle(s.name || fmt.short(s.id));
      const counts = {};
      let done = 0;
      for (const node of this.nodes) {
        counts[node.state] = (counts[node.state] || 0) + 1;
        if (isEnd(node.state)) done += 1;
      }
      const total = Math.max(s.total || 0, this.nodes.length);
      const chips = Object.entries(counts).sort((a, b) => Orch.STATE_ORDER.indexOf(a[0]) - Orch.STATE_ORDER.indexOf(b[0]));
      const section = h('section#sweep.pipeline', { dataset: { sweep: s.id, state: s.state, kind: 'dag', done: String(done) } });
      section.append(
        h('h1', null, s.name || `pipeline ${fmt.short(s.id)}`, ' ', h('span.kind-tag', { text: 'pipeline' }), ' ', Orch.badge(s.state)),
        h(
          'div.meta',
          null,
          h('span.mono', { text: s.id, title: 'pipeline id' }),
          s.spec ? h('span.muted', { text: ` · ${s.spec}` }) : null,
          s.reason ? h('span.reason', { text: ` · ${s.reason}` }) : null
        ),
        h(
          'div.bar',
          null,
          h('div.summary', null, this.progress(done, counts.failed || 0, total), h('span', { text: ` ${done}/${total} nodes done ` }), h('span.counts', null, chips.map(([state, n]) => h('span.count', { dataset: { state }, text: `${n} ${state}` }))))
        ),
        this.actions(),
        this.graph(),
        h('div#nodes', null, this.nodes.map((node, i) => this.nodeCard(node, i)))
      );
      this.root.replaceChildren(section);
    }

    progress(done, failed, total) {
      const bar = h('div.progress', { title: `${done} of ${total} finished` });
      const ok = h('span.ok');
      ok.style.width = `${total ? (100 * (done - failed)) / total : 0}%`;
      const bad = h('span.bad');
      bad.style.width = `${total ? (100 * failed) / total : 0}%`;
      bar.append(ok, bad);
      return bar;
    }

    actions() {
      const s = this.sweep;
      const running = LIVE.includes(s.state);
      // A pipeline run by another process (the CLI's `run`) is stopped there, not here.
      const elsewhere = running && this.listItem && this.listItem.via_daemon === false;
      const failed = this.nodes.some((n) => ['failed', 'stopped', 'upstream_failed'].includes(n.state));
      return h(
        'div.actions',
        null,
        h('button#stop-sweep', {
          type: 'button',
          text: 'Stop pipeline',
          disabled: !running || s.state === 'stopping' || elsewhere,
          title: elsewhere ? 'run by another process (orchestrator run): stop it there' : 'No new node starts; running runs are stopped',
          onclick: () => this.stop(),
        }),
        h('button#resume-sweep', { type: 'button', text: 'Resume', disabled: running, title: 'Run the nodes that have not succeeded', onclick: () => this.resume(null) }),
        h('button#rerun-failed', { type: 'button', text: 'Re-run failed', disabled: running || !failed, title: 'Run the failed and stopped nodes again', onclick: () => this.resume(['failed', 'stopped']) })
      );
    }

    /** The nodes as a small graph: one column per depth (a node sits right of what it waits
     * for), each box coloured by state; the edges are the 'after' lines of the cards. */
    graph() {
      const depth = new Map();
      const known = new Set(this.nodes.map((n) => n.name));
      const depthOf = (node, seen = new Set()) => {
        if (depth.has(node.name)) return depth.get(node.name);
        seen.add(node.name);
        let d = 0;
        for (const up of node.upstream || []) {
          const upNode = this.nodes.find((n) => n.name === up);
          if (upNode && known.has(up) && !seen.has(up)) d = Math.max(d, depthOf(upNode, seen) + 1);
        }
        depth.set(node.name, d);
        return d;
      };
      const columns = [];
      for (const node of this.nodes) {
        const d = depthOf(node);
        (columns[d] || (columns[d] = [])).push(node);
      }
      const graph = h('div#dag-graph.dag-graph', { title: 'the nodes by what they wait for: left to right' });
      columns.forEach((column, i) => {
        if (i > 0) graph.append(h('span.dag-arrow', { text: '→' }));
        graph.append(
          h(
            'div.dag-column',
            null,
            (column || []).map((node) =>
              h('a.dag-box', { href: `#node-${node.name}`, dataset: { state: node.state || '' }, title: `${node.name}: ${node.state}${node.reason ? ` (${node.reason})` : ''}` }, node.name)
            )
          )
        );
      });
      return graph;
    }

    nodeCard(node, position) {
      const runs = Array.from(node.runs.values()).sort((a, b) => a.index - b.index);
      let done = 0;
      let failed = 0;
      for (const run of runs) {
        if (isEnd(run.state)) done += 1;
        if (run.state === 'failed') failed += 1;
      }
      const total = Math.max(node.total || 0, runs.length);
      let duration = node.duration_s;
      if (LIVE.includes(node.state) && this.started.has(node.sweep_id)) duration = Date.now() / 1000 - this.started.get(node.sweep_id);
      const best = bestOf(node, runs);
      const upstream = node.upstream || [];
      const live = LIVE.includes(node.state) ? '1' : '';
      const card = h('div.node', { id: `node-${node.name}`, dataset: { node: node.name, sweep: node.sweep_id, state: node.state || '', position: String(position), upstream: upstream.join(','), live } });
      card.append(
        h(
          'div.node-head',
          null,
          h('span.node-position.muted', { text: `${position + 1}.` }),
          ' ',
          Orch.link(`/sweeps/${encodeURIComponent(node.sweep_id)}`, node.name, 'node-link strong'),
          ' ',
          h('span.kind-tag', { text: kindOf(node) }),
          ' ',
          Orch.badge(node.state),
          node.reason ? h('span.reason', { text: ` ${node.reason}` }) : null
        ),
        h(
          'div.node-facts.small',
          null,
          h('span.node-after', { text: upstream.length ? `after ${upstream.join(', ')}` : node.upstream ? 'first (waits for nothing)' : '' }),
          h('span.node-progress', null, this.progress(done, failed, total), ` ${done}/${total} runs`),
          h('span.node-duration', { text: fmt.duration(duration) }),
          best
            ? h('span.node-best', null, `${runs.length > 1 ? 'best ' : ''}${best.metric} = ${fmt.number(best.value)} `, Orch.link(`/runs/${encodeURIComponent(best.run.id)}`, `#${best.run.index}`))
            : null
        ),
        runs.length ? this.runTable(node, runs) : null
      );
      return card;
    }

    runTable(node, runs) {
      const shown = runs.slice(0, RUNS_SHOWN);
      const params = new Set();
      const values = new Set();
      const reported = new Set();
      for (const run of shown) {
        for (const k of Object.keys(run.params || {})) params.add(k);
        for (const k of Object.keys(run.outputs || {})) values.add(k);
        for (const k of Object.keys(run.metrics || {})) reported.add(k);
      }
      const p = Array.from(params).sort();
      const o = Array.from(values).sort();
      const m = Array.from(reported).filter((k) => !values.has(k)).sort(); // last reported
      const table = h('table.grid.small.node-runs', { dataset: { node: node.name } });
      table.append(
        h('thead', null, h('tr', null, ['#', 'state', 'time', ...p, ...o, ...m].map((t) => h('th', { text: t })))),
        h(
          'tbody',
          null,
          shown.map((run) =>
            h(
              'tr',
              { dataset: { index: String(run.index), state: run.state || '' } },
              h('td', null, Orch.link(`/runs/${encodeURIComponent(run.id)}`, `#${run.index}`, 'run-link')),
              h('td', { title: run.reason || '' }, Orch.badge(run.state)),
              h('td.num', { text: fmt.duration(run.duration_s) }),
              p.map((k) => h('td', { text: fmt.value(run.params ? run.params[k] : undefined) })),
              o.map((k) => h('td.num', { text: fmt.value(run.outputs ? run.outputs[k] : undefined) })),
              m.map((k) => h('td.num', { text: fmt.value(run.metrics ? run.metrics[k] : undefined) }))
            )
          )
        )
      );
      const more = runs.length - shown.length;
      return h('div.table-wrap.node-runs-wrap', null, table, more > 0 ? h('p.muted.small', null, `${more} more: `, Orch.link(`/sweeps/${encodeURIComponent(node.sweep_id)}`, 'the node’s page')) : null);
    }
  }

  Orch.PipelinePage = PipelinePage;
})();
