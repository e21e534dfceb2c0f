// The sweep list: every sweep of the home with its state, runs per state, progress, best
// metric, start and duration. Live: any event of a sweep refetches the list, at most once a
// second (the list is small and counted by SQLite; refetching keeps it exact after a replay).
'use strict';

(function () {
  const Orch = window.Orch;
  const { h, fmt } = Orch;

  function doneOf(item) {
    if (typeof item.done === 'number') return item.done;
    let done = 0;
    for (const [state, n] of Object.entries(item.counts || {})) if (Orch.END_STATES.has(state)) done += n;
    return done;
  }

  function startedOf(item) {
    return item.started !== undefined ? item.started : item.started_at;
  }

  function durationOf(item) {
    const started = startedOf(item);
    if (!started) return null;
    if (isLive(item)) return Date.now() / 1000 - started;
    if (typeof item.duration_s === 'number') return item.duration_s;
    return item.finished_at ? item.finished_at - started : null;
  }

  function isLive(item) {
    if (typeof item.live === 'boolean') return item.live;
    return ['running', 'stopping', 'created'].includes(item.state);
  }

  function counts(item) {
    const cell = h('span.counts');
    const entries = Object.entries(item.counts || {}).filter(([, n]) => n > 0);
    entries.sort((a, b) => Orch.STATE_ORDER.indexOf(a[0]) - Orch.STATE_ORDER.indexOf(b[0]));
    for (const [state, n] of entries) {
      cell.append(h('span.count', { dataset: { state }, title: `${n} ${state}`, text: `${n} ${state}` }));
    }
    return cell;
  }

  function progress(item, unit) {
    const total = item.total || 0;
    const done = doneOf(item);
    const failed = (item.counts && (item.counts.failed || 0) + (item.counts.upstream_failed || 0)) || 0;
    const bar = h('div.progress', { title: `${done} of ${total} ${unit} finished`, dataset: { done: String(done), total: String(total) } });
    const width = (n) => `${total ? Math.min(100, (100 * n) / total) : 0}%`;
    const ok = h('span.ok');
    ok.style.width = width(Math.max(0, done - failed));
    const bad = h('span.bad');
    bad.style.width = width(failed);
    bar.append(ok, bad);
    return h('span.progress-cell', null, bar, h('span.muted', { text: ` ${done}/${total}${unit === 'runs' ? '' : ` ${unit}`}` }));
  }

  function best(item) {
    if (!item.best || !item.objective) return h('span.muted', { text: item.objective ? '–' : '' });
    const { metric, goal } = item.objective;
    const runLink = Orch.link(`/runs/${encodeURIComponent(item.best.run)}`, `#${item.best.index}`);
    return h('span', { title: `${goal} ${metric}` }, `${metric} ${fmt.number(item.best.value)} `, runLink);
  }

  function row(item) {
    const name = item.name || fmt.short(item.id);
    const pipeline = item.kind === 'dag'; // its counts and progress are of its nodes
    const tr = h('tr', { dataset: { sweep: item.id, state: item.state, kind: item.kind || '' } });
    tr.append(
      h(
        'td',
        null,
        Orch.link(`/sweeps/${encodeURIComponent(item.id)}`, name, 'strong'),
        pipeline ? h('span.kind-tag', { text: 'pipeline', title: 'a pipeline (run.kind: dag): its counts are of its nodes' }) : null,
        h('div.muted.small', { text: fmt.short(item.id) })
      ),
      h('td', null, Orch.badge(item.state), item.reason ? h('div.muted.small', { text: item.reason, title: item.reason }) : null),
      h('td', null, counts(item)),
      h('td', null, progress(item, pipeline ? 'nodes' : 'runs')),
      h('td', null, best(item)),
      h('td', { text: fmt.time(startedOf(item)) }),
      h('td.duration', { dataset: { live: isLive(item) ? '1' : '' }, text: fmt.duration(durationOf(item)) })
    );
    return tr;
  }

  function render(root, items) {
    const table = h('table#sweeps.grid');
    table.append(
      h('thead', null, h('tr', null, ['sweep', 'state', 'runs', 'progress', 'best', 'started', 'duration'].map((t) => h('th', { text: t })))),
      h('tbody', null, items.map(row))
    );
    const summary = h('p.muted', { text: `${items.length} sweep${items.length === 1 ? '' : 's'}` });
    const body = items.length
      ? table
      : h('div.empty', null, h('p', { text: 'No sweeps yet.' }), Orch.offline ? null : h('p', null, Orch.link('/submit', 'Submit one'), ' or run `orchestrator submit SPEC`.'));
    if (items.length === 0) body.append(table); // the table is there (empty) for scripts
    root.replaceChildren(h('h1', { text: 'Sweeps' }), summary, body);
  }

  Orch.pages = Orch.pages || {};
  Orch.pages.list = async function (root) {
    Orch.setTitle('sweeps');
    let items = [];
    async function load() {
      try {
        items = await Orch.api.get('/api/v1/sweeps');
        render(root, items);
      } catch (err) {
        root.replaceChildren(h('p.error', { text: `Cannot list the sweeps: ${err.message}` }));
      }
    }
    await load();
    const refresh = Orch.batched(load, 1000);
    for (const type of ['SweepStarted', 'RunCreated', 'RunStateChanged', 'SweepStopping', 'SweepFinished']) {
      Orch.events.on(type, refresh);
    }
    Orch.events.onReconnect(refresh);
    // The running sweeps' durations tick.
    setInterval(() => {
      for (const cell of root.querySelectorAll('td.duration[data-live="1"]')) {
        const id = cell.parentElement.dataset.sweep;
        const item = items.find((i) => i.id === id);
        if (item) cell.textContent = fmt.duration(durationOf(item));
      }
    }, 1000);
  };
})();
