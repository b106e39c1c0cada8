"""``ateda config``: the effective settings by section (secrets masked), or the settings reference page."""

from __future__ import annotations

import json

from ateda.config import Settings, settings_doc


def register(sub) -> None:  # noqa: ANN001
    cfg = sub.add_parser("config", help="the effective settings, by section (secrets masked); docs/settings.md")
    cfg.add_argument("--json", action="store_true", help="machine-readable: section -> variable -> value")
    cfg.add_argument("--doc", action="store_true", help="instead: the settings reference page (docs/settings.md)")
    cfg.set_defaults(func=cmd_config)


def cmd_config(args, settings: Settings) -> int:  # noqa: ANN001
    if args.doc:
        print(settings_doc(), end="")
        return 0
    values = settings.effective(masked=True)
    if args.json:
        print(json.dumps(values, indent=1))
        return 0
    for section, rows in values.items():
        print(f"[{section}]")
        for name, value in rows.items():
            shown = str(value).lower() if isinstance(value, bool) else value if value != "" else "(unset)"
            print(f"  {name} = {shown}")
    return 0
