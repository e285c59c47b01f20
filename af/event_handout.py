"""The handout of an event: each participant's name and password, as CSV and as a printable HTML
sheet (one card per participant, to cut out). Written 0600: the only copy of the passwords."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from jinja2 import Environment, select_autoescape

from facility.events import Event, shown
from facility.private_file import write_private

_SHEET = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ event.name }}: logins</title>
<style>
body { font-family: sans-serif; margin: 1cm; }
h1 { font-size: 16pt; margin: 0 0 0.3cm; }
p.when { margin: 0 0 0.5cm; }
.cards { display: grid; grid-template-columns: 1fr 1fr; gap: 0.4cm; }
.card { border: 1px dashed #555; padding: 0.4cm; break-inside: avoid; }
.card .label { color: #555; font-size: 9pt; }
.card .value { font-family: monospace; font-size: 13pt; margin-bottom: 0.2cm; word-break: break-all; }
</style></head><body>
<h1>{{ event.name }}</h1>
<p class="when">From {{ start }} to {{ end }}. Log in at {{ url }} with the name and password on your card.</p>
<div class="cards">
{% for name, password in logins %}<div class="card">
<div class="label">Address</div><div class="value">{{ url }}</div>
<div class="label">Name</div><div class="value participant">{{ name }}</div>
<div class="label">Password</div><div class="value password">{{ password }}</div>
<div class="label">{{ start }} to {{ end }}</div>
</div>
{% endfor %}</div>
</body></html>
"""
_template = Environment(autoescape=select_autoescape(default=True, default_for_string=True)).from_string(_SHEET)


def write_handout(folder: Path, event: Event, url: str, logins: list[tuple[str, str]]) -> tuple[Path, Path]:
    """<folder>/<event>-logins.csv and <event>-logins.html, both 0600; their paths."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["event", "name", "password", "url", "start_utc", "end_utc"])
    for name, password in logins:
        writer.writerow([event.name, name, password, url, event.start.isoformat(), event.end.isoformat()])
    csv_file, html_file = folder / f"{event.name}-logins.csv", folder / f"{event.name}-logins.html"
    write_private(csv_file, rows.getvalue())
    sheet = _template.render(event=event, url=url, logins=logins, start=shown(event.start), end=shown(event.end))
    write_private(html_file, sheet)
    return csv_file, html_file
