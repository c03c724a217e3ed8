// Example Switchyard plugin in JavaScript: a Slack-style formatter with a skip rule and a
// config check. The Rust (examples/plugins/rust) and Python (examples/plugins/python)
// examples do exactly the same, byte for byte; tests/conformance holds the cases all of them
// pass. The guide is docs/plugins/js.md.
//
// It runs on both JavaScript engines that build components: StarlingMonkey (componentize-js,
// `npm run build`) and QuickJS (componentize-qjs, `npm run build:qjs`). QuickJS has no
// TextEncoder, hence the `utf8` helper below.
import { log } from 'switchyard:plugin/host@0.1.0';

const KEYS = ['title', 'text', 'fields', 'skip_types'];
const MAX_FIELDS = 20;

// The exports of the `transform` interface. An `err` result is a thrown string; an
// `outcome` variant is `{ tag, val }`; record fields are camelCase (`eventType`).
export const transform = {
  transform(event, configText) {
    const config = parseConfig(configText);
    const pattern = config.skip_types.find((p) => typeMatches(p, event.eventType));
    if (pattern !== undefined) {
      return { tag: 'skip', val: `event type \`${event.eventType}\` matches skip_types entry \`${pattern}\`` };
    }
    const envelope = {
      id: event.id,
      type: event.eventType,
      timestamp: rfc3339(event.timestamp),
      data: JSON.parse(event.payload),
    };
    const titleTemplate = config.title ?? '{{type}}';
    const title = render(titleTemplate, envelope, (v) => v);
    const text = config.text === undefined ? '' : render(config.text, envelope, escape);
    const blocks = [];
    if (title.trim() !== '') {
      blocks.push({ type: 'header', text: { type: 'plain_text', text: truncate(title, 150), emoji: true } });
    }
    if (text.trim() !== '') {
      blocks.push({ type: 'section', text: mrkdwn(text, 3000) });
    }
    const all = fields(envelope, config.fields);
    for (let i = 0; i < all.length; i += 10) {
      blocks.push({ type: 'section', fields: all.slice(i, i + 10) });
    }
    const context = `\`${escape(event.eventType)}\` · ${escape(event.id)} · ${rfc3339(event.timestamp)}`;
    blocks.push({ type: 'context', elements: [mrkdwn(context, 3000)] });
    const parts = [render(titleTemplate, envelope, escape), text].filter((p) => p.trim() !== '');
    const fallback = parts.length === 0 ? escape(event.eventType) : parts.join('\n');
    log('info', `formatted ${event.id} as ${blocks.length} blocks`);
    const body = JSON.stringify({ text: truncateMrkdwn(fallback, 4000), blocks });
    return { tag: 'deliver', val: { body: utf8(body), contentType: 'application/json', headers: [] } };
  },

  validateConfig(configText) {
    parseConfig(configText);
  },
};

// The config, checked: first the types (as serde does in the Rust example), then the
// contents. Every problem is an `err` naming the key.
function parseConfig(configText) {
  const config = JSON.parse(configText) ?? {};
  if (typeof config !== 'object' || Array.isArray(config)) {
    throw 'invalid plugin config: expected an object';
  }
  for (const key of Object.keys(config)) {
    if (!KEYS.includes(key)) {
      throw `invalid plugin config: unknown field \`${key}\`, expected one of ${KEYS.map((k) => `\`${k}\``).join(', ')}`;
    }
  }
  const strings = (v) => Array.isArray(v) && v.every((p) => typeof p === 'string');
  for (const key of ['title', 'text', 'fields']) {
    if (config[key] === null) delete config[key];
  }
  for (const key of ['title', 'text']) {
    if (config[key] !== undefined && typeof config[key] !== 'string') {
      throw `invalid plugin config: \`${key}\` must be a string`;
    }
  }
  if (config.fields !== undefined && !strings(config.fields)) {
    throw 'invalid plugin config: `fields` must be an array of strings';
  }
  if (config.skip_types === undefined) config.skip_types = [];
  if (!strings(config.skip_types)) {
    throw 'invalid plugin config: `skip_types` must be an array of strings';
  }
  checkTemplate('title', config.title ?? '{{type}}');
  if (config.text !== undefined) checkTemplate('text', config.text);
  const paths = config.fields ?? [];
  if (paths.length > MAX_FIELDS) {
    throw `\`fields\` lists ${paths.length} paths; at most ${MAX_FIELDS}`;
  }
  for (const path of paths) {
    const why = pathProblem(path);
    if (why) throw `path \`${path}\` in \`fields\` ${why}`;
  }
  if (config.skip_types.includes('')) throw '`skip_types` has an empty entry';
  return config;
}

// `post.draft*` covers `post.draft.saved`; anything else must be equal.
function typeMatches(pattern, eventType) {
  return pattern.endsWith('*') ? eventType.startsWith(pattern.slice(0, -1)) : pattern === eventType;
}

// A template's pieces: text, and `{{path}}` placeholders (spaces inside allowed).
function parseTemplate(template) {
  const pieces = [];
  let rest = template;
  for (;;) {
    const open = rest.indexOf('{{');
    if (open < 0) break;
    const close = rest.indexOf('}}', open + 2);
    if (close < 0) throw 'has an unclosed `{{` (placeholders look like `{{data.title}}`)';
    const path = rest.slice(open + 2, close).trim();
    const why = pathProblem(path);
    if (why) throw `has a placeholder \`{{${path}}}\` that ${why}`;
    pieces.push({ text: rest.slice(0, open) }, { path });
    rest = rest.slice(close + 2);
  }
  pieces.push({ text: rest });
  return pieces;
}

function checkTemplate(key, template) {
  try {
    parseTemplate(template);
  } catch (why) {
    throw `\`${key}\` ${why}`;
  }
}

function render(template, envelope, escapeValue) {
  let pieces;
  try {
    pieces = parseTemplate(template);
  } catch (why) {
    throw `template ${why}`;
  }
  return pieces
    .map((p) => (p.path === undefined ? p.text : escapeValue(valueText(lookup(envelope, p.path)) ?? '')))
    .join('');
}

function pathProblem(path) {
  if (path === '') return 'is empty';
  if (path.split('.').some((s) => s === '')) return 'has an empty segment';
  return null;
}

// The value at a dotted path (`data.items.0.sku`), or undefined.
function lookup(root, path) {
  let value = root;
  for (const segment of path.split('.')) {
    if (Array.isArray(value)) {
      if (!/^\+?[0-9]+$/.test(segment)) return undefined;
      value = value[Number(segment)];
    } else if (value !== null && typeof value === 'object') {
      value = Object.prototype.hasOwnProperty.call(value, segment) ? value[segment] : undefined;
    } else {
      return undefined;
    }
    if (value === undefined) return undefined;
  }
  return value;
}

function fields(envelope, paths) {
  let pairs;
  if (paths !== undefined) {
    pairs = paths
      .map((p) => [p.split('.').pop(), lookup(envelope, p)])
      .filter(([, value]) => value !== undefined);
  } else {
    const data = envelope.data;
    pairs = data !== null && typeof data === 'object' && !Array.isArray(data)
      ? Object.keys(data).sort(byCodePoint)
        .filter((key) => key !== '' && isScalar(data[key]))
        .slice(0, 10)
        .map((key) => [key, data[key]])
      : [];
  }
  return pairs.map(([label, value]) => {
    const text = valueText(value);
    return mrkdwn(`*${escape(label)}*\n${escape(text.trim() === '' ? '—' : text)}`, 2000);
  });
}

const isScalar = (v) => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';

// Strings as they are, anything else as compact JSON with keys in code-point order.
function valueText(value) {
  if (value === undefined) return undefined;
  return typeof value === 'string' ? value : canonicalJson(value);
}

function canonicalJson(value) {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort(byCodePoint);
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

// Sorts by code point (as Rust and Python compare strings), not by UTF-16 unit.
function byCodePoint(a, b) {
  const x = Array.from(a);
  const y = Array.from(b);
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

const mrkdwn = (text, max) => ({ type: 'mrkdwn', text: truncateMrkdwn(text, max) });

// The three characters Slack treats as markup (`&` first).
const escape = (text) => text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

// At most `max` characters (code points), ending in `…` when cut.
function truncate(text, max) {
  const chars = Array.from(text);
  if (chars.length <= max) return text;
  return `${chars.slice(0, Math.max(max - 1, 0)).join('')}…`;
}

// `truncate` that never leaves half an entity (`&am…`).
function truncateMrkdwn(text, max) {
  const cut = truncate(text, max);
  if (cut === text) return cut;
  const kept = cut.slice(0, -1);
  const amp = kept.lastIndexOf('&');
  if (amp < 0) return cut;
  const tail = kept.slice(amp + 1);
  return tail.length < 8 && /^[A-Za-z0-9#]*$/.test(tail) ? `${kept.slice(0, amp)}…` : cut;
}

// Unix seconds as `2026-11-23T15:04:05Z`.
const rfc3339 = (seconds) => new Date(Number(seconds) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

// UTF-8 bytes of a string (QuickJS has no TextEncoder; StarlingMonkey has).
const utf8 = (s) => (typeof TextEncoder === 'function'
  ? new TextEncoder().encode(s)
  : Uint8Array.from(unescape(encodeURIComponent(s)), (c) => c.charCodeAt(0)));
