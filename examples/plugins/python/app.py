"""Example Switchyard plugin in Python: a Slack-style formatter with a skip rule and a config
check. The Rust (examples/plugins/rust) and JavaScript (examples/plugins/js) examples do
exactly the same, byte for byte; tests/conformance holds the cases all of them pass. The guide
is docs/plugins/python.md.

componentize-py generates the `wit_world` package from the WIT at build time: the exports are
a class per interface, `Err(...)` is an `err` result, variants are classes (`Outcome_Skip`).
"""

import json
import re
from datetime import datetime, timezone

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

KEYS = ["title", "text", "fields", "skip_types"]
MAX_FIELDS = 20


class Transform(exports.Transform):
    def transform(self, event: types.Event, config: str) -> types.Outcome:
        cfg = parse_config(config)
        pattern = next((p for p in cfg["skip_types"] if type_matches(p, event.event_type)), None)
        if pattern is not None:
            return types.Outcome_Skip(
                f"event type `{event.event_type}` matches skip_types entry `{pattern}`"
            )
        envelope = {
            "id": event.id,
            "type": event.event_type,
            "timestamp": rfc3339(event.timestamp),
            "data": json.loads(event.payload),
        }
        title_template = cfg.get("title", "{{type}}")
        title = render(title_template, envelope, lambda v: v)
        text = render(cfg["text"], envelope, escape) if "text" in cfg else ""
        blocks = []
        if title.strip():
            blocks.append({"type": "header", "text": {"type": "plain_text", "text": truncate(title, 150), "emoji": True}})
        if text.strip():
            blocks.append({"type": "section", "text": mrkdwn(text, 3000)})
        all_fields = fields(envelope, cfg.get("fields"))
        for i in range(0, len(all_fields), 10):
            blocks.append({"type": "section", "fields": all_fields[i : i + 10]})
        context = f"`{escape(event.event_type)}` · {escape(event.id)} · {rfc3339(event.timestamp)}"
        blocks.append({"type": "context", "elements": [mrkdwn(context, 3000)]})
        parts = [p for p in (render(title_template, envelope, escape), text) if p.strip()]
        fallback = "\n".join(parts) if parts else escape(event.event_type)
        host.log(host.Level.INFO, f"formatted {event.id} as {len(blocks)} blocks")
        body = compact({"text": truncate_mrkdwn(fallback, 4000), "blocks": blocks})
        return types.Outcome_Deliver(types.Delivery(body.encode(), "application/json", []))

    def validate_config(self, config: str) -> None:
        parse_config(config)


def parse_config(text: str) -> dict:
    """The config, checked: first the types (as serde does in the Rust example), then the
    contents. Every problem is an `Err` naming the key."""
    cfg = json.loads(text)
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise Err("invalid plugin config: expected an object")
    for key in cfg:
        if key not in KEYS:
            expected = ", ".join(f"`{k}`" for k in KEYS)
            raise Err(f"invalid plugin config: unknown field `{key}`, expected one of {expected}")
    for key in ("title", "text", "fields"):
        if key in cfg and cfg[key] is None:
            del cfg[key]
    for key in ("title", "text"):
        if key in cfg and not isinstance(cfg[key], str):
            raise Err(f"invalid plugin config: `{key}` must be a string")
    if "fields" in cfg and not strings(cfg["fields"]):
        raise Err("invalid plugin config: `fields` must be an array of strings")
    cfg.setdefault("skip_types", [])
    if not strings(cfg["skip_types"]):
        raise Err("invalid plugin config: `skip_types` must be an array of strings")
    check_template("title", cfg.get("title", "{{type}}"))
    if "text" in cfg:
        check_template("text", cfg["text"])
    paths = cfg.get("fields", [])
    if len(paths) > MAX_FIELDS:
        raise Err(f"`fields` lists {len(paths)} paths; at most {MAX_FIELDS}")
    for path in paths:
        why = path_problem(path)
        if why:
            raise Err(f"path `{path}` in `fields` {why}")
    if "" in cfg["skip_types"]:
        raise Err("`skip_types` has an empty entry")
    return cfg


def strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def type_matches(pattern: str, event_type: str) -> bool:
    """`post.draft*` covers `post.draft.saved`; anything else must be equal."""
    if pattern.endswith("*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def parse_template(template: str) -> list:
    """A template's pieces: text (str), and `{{path}}` placeholders (a 1-tuple)."""
    pieces = []
    rest = template
    while (start := rest.find("{{")) >= 0:
        end = rest.find("}}", start + 2)
        if end < 0:
            raise ValueError("has an unclosed `{{` (placeholders look like `{{data.title}}`)")
        path = rest[start + 2 : end].strip()
        why = path_problem(path)
        if why:
            raise ValueError(f"has a placeholder `{{{{{path}}}}}` that {why}")
        pieces += [rest[:start], (path,)]
        rest = rest[end + 2 :]
    pieces.append(rest)
    return pieces


def check_template(key: str, template: str) -> None:
    try:
        parse_template(template)
    except ValueError as why:
        raise Err(f"`{key}` {why}") from None


def render(template: str, envelope: dict, escape_value) -> str:
    try:
        pieces = parse_template(template)
    except ValueError as why:
        raise Err(f"template {why}") from None
    out = []
    for piece in pieces:
        if isinstance(piece, tuple):
            found, value = lookup(envelope, piece[0])
            out.append(escape_value(value_text(value) if found else ""))
        else:
            out.append(piece)
    return "".join(out)


def path_problem(path: str):
    if path == "":
        return "is empty"
    if "" in path.split("."):
        return "has an empty segment"
    return None


INDEX = re.compile(r"\+?[0-9]+")


def lookup(root, path: str):
    """(found, value) at a dotted path (`data.items.0.sku`)."""
    value = root
    for segment in path.split("."):
        if isinstance(value, list):
            if not INDEX.fullmatch(segment) or int(segment) >= len(value):
                return False, None
            value = value[int(segment)]
        elif isinstance(value, dict):
            if segment not in value:
                return False, None
            value = value[segment]
        else:
            return False, None
    return True, value


def fields(envelope: dict, paths) -> list:
    if paths is not None:
        pairs = []
        for path in paths:
            found, value = lookup(envelope, path)
            if found:
                pairs.append((path.split(".")[-1], value))
    elif isinstance(envelope["data"], dict):
        data = envelope["data"]
        keys = [k for k in sorted(data) if k != "" and is_scalar(data[k])][:10]
        pairs = [(k, data[k]) for k in keys]
    else:
        pairs = []
    out = []
    for label, value in pairs:
        text = value_text(value)
        out.append(mrkdwn(f"*{escape(label)}*\n{escape(text if text.strip() else '—')}", 2000))
    return out


def is_scalar(value) -> bool:
    return isinstance(value, (str, bool, int, float))


def value_text(value) -> str:
    """Strings as they are, anything else as compact JSON with keys in code-point order."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def mrkdwn(text: str, limit: int) -> dict:
    return {"type": "mrkdwn", "text": truncate_mrkdwn(text, limit)}


def escape(text: str) -> str:
    """The three characters Slack treats as markup (`&` first)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    """At most `limit` characters (code points), ending in `…` when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + "…"


ENTITY_TAIL = re.compile(r"[A-Za-z0-9#]*")


def truncate_mrkdwn(text: str, limit: int) -> str:
    """`truncate` that never leaves half an entity (`&am…`)."""
    cut = truncate(text, limit)
    if cut == text:
        return cut
    kept = cut[:-1]
    amp = kept.rfind("&")
    if amp < 0:
        return cut
    tail = kept[amp + 1 :]
    return kept[:amp] + "…" if len(tail) < 8 and ENTITY_TAIL.fullmatch(tail) else cut


def rfc3339(seconds: int) -> str:
    """Unix seconds as `2026-11-23T15:04:05Z`."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
