// The web phone: draws each phone of `vphone serve` and drives it through the control API.
// Live from GET /events (Server-Sent Events), resuming by sequence number.
// Every number on the page comes from the API; nothing here measures or invents one.
// Text from the server is only ever set with textContent, never parsed as HTML.
'use strict';

/** Every event type the server sends (EventSource needs a listener per named type). */
const EVENT_TYPES = [
  'phone_created', 'phone_forgotten', 'sms_received', 'device_bound', 'key_added',
  'device_deleted', 'person_changed', 'flow_finished', 'policy_changed', 'challenge_pushed',
  'prompt_shown', 'approved', 'denied', 'answered', 'push_finished', 'events_lost',
];

/** Timeline entries kept per phone, so a long session does not grow the page forever. */
const TIMELINE_LIMIT = 60;

const FLOWS = {
  'bind': { method: 'POST', path: 'bind', body: {}, busy: 'Binding…', done: 'Bound' },
  'add-key': { method: 'POST', path: 'keys', body: {}, busy: 'Adding a key…', done: 'Key added' },
  'approve': { method: 'POST', path: 'approve', body: {}, busy: 'Asking the bank for a challenge…', done: 'Challenge answered' },
  'push': { method: 'POST', path: 'push', body: {}, busy: 'The bank pushes a challenge…', done: 'Challenge pushed' },
  'sms-challenge': { method: 'POST', path: 'sms-challenge', body: null, busy: 'Waiting for the SMS code…', done: 'SMS challenge answered' },
  'change': { method: 'POST', path: 'change', body: null, busy: 'Changing the e-mail…', done: 'Person changed' },
  'delete-device': { method: 'DELETE', path: 'device', body: null, busy: 'Deleting the device…', done: 'Device deleted' },
};

const app = {
  /** name -> {el, data, pending: [approval], busy, opener} */
  phones: new Map(),
  lastSeq: 0,
  /** Events up to this one happened before the page opened: no pop-ups for them. */
  replayUntil: 0,
  source: null,
  retry: 0,
  changes: 0,
};

/** An error the API answered in its documented shape. */
class ApiError extends Error {
  constructor(httpStatus, error) {
    super(error.message || `HTTP ${httpStatus}`);
    this.httpStatus = httpStatus;
    this.kind = error.kind;
    this.status = error.status;
    this.code = error.code;
    this.step = error.step;
  }
}

async function api(method, path, body) {
  const init = { method, headers: { accept: 'application/json' } };
  if (body !== undefined && body !== null) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (!resp.ok) {
    throw new ApiError(resp.status, (json && json.error) || { message: text || `HTTP ${resp.status}` });
  }
  return json;
}

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
};
const phonePath = (name) => `/phones/${encodeURIComponent(name)}`;
const short = (id) => (id && id.length > 14 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id || '');
const clock = (iso) => (typeof iso === 'string' && iso.length >= 19 ? iso.slice(11, 19) : '');
const ms = (v) => (typeof v === 'number' ? `${v} ms` : '');

function showProblem(text) {
  const p = $('#problem');
  p.textContent = text;
  p.hidden = !text;
}

// ---------------------------------------------------------------- phones

function phoneEl(name) {
  const found = app.phones.get(name);
  if (found) return found;
  const frag = $('#phone-template').content.cloneNode(true);
  const article = frag.querySelector('.phone');
  article.dataset.phone = name;
  const titleId = `phone-${name}-title`;
  $('.phone-name', article).id = titleId;
  $('.phone-name', article).textContent = name;
  article.setAttribute('aria-labelledby', titleId);
  const sheet = $('.sheet', article);
  sheet.id = `sheet-${name}`;
  $('.sheet-title', sheet).id = `sheet-${name}-title`;
  $('.sheet-reason', sheet).id = `sheet-${name}-reason`;
  sheet.setAttribute('aria-labelledby', `sheet-${name}-title`);
  sheet.setAttribute('aria-describedby', `sheet-${name}-reason`);
  $('.prompt-select', article).setAttribute('aria-label', `Biometric prompt of ${name}`);
  $('.fault-select', article).setAttribute('aria-label', `Device fault of ${name}`);
  $('.actions', article).setAttribute('aria-label', `Flows of ${name}`);
  $('.timeline', article).setAttribute('aria-label', `Timeline of ${name}`);
  const phone = { name, el: article, data: null, pending: [], busy: false, opener: null };
  wirePhone(phone);
  app.phones.set(name, phone);
  const list = $('#phones');
  // Keep phones in name order, as GET /phones lists them.
  const after = [...list.querySelectorAll('.phone')].find((p) => p.dataset.phone > name);
  list.insertBefore(frag, after || null);
  $('#empty').hidden = true;
  return phone;
}

function wirePhone(phone) {
  const a = phone.el;
  a.querySelectorAll('[data-flow]').forEach((b) => {
    b.addEventListener('click', () => runFlow(phone, b.dataset.flow));
  });
  $('.prompt-select', a).addEventListener('change', () => setPolicy(phone));
  $('.fault-select', a).addEventListener('change', () => setPolicy(phone));
  $('.notification-close', a).addEventListener('click', () => {
    $('.notification', a).hidden = true;
  });
  // Like a banner on a phone: it stays until dismissed or the phone is used.
  for (const type of ['pointerdown', 'focusin']) {
    $('.scroll', a).addEventListener(type, () => {
      $('.notification', a).hidden = true;
    });
  }
  const sheet = $('.sheet', a);
  $('.approve', sheet).addEventListener('click', () => decide(phone, 'approve'));
  $('.deny', sheet).addEventListener('click', () => decide(phone, 'deny'));
  sheet.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      // Dismissing a biometric sheet cancels it, as on a real phone: that is a denial.
      e.preventDefault();
      decide(phone, 'deny');
    } else if (e.key === 'Tab') {
      // Keep focus inside the sheet while it is open.
      const buttons = [...sheet.querySelectorAll('button:not([disabled])')];
      if (!buttons.length) return;
      const i = buttons.indexOf(document.activeElement);
      const next = e.shiftKey ? (i <= 0 ? buttons.length - 1 : i - 1) : (i + 1) % buttons.length;
      e.preventDefault();
      buttons[next].focus();
    }
  });
}

function removePhone(name) {
  const phone = app.phones.get(name);
  if (!phone) return;
  phone.el.remove();
  app.phones.delete(name);
  $('#empty').hidden = app.phones.size > 0;
}

/** Shows a phone as GET /phones/{name} (or an element of GET /phones) describes it. */
function renderPhone(phone, data) {
  phone.data = data;
  const a = phone.el;
  a.dataset.bound = data.bound ? 'true' : 'false';
  a.dataset.verified = data.number_verified ? 'true' : 'false';
  // Binding is the next step of a new phone; once bound, other flows matter more.
  $('[data-flow="bind"]', a).classList.toggle('primary', !data.bound);
  $('.phone-number', a).textContent = data.number || 'no number';
  const badge = $('.badge', a);
  if (data.bound) {
    badge.textContent = 'Device bound';
    badge.dataset.kind = 'ok';
  } else if (data.number_verified) {
    badge.textContent = 'Number verified · not bound';
    badge.dataset.kind = 'idle';
  } else {
    badge.textContent = 'Setting up';
    badge.dataset.kind = 'idle';
  }
  const dev = $('.device-id', a);
  dev.textContent = data.device_id ? short(data.device_id) : 'not bound';
  dev.title = data.device_id || '';
  const person = $('.person-id', a);
  person.textContent = data.person_id ? short(data.person_id) : '—';
  person.title = data.person_id || '';
  const keys = $('.keys', a);
  keys.replaceChildren();
  for (const k of data.keys || []) {
    const li = el('li', 'key');
    li.dataset.purpose = k.purpose;
    li.append(el('span', 'key-purpose', k.purpose));
    const fp = el('code', 'key-fp', short(k.fingerprint));
    fp.title = `public key fingerprint ${k.fingerprint}`;
    const right = el('span', 'key-right');
    right.append(fp);
    const id = k.pending ? 'pending at the bank' : (k.key_id ? `key id ${short(k.key_id)}` : '');
    if (id) right.append(el('span', 'key-id', id));
    li.append(right);
    keys.append(li);
  }
  if (!keys.children.length) keys.append(el('li', 'key none', 'No keys yet'));
  if (data.policy) renderPolicy(phone, data.policy);
}

function renderPolicy(phone, policy) {
  const a = phone.el;
  for (const [cls, value] of [['.prompt-select', policy.prompt], ['.fault-select', policy.fault]]) {
    const select = $(cls, a);
    if (value && ![...select.options].some((o) => o.value === value)) {
      select.append(el('option', null, value));
      select.lastChild.value = value;
    }
    if (value) select.value = value;
  }
  a.dataset.prompt = policy.prompt || '';
  a.dataset.fault = policy.fault || '';
}

async function refresh(name) {
  try {
    const data = await api('GET', phonePath(name));
    renderPhone(phoneEl(name), data);
  } catch (e) {
    if (e.httpStatus === 404) removePhone(name);
  }
}

async function loadApprovals(phone) {
  try {
    const list = await api('GET', `${phonePath(phone.name)}/approvals`);
    for (const approval of list) addApproval(phone, approval);
  } catch (_) { /* the phone went away; its events will say so */ }
}

// ---------------------------------------------------------------- flows and policy

function setBusy(phone, busy, text) {
  phone.busy = busy;
  phone.el.dataset.busy = busy ? 'true' : 'false';
  phone.el.querySelectorAll('[data-flow]').forEach((b) => { b.disabled = busy; });
  if (text !== undefined) $('.flow-status', phone.el).textContent = text;
}

function describeError(e) {
  const parts = [e.message];
  if (e.status) parts.push(`bank answered ${e.status}${e.code ? ` ${e.code}` : ''}`);
  return parts.join(' — ');
}

async function runFlow(phone, flow) {
  const spec = FLOWS[flow];
  if (!spec || phone.busy) return;
  let body = spec.body;
  if (flow === 'change') {
    app.changes += 1;
    body = { via: 'device', email: `${phone.name}.${app.changes}@example.com` };
  }
  setBusy(phone, true, spec.busy);
  try {
    const out = await api(spec.method, `${phonePath(phone.name)}/${spec.path}`, body);
    const total = out && typeof out.total_ms === 'number' ? ` in ${out.total_ms} ms` : '';
    setBusy(phone, false, `${spec.done}${total}.`);
  } catch (e) {
    setBusy(phone, false, `Failed: ${describeError(e)}`);
  }
  refresh(phone.name);
}

async function setPolicy(phone) {
  const a = phone.el;
  const body = { prompt: $('.prompt-select', a).value, fault: $('.fault-select', a).value };
  try {
    renderPolicy(phone, await api('PUT', `${phonePath(phone.name)}/policy`, body));
    $('.flow-status', a).textContent = `Prompt: ${body.prompt}; fault: ${body.fault}.`;
  } catch (e) {
    $('.flow-status', a).textContent = `Policy not changed: ${describeError(e)}`;
  }
}

async function createPhone(ev) {
  ev.preventDefault();
  const input = $('#create-name');
  const name = input.value.trim();
  const status = $('#create-status');
  if (!input.checkValidity() || !name) {
    status.textContent = 'Name the phone with letters, digits, - or _ (up to 64).';
    input.focus();
    return;
  }
  const button = $('#create-button');
  button.disabled = true;
  status.textContent = `Creating ${name}: a new person, a number verified by SMS…`;
  try {
    const out = await api('POST', '/phones', { name });
    const phone = phoneEl(out.phone.name);
    renderPhone(phone, out.phone);
    refresh(out.phone.name);
    status.textContent = `Created ${out.phone.name} (${out.phone.number || 'no number'}).`;
    input.value = '';
    $('[data-flow="bind"]', phone.el).focus();
    $('#create').dataset.created = out.phone.name;
  } catch (e) {
    status.textContent = `Not created: ${describeError(e)}`;
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- the approval sheet

function addApproval(phone, approval) {
  if (!approval || phone.pending.some((p) => p.id === approval.id)) return;
  phone.pending.push(approval);
  renderSheet(phone);
}

function dropApproval(phone, id) {
  const before = phone.pending.length;
  phone.pending = phone.pending.filter((p) => p.id !== id);
  if (phone.pending.length !== before) renderSheet(phone);
}

/** The rest of the phone's screen, made inert while the sheet is open. */
function behindSheet(phone) {
  return [...$('.screen', phone.el).children].filter(
    (c) => !c.classList.contains('sheet') && !c.classList.contains('scrim')
      && !c.classList.contains('notification'),
  );
}

function renderSheet(phone) {
  const a = phone.el;
  const sheet = $('.sheet', a);
  const scrim = $('.scrim', a);
  const first = phone.pending[0];
  a.dataset.pending = String(phone.pending.length);
  if (!first) {
    if (sheet.hidden) return;
    // Deciding disables the sheet's buttons, which drops their focus to the body.
    const active = document.activeElement;
    const hadFocus = !active || active === document.body || sheet.contains(active);
    sheet.hidden = true;
    scrim.hidden = true;
    delete sheet.dataset.approval;
    delete sheet.dataset.challenge;
    behindSheet(phone).forEach((c) => { c.inert = false; });
    if (hadFocus) {
      const back = phone.opener && document.contains(phone.opener) && !phone.opener.disabled
        ? phone.opener : $('.actions button', a);
      back.focus();
    }
    phone.opener = null;
    return;
  }
  const wasHidden = sheet.hidden;
  sheet.dataset.approval = String(first.id);
  sheet.dataset.challenge = first.challenge_id || '';
  const isPayment = first.key_purpose === 'restricted';
  $('.sheet-icon', sheet).dataset.kind = isPayment ? 'payment' : 'login';
  $('.sheet-reason', sheet).textContent = first.challenge_id
    ? `${a.dataset.phone}'s bank asks this phone to sign challenge ${short(first.challenge_id)} with its ${first.key_purpose} key.`
    : first.reason;
  const more = phone.pending.length > 1 ? ` · ${phone.pending.length - 1} more waiting` : '';
  $('.sheet-meta', sheet).textContent = `Asked at ${clock(first.shown_at)} UTC${more}`;
  sheet.querySelectorAll('button').forEach((b) => { b.disabled = false; });
  if (wasHidden) {
    const active = document.activeElement;
    phone.opener = active && active !== document.body ? active : null;
    behindSheet(phone).forEach((c) => { c.inert = true; });
    scrim.hidden = false;
    sheet.hidden = false;
  }
  // Move focus to the sheet when nothing else is being typed into.
  const active = document.activeElement;
  const typing = active && active.matches && active.matches('input, select, textarea') && !a.contains(active);
  if (!typing && !sheet.contains(active)) $('.approve', sheet).focus();
}

async function decide(phone, decision) {
  const sheet = $('.sheet', phone.el);
  const id = Number(sheet.dataset.approval);
  if (!id && id !== 0) return;
  sheet.querySelectorAll('button').forEach((b) => { b.disabled = true; });
  try {
    await api('POST', `${phonePath(phone.name)}/approvals/${id}/${decision}`);
    $('.flow-status', phone.el).textContent = decision === 'approve' ? 'Approved with biometrics.' : 'Denied.';
  } catch (e) {
    $('.flow-status', phone.el).textContent = `Could not ${decision}: ${describeError(e)}`;
  }
  // Decided, timed out or unknown: either way this sheet is done.
  dropApproval(phone, id);
}

// ---------------------------------------------------------------- the timeline

/** One timeline line: who spoke (phone → bank, bank → phone, or the phone itself). */
function entry(ev, dir, text, nums, extra) {
  const li = el('li', `entry dir-${dir}`);
  li.dataset.event = ev.type;
  li.dataset.seq = String(ev.seq);
  const meta = el('div', 'meta');
  const who = { out: 'phone → bank', in: 'bank → phone', flow: 'phone ⇄ bank', self: 'on the phone', sms: 'SMS' }[dir];
  meta.append(el('span', 'who', who));
  const t = el('time', 'when', clock(ev.at));
  t.dateTime = ev.at;
  meta.append(t);
  li.append(meta);
  li.append(el('span', 'what', text));
  if (nums) li.append(el('span', 'nums', nums));
  if (extra) li.append(extra);
  return li;
}

function stepsList(outcome) {
  const steps = outcome && outcome.timings && outcome.timings.steps;
  if (!Array.isArray(steps) || !steps.length) return null;
  const details = el('details', 'steps');
  // Steps, not requests: signing and waiting for an SMS are steps too, and one step may
  // send a request more than once (retries).
  details.append(el('summary', null, `${steps.length} step${steps.length === 1 ? '' : 's'}`));
  const ol = el('ol');
  for (const s of steps) {
    const li = el('li');
    li.append(el('span', 'step', s.step), el('span', 'nums', ms(s.ms)));
    ol.append(li);
  }
  details.append(ol);
  return details;
}

function timelineEntry(ev) {
  const d = ev.data || {};
  switch (ev.type) {
    case 'phone_created':
      return entry(ev, 'self', `Phone created · ${(d.phone && d.phone.number) || ''} verified`, null, stepsList(d.outcome));
    case 'sms_received':
      return entry(ev, 'sms', `SMS to ${d.number}: ${d.text}`);
    case 'device_bound':
      return entry(ev, 'in', `Device bound (${d.key_purpose} key)`, short(d.device_id));
    case 'key_added':
      return entry(ev, 'in', `Key added (${d.key_purpose})`, short(d.key_id));
    case 'device_deleted':
      return entry(ev, 'in', d.already_deleted ? 'Device was already deleted' : 'Device deleted', short(d.device_id));
    case 'person_changed':
      return entry(ev, 'in', `Person changed, confirmed by ${d.delivery_method}`);
    case 'flow_finished': {
      if (d.ok) return entry(ev, 'flow', `${d.flow} done`, `total ${ms(d.total_ms)}`, stepsList(d.outcome));
      const err = d.error || {};
      const status = err.status ? `${err.status}${err.code ? ` ${err.code}` : ''}` : '';
      const li = entry(ev, 'flow', `${d.flow} failed${err.step ? ` at ${err.step}` : ''}: ${err.message || ''}`, status);
      li.classList.add('bad');
      return li;
    }
    case 'policy_changed':
      return entry(ev, 'self', `Prompt ${d.policy && d.policy.prompt}, fault ${d.policy && d.policy.fault}`);
    case 'challenge_pushed':
      return entry(ev, 'in', `Bank pushed challenge ${short(d.challenge_id)} (${d.key_purpose} key)`);
    case 'prompt_shown':
      return entry(ev, 'self', `Biometric prompt shown (${d.mode})`);
    case 'approved':
      return entry(ev, 'self', `Approved (by ${d.by})`);
    case 'denied': {
      const li = entry(ev, 'self', `Denied (by ${d.by})`);
      li.classList.add('bad');
      return li;
    }
    case 'answered': {
      const ans = d.answer || {};
      const sent = `Sent ${String(ans.sent || 'signature').replace('_', ' ')} for ${short(d.challenge_id)}${ans.attempt > 1 ? ` (attempt ${ans.attempt})` : ''}`;
      const reply = ans.ok ? 'bank accepted' : `bank refused${ans.status ? ` ${ans.status}` : ''}${ans.code ? ` ${ans.code}` : ''}`;
      const li = entry(ev, 'out', sent, `${reply} · ${ms(ans.ms)}`);
      li.dataset.ok = ans.ok ? 'true' : 'false';
      if (!ans.ok) li.classList.add('bad');
      return li;
    }
    case 'push_finished': {
      const e = d.error || {};
      const status = e.status ? `bank answered ${e.status}${e.code ? ` ${e.code}` : ''}` : null;
      const li = entry(ev, 'self', `Push ${d.push_id}: ${String(d.outcome).replace('_', ' ')}`, status);
      li.dataset.outcome = d.outcome;
      li.dataset.challenge = d.challenge_id;
      if (d.outcome !== 'answered') li.classList.add('bad');
      return li;
    }
    default:
      return null;
  }
}

function addToTimeline(phone, ev) {
  const li = timelineEntry(ev);
  if (!li) return;
  const list = $('.timeline', phone.el);
  list.prepend(li);
  while (list.children.length > TIMELINE_LIMIT) list.lastChild.remove();
}

// ---------------------------------------------------------------- events

function notify(phone, ev) {
  const a = phone.el;
  const n = $('.notification', a);
  $('.notification-text', n).textContent = ev.data.text;
  $('.notification-when', n).textContent = clock(ev.at);
  n.dataset.seq = String(ev.seq);
  n.dataset.sms = String(ev.data.seq);
  n.hidden = false;
  // Restart the slide-in animation for a new message.
  n.classList.remove('arrived');
  void n.offsetWidth;
  n.classList.add('arrived');
}

function ownersOf(ev) {
  if (ev.phone) return [ev.phone];
  // An SMS to a number no phone owns yet (e.g. while a phone is being created).
  if (ev.type === 'sms_received') {
    return [...app.phones.values()].filter((p) => p.data && p.data.number === ev.data.number).map((p) => p.name);
  }
  return [];
}

function handle(ev) {
  if (typeof ev.seq !== 'number' || ev.seq <= app.lastSeq) return;
  app.lastSeq = ev.seq;
  $('#seq').textContent = `#${ev.seq}`;
  const live = ev.seq > app.replayUntil;
  if (ev.type === 'events_lost') {
    showProblem(`Events ${ev.data.first_lost}–${ev.data.last_lost} were dropped by the server's buffer; the timelines miss them.`);
    return;
  }
  for (const name of ownersOf(ev)) {
    if (ev.type === 'phone_forgotten') {
      removePhone(name);
      continue;
    }
    const known = app.phones.has(name);
    const phone = phoneEl(name);
    if (!known) refresh(name);
    addToTimeline(phone, ev);
    const d = ev.data || {};
    switch (ev.type) {
      case 'sms_received':
        if (live) notify(phone, ev);
        break;
      case 'phone_created':
      case 'device_bound':
      case 'key_added':
      case 'device_deleted':
      case 'person_changed':
        if (live) refresh(name);
        break;
      case 'policy_changed':
        if (d.policy) renderPolicy(phone, d.policy);
        break;
      case 'prompt_shown':
        if (d.mode === 'manual') addApproval(phone, d.approval);
        break;
      case 'approved':
      case 'denied':
        dropApproval(phone, d.approval_id);
        break;
      default:
        break;
    }
  }
}

function setLive(state, text) {
  const live = $('#live');
  live.dataset.state = state;
  live.textContent = text;
}

function connect() {
  if (app.source) app.source.close();
  // After a reconnect of its own, EventSource sends Last-Event-ID, which the server prefers;
  // `after` covers a fresh connection made here.
  const source = new EventSource(`/events?after=${app.lastSeq}`);
  app.source = source;
  source.onopen = () => {
    app.retry = 0;
    setLive('live', 'live');
  };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. the server answered an error): try again, backing off.
      setLive('down', 'disconnected');
      app.retry = Math.min(app.retry + 1, 6);
      setTimeout(connect, 500 * 2 ** app.retry);
    } else {
      setLive('connecting', 'reconnecting');
    }
  };
  for (const type of EVENT_TYPES) {
    source.addEventListener(type, (msg) => {
      try { handle(JSON.parse(msg.data)); } catch (e) { console.error('bad event', e); }
    });
  }
}

async function start() {
  $('#create').addEventListener('submit', createPhone);
  let info;
  try {
    info = await api('GET', '/info');
  } catch (e) {
    if (e.httpStatus === 401) {
      showProblem('This server requires a bearer token (--token-file). Browsers cannot add it to the page\'s requests; the web phone works with a loopback `vphone serve` started without a token.');
    } else {
      showProblem(`Cannot reach the control API: ${describeError(e)}`);
    }
    setLive('down', 'offline');
    return;
  }
  $('#bank').textContent = info.embedded_sandbox ? `embedded sandbox at ${info.api_base}` : info.api_base;
  app.replayUntil = info.last_event_seq || 0;
  try {
    const list = await api('GET', '/phones');
    for (const p of list) renderPhone(phoneEl(p.name), p);
    for (const p of list) {
      refresh(p.name);
      loadApprovals(app.phones.get(p.name));
    }
  } catch (e) {
    showProblem(`Cannot list the phones: ${describeError(e)}`);
  }
  // Replays the buffered events (the timelines' history), then stays live.
  connect();
}

document.addEventListener('DOMContentLoaded', start);
