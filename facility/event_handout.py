"""The handout of an event: each participant's name and password, as CSV and as a printable HTML
sheet (one card per participant, to cut out): written 0600 by `af event create` (the only copy of
the passwords), shown once by the hub's events page when an organiser creates an event there."""

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
.notice { border: 1px solid #555; padding: 0.3cm; margin: 0 0 0.5cm; }
@media print { .notice { display: none; } }
</style></head><body>
{% if notice %}<p class="notice">{{ notice }}</p>{% endif %}
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


def handout_csv(event: Event, url: str, logins: list[tuple[str, str]]) -> str:
    """The handout as CSV: one row per participant."""
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["event", "name", "password", "url", "start_utc", "end_utc"])
    for name, password in logins:
        writer.writerow([event.name, name, password, url, event.start.isoformat(), event.end.isoformat()])
    return rows.getvalue()


def handout_sheet(event: Event, url: str, logins: list[tuple[str, str]], notice: str = "") -> str:
    """The handout as a printable HTML page, one card per participant; `notice` above them on screen."""
    start, end = shown(event.start), shown(event.end)
    return _template.render(event=event, url=url, logins=logins, start=start, end=end, notice=notice)


def write_handout(folder: Path, event: Event, url: str, logins: list[tuple[str, str]]) -> tuple[Path, Path]:
    """<folder>/<event>-logins.csv and <event>-logins.html, both 0600; their paths."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    csv_file, html_file = folder / f"{event.name}-logins.csv", folder / f"{event.name}-logins.html"
    write_private(csv_file, handout_csv(event, url, logins))
    write_private(html_file, handout_sheet(event, url, logins))
    return csv_file, html_file
