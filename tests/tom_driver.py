"""Run by tests/test_tom.py inside a real TOM Toolkit project, with the TOM's own Python (.tools/tomvenv): not a test
module, not imported by one. Reads a plan (JSON) on stdin, drives ateda.tom.broker through the TOM, prints what it
saw as one JSON document on stdout.

Two ways in, as a TOM user has them: the broker's methods called directly (fetch_alerts, fetch_alert,
to_generic_alert, to_target, process_reduced_data), and the TOM's own pages through Django's test client (a saved
broker query, its results page, "create targets" from the selected results).
"""

from __future__ import annotations

import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", sys.argv[1] if len(sys.argv) > 1 else "atom.settings")
django.setup()

from django.conf import settings  # noqa: E402 - after django.setup()
from django.contrib.auth.models import User  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings, setup_test_environment  # noqa: E402
from django.urls import reverse  # noqa: E402
from tom_alerts.alerts import get_service_class  # noqa: E402
from tom_alerts.models import BrokerQuery  # noqa: E402
from tom_dataproducts.models import PhotometryReducedDatum  # noqa: E402
from tom_targets.models import Target  # noqa: E402


def generic(broker, alert: dict) -> dict:  # noqa: ANN001
    g = broker.to_generic_alert(alert)
    return {"id": g.id, "name": g.name, "ra": g.ra, "dec": g.dec, "score": g.score, "url": g.url,
            "timestamp": g.timestamp.isoformat() if g.timestamp else None, "dist_arcsec": alert.get("dist_arcsec")}


def datums(target: Target) -> list[dict]:
    return [{"timestamp": d.timestamp.isoformat(), "bandpass": d.bandpass, "brightness": d.brightness,
             "brightness_error": d.brightness_error, "limit": d.limit, "unit": d.unit, "telescope": d.telescope,
             "instrument": d.instrument, "reduction_version": d.reduction_version, "source_name": d.source_name,
             "source_location": d.source_location, "value": d.value}
            for d in PhotometryReducedDatum.objects.filter(target=target).order_by("id")]


def target_dict(t: Target) -> dict:
    return {"name": t.name, "ra": t.ra, "dec": t.dec, "type": t.type, "pk": t.pk}


def main() -> None:
    plan = json.load(sys.stdin)
    broker_class = get_service_class("ATEDA")
    broker = broker_class()
    out: dict = {"broker": broker_class.__module__ + "." + broker_class.__name__}

    # forms: what the query form accepts and refuses
    form = broker_class.form
    out["form_errors"] = {name: {k: list(v) for k, v in form({"query_name": "q", "broker": "ATEDA", **data}).errors.items()}
                          for name, data in plan["forms"].items()}

    # the broker's methods, called directly
    out["cones"] = [[generic(broker, a) for a in broker.fetch_alerts(dict(c))] for c in plan["cones"]]
    out["objects"] = {oid: [generic(broker, a) for a in broker.fetch_alerts({"object_id": oid})]
                      for oid in plan["objects"]}
    out["imports"] = {}
    for oid in plan["imports"]:
        alert = broker.fetch_alert(oid)
        target = broker.to_target(alert)
        first = broker.process_reduced_data(target, alert)
        again = broker.process_reduced_data(target, alert)  # a second import updates, never duplicates
        out["imports"][oid] = {"target": target_dict(target), "saved_first": len(first), "saved_again": len(again),
                               "datums": datums(target)}

    # misconfigured: a wrong token, no URL
    out["misconfigured"] = {}
    for name, conf in (("wrong_token", {**settings.BROKERS["ATEDA"], "token": "wrong"}), ("no_url", {})):
        with override_settings(BROKERS={"ATEDA": conf}):
            try:
                broker.fetch_alerts({"object_id": plan["objects"][0]})
                out["misconfigured"][name] = None
            except Exception as e:  # noqa: BLE001 - what the TOM would get is the point
                status = getattr(getattr(e, "response", None), "status_code", None)
                out["misconfigured"][name] = [type(e).__name__, status]

    # the TOM's own pages: save a cone query, run it, create a target from one of its results
    setup_test_environment()
    User.objects.create_user("astro", password="not-a-secret-42")
    client = Client()
    assert client.login(username="astro", password="not-a-secret-42")
    page = plan["page"]
    r = client.post(reverse("tom_alerts:create"), {"query_name": "ateda cone", "broker": "ATEDA", **page["query"]})
    query = BrokerQuery.objects.get(name="ateda cone")
    run = client.get(reverse("tom_alerts:run", kwargs={"pk": query.pk}))
    html = run.content.decode()
    created = client.post(reverse("tom_alerts:create-target"),
                          {"query_id": query.pk, "broker": "ATEDA", "alerts": [page["pick"]]})
    target = Target.objects.filter(name=page["pick"]).first()
    out["page"] = {"create_status": r.status_code, "parameters": query.parameters, "run_status": run.status_code,
                   "listed": [oid for oid in page["expect"] if oid in html], "create_target_status": created.status_code,
                   "target": target_dict(target) if target else None,
                   "datums": len(datums(target)) if target else 0}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
