"""``stalwart demo``: fault-injection scenarios comparing plain httpx with httpx over stalwart.

Layout (each module has one purpose):

* ``_schedule`` (pure): the upstream's fault schedule and the fate of each call;
* ``_upstream``: the Starlette app following a schedule and counting calls per phase (:class:`FaultUpstream`);
* ``_server``: serving ASGI apps on loopback from a background thread (:class:`ServerThread`);
* ``_workload``: the open-loop driver;
* ``_clients``: the plain and resilient clients and how requests are classified;
* ``_summary`` (pure): counts, percentiles and the JSON document;
* ``_report``: the Rich progress bar and tables;
* ``_outage``: the default scenario; ``_command``: the CLI front and the scenario registry.
"""

from __future__ import annotations

from ._command import SCENARIOS, add_arguments, run

__all__ = ["SCENARIOS", "add_arguments", "run"]
