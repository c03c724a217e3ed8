// Switchyard's wrapper around the subscription's `transform` (see README.md). Evaluated before
// the user's source in every call; it defines the globals `skip` and `console`, and returns the
// function the plugin calls, which turns what `transform` returned into
// ["skip", reason] or ["deliver", body text, content type, [[name, value], ...]].
(() => {
  const SKIP = Symbol("skip");
  const REPLY_KEYS = ["body", "headers", "content_type"];
  const text = (v) => (typeof v === "string" ? v : JSON.stringify(v) ?? String(v));
  const log = globalThis.__switchyard_log;
  delete globalThis.__switchyard_log;
  globalThis.skip = (reason) => Object.freeze({ [SKIP]: String(reason) });
  globalThis.console = Object.freeze({
    debug: (...args) => log(1, args.map(text).join(" ")),
    log: (...args) => log(2, args.map(text).join(" ")),
    info: (...args) => log(2, args.map(text).join(" ")),
    warn: (...args) => log(3, args.map(text).join(" ")),
    error: (...args) => log(4, args.map(text).join(" ")),
  });
  const isReply = (out) =>
    typeof out === "object" && !Array.isArray(out) && Object.hasOwn(out, "body") &&
    Object.keys(out).every((k) => REPLY_KEYS.includes(k));
  return (transform, event, config) => {
    const out = transform(event, config);
    if (out === null || out === undefined) return ["skip", `transform returned ${out}`];
    if (typeof out === "object" && Object.hasOwn(out, SKIP)) return ["skip", out[SKIP]];
    let body = out;
    let type = null;
    const headers = [];
    if (isReply(out)) {
      body = out.body;
      if (body === null || body === undefined) return ["skip", `transform returned a ${body} body`];
      if (out.content_type !== undefined) {
        if (typeof out.content_type !== "string") throw new TypeError("content_type must be a string");
        type = out.content_type;
      }
      if (out.headers !== undefined) {
        if (typeof out.headers !== "object" || out.headers === null || Array.isArray(out.headers)) {
          throw new TypeError("headers must be an object of strings");
        }
        for (const [name, value] of Object.entries(out.headers)) {
          if (typeof value !== "string") throw new TypeError(`header ${name} must be a string`);
          headers.push([name, value]);
        }
      }
      if (typeof body === "string") return ["deliver", body, type ?? "text/plain; charset=utf-8", headers];
    }
    const json = JSON.stringify(body);
    if (json === undefined) throw new TypeError(`transform returned a ${typeof body}, which has no JSON form`);
    return ["deliver", json, type ?? "application/json", headers];
  };
})()
