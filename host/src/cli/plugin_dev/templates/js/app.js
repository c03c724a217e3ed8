// {{name}}: a Switchyard plugin. It turns each event into a small JSON message and skips the
// event types listed in its config, e.g. {"prefix": "New", "skip_types": ["post.draft"]}.
//
// Build: `switchyard plugins build` (or `npm install && npm run build`).
// Try it on a server: `switchyard plugins dev`. Test it without one: `switchyard plugins test`.
//
// The exports of the `transform` interface: an `err` result is a thrown string, an `outcome`
// is `{ tag: 'deliver' | 'skip', val }`, record fields are camelCase (`eventType`).
import { log } from 'switchyard:plugin/host@0.1.0';

function parseConfig(text) {
  const config = JSON.parse(text) ?? {};
  if (typeof config !== 'object' || Array.isArray(config)) {
    throw 'the config must be a JSON object';
  }
  for (const key of Object.keys(config)) {
    if (key !== 'prefix' && key !== 'skip_types') {
      throw `unknown config key \`${key}\``;
    }
  }
  const skipTypes = config.skip_types ?? [];
  if (!Array.isArray(skipTypes) || skipTypes.some((t) => typeof t !== 'string' || t === '')) {
    throw 'skip_types must be a list of non-empty strings';
  }
  return { prefix: config.prefix, skipTypes };
}

export const transform = {
  transform(event, configText) {
    const config = parseConfig(configText);
    if (config.skipTypes.includes(event.eventType)) {
      return { tag: 'skip', val: `event type \`${event.eventType}\` is skipped` };
    }
    const data = JSON.parse(event.payload);
    const title = typeof data?.title === 'string' ? data.title : '(untitled)';
    const head = config.prefix === undefined ? event.eventType : `${config.prefix} ${event.eventType}`;
    log('info', `formatting ${event.id}`);
    const body = utf8(JSON.stringify({ text: `${head}: ${title}` }));
    return { tag: 'deliver', val: { body, contentType: 'application/json', headers: [] } };
  },

  validateConfig(configText) {
    parseConfig(configText);
  },
};

// UTF-8 bytes of a string: QuickJS (componentize-qjs) has no TextEncoder, StarlingMonkey
// (componentize-js) has.
const utf8 = (s) => (typeof TextEncoder === 'function'
  ? new TextEncoder().encode(s)
  : Uint8Array.from(unescape(encodeURIComponent(s)), (c) => c.charCodeAt(0)));
