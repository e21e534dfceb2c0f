// The run table's filter and sort, over runs as the API gives them
// ({index, id, state, params, outputs, metrics, duration_s, ...}).
//
// Filter syntax: words separated by spaces, all must hold.
//   text            the run's index, state, id or any "name=value" contains it
//   state:failed    the state is one of a comma list (state:failed,stopped)
//   name=value      equal (numbers as numbers; text ignoring case); != differs
//   name<x name<=x name>x name>=x   compared as numbers when both are, else as text
//   name~text       contains
// A name is looked up in params, then outputs, then metrics; p:NAME, o:NAME, m:NAME say which.
// index, state, duration and attempt name those columns.
'use strict';

(function () {
  const Orch = window.Orch;

  /** The value of a column key (index, state, duration, attempt, p:NAME, o:NAME, m:NAME). */
  function valueOf(run, key) {
    switch (key) {
      case 'index':
        return run.index;
      case 'state':
        return run.state;
      case 'duration':
        return run.duration_s;
      case 'attempt':
        return run.attempt;
      case 'id':
        return run.id;
      default:
        break;
    }
    const colon = key.indexOf(':');
    const kind = key.slice(0, colon);
    const name = key.slice(colon + 1);
    if (kind === 'p') return run.params ? run.params[name] : undefined;
    if (kind === 'o') return run.outputs ? run.outputs[name] : undefined;
    if (kind === 'm') return run.metrics ? run.metrics[name] : undefined;
    return undefined;
  }

  /** A metric's value of a run: its output of that name, else its last reported value. */
  function metricOf(run, name) {
    if (!name) return undefined;
    if (run.outputs && typeof run.outputs[name] === 'number') return run.outputs[name];
    if (run.metrics && typeof run.metrics[name] === 'number') return run.metrics[name];
    return undefined;
  }

  /** The column key a name in the filter means for this run. */
  function lookup(run, name) {
    if (['index', 'state', 'duration', 'attempt', 'id'].includes(name)) return valueOf(run, name);
    if (/^[pom]:/.test(name)) return valueOf(run, name);
    if (run.params && name in run.params) return run.params[name];
    if (run.outputs && name in run.outputs) return run.outputs[name];
    if (run.metrics && name in run.metrics) return run.metrics[name];
    return undefined;
  }

  function asNumber(value) {
    if (typeof value === 'number') return value;
    if (typeof value === 'boolean' || value === null || value === undefined) return NaN;
    const text = String(value).trim();
    return text === '' ? NaN : Number(text);
  }

  function text(value) {
    if (value === null || value === undefined) return '';
    return typeof value === 'object' ? JSON.stringify(value) : String(value);
  }

  function compare(left, op, right) {
    if (left === undefined) return op === '!=';
    const a = asNumber(left);
    const b = asNumber(right);
    const numeric = !Number.isNaN(a) && !Number.isNaN(b);
    const x = numeric ? a : text(left).toLowerCase();
    const y = numeric ? b : right.toLowerCase();
    switch (op) {
      case '=':
        return x === y;
      case '!=':
        return x !== y;
      case '<':
        return x < y;
      case '<=':
        return x <= y;
      case '>':
        return x > y;
      case '>=':
        return x >= y;
      case '~':
        return text(left).toLowerCase().includes(right.toLowerCase());
      default:
        return false;
    }
  }

  const searchText = new WeakMap(); // run object -> its lowercased words (rows are replaced on change)
  function haystack(run) {
    let found = searchText.get(run);
    if (found === undefined) {
      const parts = [`#${run.index}`, String(run.index), run.state || '', run.id || '', run.reason || ''];
      for (const group of [run.params, run.outputs]) {
        for (const [k, v] of Object.entries(group || {})) parts.push(`${k}=${text(v)}`);
      }
      found = parts.join(' ').toLowerCase();
      searchText.set(run, found);
    }
    return found;
  }

  function unquote(value) {
    return value.length >= 2 && value[0] === '"' && value.endsWith('"') ? value.slice(1, -1) : value;
  }

  /** Parse a filter: {test(run) -> bool, terms: N, error: text|null}. */
  function parse(input) {
    const words = (input || '').match(/(?:[^\s"]+|"[^"]*")+/g) || [];
    const tests = [];
    let error = null;
    for (const word of words) {
      const state = /^state:(.+)$/i.exec(word);
      if (state) {
        const wanted = new Set(unquote(state[1]).toLowerCase().split(/[,|]/).filter(Boolean));
        tests.push((run) => wanted.has(run.state));
        continue;
      }
      const term = /^([^=<>!~]+?)(!=|<=|>=|=|<|>|~)(.*)$/.exec(word);
      if (term) {
        const [, name, op, raw] = term;
        const value = unquote(raw);
        if (value === '' && op !== '=' && op !== '!=' && op !== '~') {
          error = `"${word}": a value is missing after ${op}`;
          continue;
        }
        tests.push((run) => compare(lookup(run, name), op, value));
        continue;
      }
      const needle = unquote(word).toLowerCase();
      tests.push((run) => haystack(run).includes(needle));
    }
    return {
      terms: tests.length,
      error,
      test: (run) => tests.every((t) => t(run)),
    };
  }

  /** A comparator for a column key; runs without a value come last in either direction. */
  function comparator(key, descending) {
    const sign = descending ? -1 : 1;
    return (r1, r2) => {
      const a = key === 'state' ? Orch.STATE_ORDER.indexOf(r1.state) : valueOf(r1, key);
      const b = key === 'state' ? Orch.STATE_ORDER.indexOf(r2.state) : valueOf(r2, key);
      const aMissing = a === undefined || a === null || (typeof a === 'number' && Number.isNaN(a));
      const bMissing = b === undefined || b === null || (typeof b === 'number' && Number.isNaN(b));
      if (aMissing || bMissing) return aMissing === bMissing ? r1.index - r2.index : aMissing ? 1 : -1;
      let order;
      if (typeof a === 'number' && typeof b === 'number') order = a - b;
      else order = text(a).localeCompare(text(b), undefined, { numeric: true });
      return order === 0 ? r1.index - r2.index : sign * order;
    };
  }

  Orch.filter = { parse, comparator, valueOf, metricOf, lookup };
})();
