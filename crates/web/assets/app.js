// loraforge web UI: in-page dialogs for Save / Deploy / Delete / Cancel, background jobs followed live
// over Server-Sent Events. No framework, no build step; served from the binary.
(() => {
  'use strict';

  const FINAL = ['succeeded', 'failed', 'cancelled'];
  const watched = new Map();

  const csrf = () => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : '';
  };
  const dialog = () => document.getElementById('dialog');

  function openDialog(kind, button) {
    const template = document.getElementById('tpl-' + kind);
    const dlg = dialog();
    if (!template || !dlg) return;
    dlg.replaceChildren(template.content.cloneNode(true));
    const form = dlg.querySelector('form');
    const name = button.dataset.name;
    dlg.querySelectorAll('[data-field="name"]').forEach((el) => { el.textContent = name; });
    const pattern = dlg.querySelector('[data-field="pattern"]');
    const quant = form.querySelector('select[name="quant"]');
    const showPattern = () => {
      if (pattern) pattern.textContent = (button.dataset.pattern || '').replace('<quant>', quant ? quant.value : '');
    };
    if (quant) quant.addEventListener('change', showPattern);
    showPattern();
    form.querySelector('[data-cancel]').addEventListener('click', () => dlg.close());
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      confirmAction(kind, button, form);
    });
    dlg.showModal();
    const first = form.querySelector('select, input') || form.querySelector('[data-confirm]');
    if (first) first.focus();
  }

  function showError(form, data) {
    const p = form.querySelector('.error');
    p.hidden = false;
    p.textContent = (data.error || 'the request failed') + (data.hint ? ' — ' + data.hint : '');
  }

  async function confirmAction(kind, button, form) {
    const stage = button.dataset.stage;
    const name = button.dataset.name;
    const enc = encodeURIComponent(name);
    let url = '/api/v1/' + stage + '/' + enc;
    let method = 'DELETE';
    let body = null;
    if (kind === 'save') {
      url = '/api/v1/trained/' + enc + '/save';
      method = 'POST';
      body = { dtype: form.elements.dtype.value };
    } else if (kind === 'cancel') {
      url = '/api/v1/jobs/' + enc + '/cancel';
      method = 'POST';
    } else if (kind === 'deploy') {
      url = '/api/v1/saved/' + enc + '/deploy';
      method = 'POST';
      body = { quant: form.elements.quant.value, host: form.elements.host.value };
    }
    const ok = form.querySelector('[data-confirm]');
    ok.disabled = true;
    try {
      const headers = { 'X-CSRF-Token': csrf() };
      if (body) headers['Content-Type'] = 'application/json';
      const response = await fetch(url, {
        method, headers, credentials: 'same-origin', body: body ? JSON.stringify(body) : null,
      });
      const data = await response.json().catch(() => ({}));
      if (!response.ok) {
        showError(form, data);
        ok.disabled = false;
        return;
      }
      dialog().close();
      if (kind === 'delete') {
        removed(stage, name);
      } else if (kind === 'cancel') {
        update(data);
        refreshMain().then(() => update(data));
      } else {
        addJob(data.job, kind + ' ' + name);
      }
    } catch (error) {
      showError(form, { error: String(error) });
      ok.disabled = false;
    }
  }

  function flash(text) {
    const live = document.getElementById('live-jobs');
    if (!live) return;
    const note = document.createElement('div');
    note.className = 'flash';
    note.textContent = text;
    live.appendChild(note);
    setTimeout(() => note.remove(), 6000);
  }

  function removed(stage, name) {
    const entry = document.querySelector('.entry[data-name]');
    if (entry && entry.dataset.name === name) {
      location.href = '/' + stage;
      return;
    }
    document.querySelectorAll('tr[data-name]').forEach((row) => {
      if (row.dataset.name === name) row.remove();
    });
    flash('Deleted ' + name + '.');
  }

  function addJob(id, what) {
    const live = document.getElementById('live-jobs');
    let panel = live.querySelector('[data-job="' + CSS.escape(id) + '"]');
    if (!panel) {
      panel = document.createElement('div');
      panel.className = 'job-panel';
      panel.dataset.job = id;
      panel.dataset.state = 'queued';
      panel.innerHTML = '<span class="what"></span> <span class="state">queued</span> '
        + '<progress max="100" aria-label="progress"></progress> <span class="phase"></span> <span class="msg"></span>';
      panel.querySelector('.what').textContent = what;
      live.appendChild(panel);
    }
    watch(id);
  }

  function update(job) {
    document.querySelectorAll('[data-job="' + CSS.escape(job.id) + '"]').forEach((el) => {
      el.dataset.state = job.state;
      const state = el.querySelector('.state');
      if (state) state.textContent = job.state_text || job.state;
      let bar = el.querySelector('progress');
      const total = job.progress && job.progress.total;
      if (bar) {
        if (job.state === 'succeeded') bar.value = 100;
        else if (total) bar.value = Math.min(100, Math.floor((100 * job.progress.done) / total));
        else bar.removeAttribute('value');
        if (FINAL.includes(job.state) && job.state !== 'succeeded') bar.remove();
      }
      const phase = el.querySelector('.phase');
      if (phase && job.progress) phase.textContent = job.progress.phase || '';
      const msg = el.querySelector('.msg');
      if (msg) {
        if (job.state === 'failed') {
          msg.className = 'msg error';
          msg.textContent = (job.error || 'failed') + (job.hint ? ' — ' + job.hint : '');
        } else if (job.state === 'succeeded' && job.result) {
          const stage = job.kind && job.kind.type === 'deploy' ? 'deployed' : 'saved';
          msg.replaceChildren();
          const link = document.createElement('a');
          link.href = '/' + stage + '/' + encodeURIComponent(job.result);
          link.textContent = job.result;
          msg.append('done: ', link);
        } else if (job.progress) {
          msg.textContent = job.progress.message || '';
        }
      }
    });
  }

  async function refreshMain() {
    try {
      const response = await fetch(location.href, { credentials: 'same-origin' });
      if (!response.ok) return;
      const doc = new DOMParser().parseFromString(await response.text(), 'text/html');
      const fresh = doc.querySelector('main');
      const main = document.querySelector('main');
      if (fresh && main) main.innerHTML = fresh.innerHTML;
      scan();
    } catch (_) { /* the next event or a reload will show it */ }
  }

  function watch(id) {
    if (watched.has(id)) return;
    const source = new EventSource('/api/v1/jobs/' + encodeURIComponent(id) + '/events');
    watched.set(id, source);
    source.addEventListener('job', (event) => {
      const job = JSON.parse(event.data);
      update(job);
      if (FINAL.includes(job.state)) {
        source.close();
        refreshMain().then(() => update(job));
      }
    });
    source.addEventListener('failure', (event) => {
      source.close();
      const data = JSON.parse(event.data || '{}');
      flash('job ' + id + ': ' + (data.error || 'cannot follow the job'));
    });
  }

  function scan() {
    document.querySelectorAll('[data-job]').forEach((el) => {
      if (!FINAL.includes(el.dataset.state)) watch(el.dataset.job);
    });
  }

  document.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-action]');
    if (button) openDialog(button.dataset.action, button);
  });
  document.addEventListener('DOMContentLoaded', scan);
  if (document.readyState !== 'loading') scan();
})();
