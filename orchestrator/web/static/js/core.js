// Shared pieces of the web page: the API client (or the inlined data of a report), the one
// event stream of the tab, redraws batched per animation frame, and small DOM helpers.
// Plain ES2020 scripts sharing one namespace (window.Orch): no build step, and the same files
// work inlined into a single report file opened from file://.
'use strict';

(function () {
  const Orch = (window.Orch = window.Orch || {});

  // ------------------------------------------------------------------ data of a report file
  const embedded = document.getElementById('orchestrator-data');
  Orch.data = embedded ? JSON.parse(embedded.textContent) : null;
  /** True when the page is a self-contained report: no API, no events, no actions. */
  Orch.offline = Orch.data !== null;
  if (Orch.offline) document.documentElement.classList.add('offline');

  /** The page's path: the address bar's, or the route a report was written for. */
  Orch.route = function () {
    if (Orch.offline) return new URL(Orch.data.route || '/', 'http://report/');
    return new URL(window.location.href);
  };

  // ------------------------------------------------------------------------------ API
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }
  Orch.ApiError = ApiError;

  async function answer(response) {
    const type = response.headers.get('content-type') || '';
    const body = type.startsWith('application/json') ? await response.json() : await response.text();
    if (!response.ok) {
      const text = body && body.error ? body.error : `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, text);
    }
    return body;
  }

  Orch.api = {
    /** GET a JSON answer; in a report, the inlined answer for that path (or its path
     * without the query), else a 404. */
    async get(path) {
      if (Orch.offline) {
        const answers = Orch.data.responses || {};
        const found = answers[path] !== undefined ? answers[path] : answers[path.split('?')[0]];
        if (found === undefined) throw new ApiError(404, 'not in this report');
        return found;
      }
      return answer(await fetch(path, { headers: { Accept: 'application/json' }, credentials: 'same-origin' }));
    },
    /** POST JSON with the header the daemon asks of the page's actions. */
    async post(path, body) {
      if (Orch.offline) throw new ApiError(400, 'a report cannot act');
      const response = await fetch(path, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-Orchestrator-Request': '1', Accept: 'application/json' },
        body: JSON.stringify(body === undefined ? {} : body),
      });
      return answer(response);
    },
  };

  // ------------------------------------------------------------- the one event stream
  const EVENT_TYPES = ['SweepStarted', 'RunCreated', 'RunStateChanged', 'LogLine', 'MetricReported', 'SweepStopping', 'SweepFinished'];
  const handlers = new Map(); // type -> [fn]
  const reconnectHandlers = [];
  let source = null;
  let opened = 0;

  function setStatus(text) {
    const el = document.getElementById('status');
    if (el && el.textContent !== text) {
      el.textContent = text;
      el.dataset.state = text;
    }
  }

  Orch.events = {
    /** Call fn(data, id) for each event of that type (the JSON of the event). */
    on(type, fn) {
      if (!handlers.has(type)) handlers.set(type, []);
      handlers.get(type).push(fn);
    },
    /** Call fn() when the stream opens again after a break: refetch a snapshot, since a
     * replay may not reach back far enough. Upserts keep that idempotent. */
    onReconnect(fn) {
      reconnectHandlers.push(fn);
    },
    /** Open the tab's one EventSource (browsers allow 6 connections per origin). */
    start() {
      if (Orch.offline) {
        setStatus('offline');
        const el = document.getElementById('status');
        el.dataset.state = 'report'; // not a failure: a saved page
        el.title = 'a saved report: no live updates';
        return;
      }
      if (source) return;
      source = new EventSource('/api/v1/events?flush_ms=50');
      source.onopen = () => {
        setStatus('live');
        opened += 1;
        if (opened > 1) reconnectHandlers.forEach((fn) => fn());
      };
      source.onerror = () => {
        if (source.readyState === EventSource.CLOSED) {
          // Refused (a restarted daemon has a new token) or gone: say which, try again later.
          setStatus('offline');
          source = null;
          fetch('/api/v1/health', { credentials: 'same-origin' })
            .then((r) => {
              if (r.status === 401) Orch.say('The daemon no longer knows this page (restarted?): sign in again with a new link (orchestrator web --home HOME).', true);
            })
            .catch(() => {});
          setTimeout(() => Orch.events.start(), 5000);
        } else {
          setStatus('connecting');
        }
      };
      for (const type of EVENT_TYPES) {
        source.addEventListener(type, (message) => {
          const list = handlers.get(type);
          if (!list || !message.data) return;
          let data;
          try {
            data = JSON.parse(message.data);
          } catch (err) {
            return;
          }
          for (const fn of list) fn(data, message.lastEventId);
        });
      }
      source.addEventListener('shutdown', () => setStatus('connecting'));
    },
    /** Close the tab's stream, as a broken connection does; start() opens it again and the
     * page catches up (the status badge's click does both; the browser tests use it). */
    stop() {
      if (!source) return;
      source.close();
      source = null;
      setStatus('offline');
    },
  };

  // ------------------------------------------------------ redraws, one per animation frame
  /** A function that runs fn at most once per animation frame however often it is asked,
   * and (with minGapMs, a number or a function giving one) at most once per that many
   * milliseconds. */
  Orch.batched = function (fn, minGapMs = 0) {
    let queued = false;
    let last = 0;
    let timer = null;
    function run() {
      queued = false;
      last = performance.now();
      fn();
    }
    return function schedule() {
      if (queued || timer) return;
      const gap = typeof minGapMs === 'function' ? minGapMs() : minGapMs;
      const wait = last + gap - performance.now();
      if (wait > 0) {
        timer = setTimeout(() => {
          timer = null;
          queued = true;
          requestAnimationFrame(run);
        }, wait);
        return;
      }
      queued = true;
      requestAnimationFrame(run);
    };
  };

  // ------------------------------------------------------------------------- DOM helpers
  /** h('tag.class#id', {attrs}, children...): a small element builder (text is escaped). */
  Orch.h = function (spec, attrs, ...children) {
    const match = /^([a-z0-9]+)?((?:[.#][\w-]+)*)$/i.exec(spec);
    const el = document.createElement((match && match[1]) || 'div');
    if (match && match[2]) {
      for (const part of match[2].match(/[.#][\w-]+/g)) {
        if (part[0] === '.') el.classList.add(part.slice(1));
        else el.id = part.slice(1);
      }
    }
    if (attrs) {
      for (const [key, value] of Object.entries(attrs)) {
        if (value === null || value === undefined || value === false) continue;
        if (key === 'text') el.textContent = value;
        else if (key === 'dataset') Object.assign(el.dataset, value);
        else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
        else if (key === 'class') el.className = value;
        else el.setAttribute(key, value === true ? '' : value);
      }
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  };

  /** Replace el's children, skipping null, undefined and false (which the DOM would print). */
  Orch.fill = function (el, ...children) {
    el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  };

  /** A link inside the page; plain text in a report (there is no other page to open). */
  Orch.link = function (href, text, cls) {
    if (Orch.offline) return Orch.h('span', { class: cls, text });
    return Orch.h('a', { href, class: cls, text });
  };

  /** Show one line of news or an error under the header (it fades after a while). */
  let messageTimer = null;
  Orch.say = function (text, isError = false) {
    const el = document.getElementById('message');
    if (!el) return;
    el.textContent = text;
    el.classList.toggle('error', isError);
    el.hidden = false;
    clearTimeout(messageTimer);
    messageTimer = setTimeout(() => (el.hidden = true), isError ? 15000 : 5000);
  };

  /** Run an action (a POST); say what happened in one line; returns the answer or null. */
  Orch.act = async function (what, path, body) {
    try {
      const result = await Orch.api.post(path, body);
      Orch.say(what);
      return result;
    } catch (err) {
      Orch.say(`${what} failed: ${err.message}`, true);
      return null;
    }
  };

  // ------------------------------------------------------------------------------ format
  Orch.END_STATES = new Set(['succeeded', 'failed', 'stopped', 'skipped', 'upstream_failed']);
  Orch.STATE_ORDER = ['running', 'starting', 'stopping', 'retrying', 'queued', 'created', 'succeeded', 'failed', 'stopped', 'skipped', 'upstream_failed'];

  const RANK = { created: 0, queued: 1, retrying: 1, starting: 2, running: 3, stopping: 4 };
  /** Whether a RunStateChanged (previous -> next) moves a run shown as current forward: it
   * continues from what is shown, or goes further. A replayed or queued older event (the
   * snapshot read after it) is then ignored instead of turning the run back. */
  Orch.advances = function (current, previous, next) {
    if (current === undefined || current === null || current === previous) return true;
    const rank = (s) => (Orch.END_STATES.has(s) ? 5 : RANK[s] !== undefined ? RANK[s] : 0);
    return rank(next) > rank(current);
  };

  Orch.fmt = {
    number(value) {
      if (value === null || value === undefined || value === '') return '';
      if (typeof value !== 'number') return String(value);
      if (!Number.isFinite(value)) return String(value);
      if (Number.isInteger(value)) return String(value);
      const abs = Math.abs(value);
      if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(3);
      return String(Number(value.toPrecision(5)));
    },
    value(value) {
      if (value === null || value === undefined) return '';
      if (typeof value === 'number') return Orch.fmt.number(value);
      if (typeof value === 'object') return JSON.stringify(value);
      return String(value);
    },
    duration(seconds) {
      if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '';
      const s = Math.max(0, Math.round(seconds));
      if (s < 60) return `${s}s`;
      if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
      const h = Math.floor(s / 3600);
      return `${h}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
    },
    time(epochSeconds) {
      if (!epochSeconds) return '';
      const d = new Date(epochSeconds * 1000);
      const today = new Date();
      const sameDay = d.toDateString() === today.toDateString();
      const clock = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
      return sameDay ? clock : `${d.toLocaleDateString()} ${clock}`;
    },
    bytes(n) {
      if (n === null || n === undefined) return '';
      const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
      let i = 0;
      while (n >= 1024 && i < units.length - 1) {
        n /= 1024;
        i += 1;
      }
      return `${i ? n.toFixed(1) : n} ${units[i]}`;
    },
    /** A command line as a shell would take it back. */
    argv(argv) {
      return (argv || [])
        .map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${String(arg).replace(/'/g, `'"'"'`)}'`))
        .join(' ');
    },
    short(id) {
      return id ? String(id).slice(0, 12) : '';
    },
  };

  /** A state badge. */
  Orch.badge = function (state) {
    return Orch.h('span.badge', { dataset: { state: state || '' }, text: state || '' });
  };

  Orch.setTitle = function (text) {
    document.title = text ? `${text} · orchestrator` : 'orchestrator';
  };

  /** Which page the path names, and its argument. */
  Orch.page = function () {
    const url = Orch.route();
    const path = url.pathname;
    let m;
    if ((m = /^\/sweeps\/([^/]+)\/?$/.exec(path))) return { name: 'sweep', id: decodeURIComponent(m[1]), url };
    if ((m = /^\/runs\/([^/]+)\/?$/.exec(path))) return { name: 'run', id: decodeURIComponent(m[1]), url };
    if (/^\/compare\/?$/.test(path)) return { name: 'compare', url };
    if (/^\/submit\/?$/.test(path)) return { name: 'submit', url };
    return { name: 'list', url };
  };
})();
