"""{{name}}: a Switchyard plugin. It turns each event into a small JSON message and skips the
event types listed in its config, e.g. {"prefix": "New", "skip_types": ["post.draft"]}.

Build: `switchyard plugins build` (or `componentize-py -d wit -w transformer componentize app
-o plugin.wasm`). Try it on a server: `switchyard plugins dev`. Test it without one:
`switchyard plugins test`.

componentize-py generates the `wit_world` package from the WIT at build time: the exports are a
class per interface, `Err(...)` is an `err` result, variants are classes (`Outcome_Skip`).
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types


def parse_config(text: str) -> dict:
    config = json.loads(text)
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise Err("the config must be a JSON object")
    for key in config:
        if key not in ("prefix", "skip_types"):
            raise Err(f"unknown config key `{key}`")
    skip_types = config.get("skip_types", [])
    if not isinstance(skip_types, list) or any(not isinstance(t, str) or t == "" for t in skip_types):
        raise Err("skip_types must be a list of non-empty strings")
    return {"prefix": config.get("prefix"), "skip_types": skip_types}


class Transform(exports.Transform):
    def transform(self, event: types.Event, config: str) -> types.Outcome:
        cfg = parse_config(config)
        if event.event_type in cfg["skip_types"]:
            return types.Outcome_Skip(f"event type `{event.event_type}` is skipped")
        data = json.loads(event.payload)
        title = data.get("title") if isinstance(data, dict) else None
        if not isinstance(title, str):
            title = "(untitled)"
        head = event.event_type if cfg["prefix"] is None else f"{cfg['prefix']} {event.event_type}"
        host.log(host.Level.INFO, f"formatting {event.id}")
        body = json.dumps({"text": f"{head}: {title}"}, separators=(",", ":")).encode()
        return types.Outcome_Deliver(types.Delivery(body, "application/json", []))

    def validate_config(self, config: str) -> None:
        parse_config(config)
