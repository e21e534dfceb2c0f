// Submit a polyaxonfile: pasted or uploaded, with -P style overrides; POST /api/v1/sweeps
// (with the action header), then open the new sweep's page. Errors show in one line.
'use strict';

(function () {
  const Orch = window.Orch;
  const { h } = Orch;

  /** "-P" overrides: one name=value per line, or a comma list (a comma only splits before
   * another name=, so values may hold commas: layers=[1,2], lr=0.1). */
  function parseParams(text) {
    const params = {};
    const trimmed = (text || '').trim();
    if (!trimmed) return params;
    const items = trimmed.includes('\n') ? trimmed.split('\n') : trimmed.split(/,\s*(?=[\w.-]+\s*=)/);
    for (let item of items) {
      item = item.trim().replace(/^-P\s*/, '');
      if (!item) continue;
      const eq = item.indexOf('=');
      if (eq <= 0) throw new Error(`-P ${item}: expected name=value`);
      params[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
    }
    return params;
  }

  Orch.parseParams = parseParams;
  Orch.pages = Orch.pages || {};
  Orch.pages.submit = async function (root) {
    Orch.setTitle('submit');
    const spec = h('textarea#spec', { rows: '18', spellcheck: 'false', placeholder: 'version: 1.1\nkind: operation\nmatrix:\n  kind: grid\n  params:\n    lr: {kind: choice, value: [0.1, 0.01]}\ncomponent:\n  run:\n    kind: job\n    container: {command: [python, train.py, "--lr={{ lr }}"]}', required: true });
    const file = h('input#spec-file', { type: 'file', accept: '.yaml,.yml,.json,text/yaml,application/json' });
    const params = h('input#params', { type: 'text', placeholder: 'lr=0.01, epochs=3   (or one name=value per line)', spellcheck: 'false', autocomplete: 'off' });
    const name = h('input#sweep-name', { type: 'text', placeholder: 'optional' });
    const baseDir = h('input#base-dir', { type: 'text', placeholder: "the daemon's working folder", spellcheck: 'false' });
    const error = h('div#submit-error.error', { hidden: true, role: 'alert' });
    const button = h('button#submit', { type: 'submit', text: 'Submit' });
    let specPath = null;
    file.addEventListener('change', async () => {
      const chosen = file.files && file.files[0];
      if (!chosen) return;
      spec.value = await chosen.text();
      specPath = null; // a browser does not say where the file was
      if (!name.value) name.placeholder = chosen.name.replace(/\.(ya?ml|json)$/i, '');
    });
    const form = h('form#submit-form.form', { novalidate: true });
    form.append(
      h('h1', { text: 'Submit a sweep' }),
      h('div.spec-head', null, h('label', { for: 'spec', text: 'Polyaxonfile' }), h('span.muted.small', null, 'paste it below, or upload one: ', file)),
      spec,
      h('label', null, 'Overrides (-P) ', params),
      h('div.row', null, h('label', null, 'Name ', name), h('label', null, 'Folder its relative paths mean ', baseDir)),
      h('div.actions', null, button, error)
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.hidden = true;
      let body;
      try {
        if (!spec.value.trim()) throw new Error('the polyaxonfile is empty');
        body = { spec: spec.value, params: parseParams(params.value) };
      } catch (err) {
        error.textContent = err.message;
        error.hidden = false;
        return;
      }
      const wanted = name.value.trim() || (name.placeholder !== 'optional' ? name.placeholder : '');
      if (wanted) body.name = wanted;
      if (baseDir.value.trim()) body.base_dir = baseDir.value.trim();
      if (specPath) body.spec_path = specPath;
      button.disabled = true;
      try {
        const answer = await Orch.api.post('/api/v1/sweeps', body);
        if (answer.warnings && answer.warnings.length) sessionStorage.setItem('orchestrator-warnings', answer.warnings.join(' · '));
        window.location.href = `/sweeps/${encodeURIComponent(answer.sweep)}`;
      } catch (err) {
        error.textContent = String(err.message).split('\n')[0];
        error.hidden = false;
        button.disabled = false;
      }
    });
    root.replaceChildren(form);
  };
})();
