"""The hub page /hub/usage: the recorded core-, memory- and GPU-hours (facility.usage) by user,
group or backend, each with a bar, for admins (everyone's) and for an event's instructors (their
participants', facility.events). Others are refused in words. The navigation bar links to it for
admins (templates/hub/page.html).

The usage file is read in a worker thread: the hub's event loop keeps answering meanwhile.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from jupyterhub.handlers import BaseHandler
from tornado import web

from facility.events import EventStore, events_path
from facility.runtime import Runtime
from facility.usage import UsageStore, UsageUnavailable, usage_path
from facility.usage_report import BY, Total, checked_day, hours, overall, totals

NOT_FOR_YOU = (
    "The usage page is for the facility's admins, and for an event's instructors (their participants' use). "
    "Ask an admin for your own use."
)


def _bar_percent(total: Total, top: float) -> float:
    return 100 * total.core_hours / top if top else 0.0


class UsagePage(BaseHandler):
    def initialize(self, usage_file: str, events_file: str, interval: int) -> None:
        self.store = UsageStore(usage_file)
        self.events = EventStore(Path(events_file))
        self.interval = interval

    def _whose(self) -> tuple[set[str] | None, str]:
        """Whose use the current user may see (None: everyone's), and those words for the page."""
        if self.current_user.admin:
            return None, "every user"
        taught = self.events.taught_by(self.current_user.name)
        if not taught:
            raise web.HTTPError(403, NOT_FOR_YOU, reason="Forbidden")
        names = ", ".join(e.name for e in taught)
        return {p for e in taught for p in e.participants}, f"the participants of {names}"

    def _choices(self) -> tuple[str, str, str]:
        """by and since from the query, and a sentence when one of them is not understood."""
        by, since = self.get_argument("by", "user"), self.get_argument("since", "")
        if by not in BY:
            return "user", since, f"{by[:40]!r} is not a way to sum usage; choose one of {', '.join(BY)}."
        try:
            return by, checked_day(since) if since else "", ""
        except ValueError as exc:
            return by, "", f"Since: {exc}."

    @web.authenticated
    async def get(self) -> None:
        whose, whose_text = self._whose()
        by, since, problem = self._choices()
        context: dict[str, Any] = {"by": by, "since": since, "ways": BY, "whose": whose_text, "hours": hours}
        if problem:
            self.set_status(400)
        try:
            rows = await asyncio.to_thread(self.store.rows, since, whose)
            last = await asyncio.to_thread(self.store.last_sample)
        except UsageUnavailable:
            rows, last = [], None
        found = totals(rows, by)
        top = max((t.core_hours for t in found), default=0.0)
        context.update(
            problem=problem,
            found=[(t, _bar_percent(t, top)) for t in found],
            everything=overall(rows),
            last=dt.datetime.fromtimestamp(last, dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if last else "",
            interval=self.interval,
        )
        self.finish(await self.render_template("usage.html", **context))


def configure(c: Any, runtime: Runtime, interval: int) -> None:
    """Serve /hub/usage (the templates of hub_config.user_guide link to it for admins)."""
    settings = {
        "usage_file": str(usage_path(runtime.state_path)),
        "events_file": str(events_path(runtime.state_path)),
        "interval": interval,
    }
    c.JupyterHub.extra_handlers.append((r"/usage", UsagePage, settings))
