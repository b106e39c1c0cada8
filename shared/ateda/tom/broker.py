"""ATEDA as a TOM Toolkit broker: query the platform's HTTP API (docs/explorer.md) by cone or by object id from a
TOM, make Targets of its objects and import their light curves as photometry.

Enable it in the TOM's settings.py::

    TOM_ALERT_CLASSES = [..., 'ateda.tom.broker.AtedaBroker']
    BROKERS = {'ATEDA': {'url': 'http://localhost:8000', 'token': ''}}   # token: the app's ATEDA_EXPLORER_TOKEN

This module runs in the TOM's process: it needs only what tomtoolkit (>= 3) brings (Django, requests) and imports
nothing else from ATEDA, so ``pip install --no-deps ateda`` (or this one file on the TOM's path) is enough.

Light-curve points become ``PhotometryReducedDatum`` rows, one per gold.lightcurve row:

* ``timestamp``: the point's MJD (UTC) as a datetime, the TOM's time convention; ``value['mjd']`` keeps the MJD
  exactly as the API gave it;
* detections and forced photometry: ``brightness`` = the magnitude (AB), ``brightness_error`` its error, ``unit``
  ``mag``; a Rubin point whose flux is not positive has no magnitude (brightness empty) and keeps its flux;
* ZTF upper limits: ``limit`` = the limiting magnitude, ``brightness`` empty (a limit is never a magnitude);
* ``bandpass``: the band (``g``, ``r``...); forced photometry as ``<band> forced``, so the TOM's plot shows it as
  its own series; ``reduction_version``: the point's kind (``detection``, ``upper_limit``, ``forced``);
* ``telescope``/``instrument``: ``ZTF``/``ZTF`` or ``Rubin``/``LSSTCam``; ``value``: the survey, the point's id
  (a string: 64-bit ids stay exact), the band, and Rubin's ``flux``/``flux_err`` in ``flux_unit`` nJy.

Importing twice updates the points in place (matched by target, kind and point id), never duplicates them.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import requests
from crispy_forms.layout import HTML, Column, Fieldset, Layout, Row
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from tom_alerts.alerts import GenericAlert, GenericBroker, GenericQueryForm
from tom_dataproducts.models import PhotometryReducedDatum
from tom_targets.models import Target

logger = logging.getLogger(__name__)

BROKER_NAME = "ATEDA"
API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT_S = 30.0
MJD_EPOCH = datetime(1858, 11, 17, tzinfo=timezone.utc)
MAX_RADIUS_ARCSEC = 3600.0  # the API's own limit for /cone
KINDS = ("detection", "upper_limit", "forced")
TELESCOPES = {"ztf": ("ZTF", "ZTF"), "lsst": ("Rubin", "LSSTCam")}


class NotConfigured(AttributeError):
    """BROKERS['ATEDA']['url'] is missing. An AttributeError because that is what the TOM's query view turns into
    its "broker is not properly configured" message."""


def mjd_to_datetime(mjd: float) -> datetime:
    """An MJD (UTC) as an aware UTC datetime, to the microsecond."""
    return MJD_EPOCH + timedelta(days=mjd)


def _rows(payload: object) -> list[dict]:
    """The rows of a table answer: a bare list or ``{"rows": [...]}``."""
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict) and isinstance(payload.get("rows"), list):
        return payload["rows"]
    raise ValueError(f"{BROKER_NAME}: expected a list of rows, got {type(payload).__name__}")


def _summary(payload: dict) -> dict:
    """The object's gold.object row from ``GET /objects/{id}``: under ``object`` (or ``summary``), or the answer
    itself; the other parts of the answer (statistics, crossmatches) ride along under their own keys."""
    for key in ("object", "summary"):
        if isinstance(payload.get(key), dict):
            return {**{k: v for k, v in payload.items() if k != key}, **payload[key]}
    return dict(payload)


def object_id_of(alert: dict) -> str:
    oid = alert.get("objectId", alert.get("object_id"))
    if oid is None:
        raise ValueError(f"{BROKER_NAME}: an alert without objectId: {sorted(alert)}")
    return str(oid)


class AtedaQueryForm(GenericQueryForm):
    """One object by its id, or a cone (ra, dec, radius) with an optional time window."""

    object_id = forms.CharField(required=False, label="Object id",
                                help_text="a ZTF objectId (ZTF21abcdefg) or a Rubin diaObjectId (digits)")
    ra = forms.FloatField(required=False, min_value=0.0, max_value=360.0, label="RA",
                          help_text="degrees (ICRS)")
    dec = forms.FloatField(required=False, min_value=-90.0, max_value=90.0, label="Dec", help_text="degrees (ICRS)")
    radius_arcsec = forms.FloatField(required=False, min_value=0.0, max_value=MAX_RADIUS_ARCSEC, initial=5.0,
                                     label="Radius", help_text=f"arcsec (at most {MAX_RADIUS_ARCSEC:g})")
    since = forms.FloatField(required=False, label="Since", help_text="MJD: detected at or after (optional)")
    until = forms.FloatField(required=False, label="Until", help_text="MJD: detected at or before (optional)")

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - Django's form signature
        super().__init__(*args, **kwargs)
        self.helper.layout = Layout(
            HTML("<p>Query an ATEDA platform's API: one object by its id, or a cone search.</p>"),
            self.common_layout,
            Fieldset("Object", "object_id"),
            Fieldset("Cone search",
                     Row(Column("ra"), Column("dec"), Column("radius_arcsec")),
                     Row(Column("since"), Column("until"))),
        )

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:  # a field already said what is wrong with it
            return data
        data["object_id"] = (data.get("object_id") or "").strip()
        cone = [data.get(k) is not None for k in ("ra", "dec")]
        if data["object_id"] and any(cone):
            raise forms.ValidationError("Give an object id or a cone (ra, dec), not both.")
        if not data["object_id"] and not all(cone):
            raise forms.ValidationError("Give an object id, or ra and dec for a cone search.")
        if not data["object_id"] and not data.get("radius_arcsec"):
            raise forms.ValidationError("A cone search needs a radius above 0 arcsec.")
        if data.get("since") is not None and data.get("until") is not None and data["since"] > data["until"]:
            raise forms.ValidationError("'Since' is after 'until'.")
        return data


class AtedaBroker(GenericBroker):
    """The TOM side of ATEDA's HTTP API (docs/explorer.md)."""

    name = BROKER_NAME
    form = AtedaQueryForm
    score_description = "Number of detections of the object."

    # ---- HTTP

    def _config(self) -> dict:
        conf = (getattr(settings, "BROKERS", None) or {}).get(BROKER_NAME) or {}
        if not conf.get("url"):
            raise NotConfigured(f"settings.BROKERS['{BROKER_NAME}']['url'] is not set")
        return conf

    def _base(self) -> str:
        url = self._config()["url"].rstrip("/")
        return url[: -len(API_PREFIX)] if url.endswith(API_PREFIX) else url

    def _get(self, path: str, params: dict | None = None) -> requests.Response:
        """GET an API path; a 4xx/5xx other than the caller's to handle raises requests' HTTPError (the TOM's query
        view shows it as the broker's feedback)."""
        conf = self._config()
        headers = {"Accept": "application/json"}
        if conf.get("token"):
            headers["Authorization"] = f"Bearer {conf['token']}"
        return requests.get(f"{self._base()}{API_PREFIX}{path}", params=params, headers=headers,
                            timeout=float(conf.get("timeout", DEFAULT_TIMEOUT_S)))

    def _object_path(self, object_id: str) -> str:
        return f"/objects/{quote(str(object_id).strip(), safe='')}"

    # ---- queries

    def fetch_alerts(self, parameters: dict):  # noqa: ANN201 - an iterator of dicts, as GenericBroker's
        """The objects of a query: the one object (none if unknown), or the cone's objects nearest first."""
        object_id = (parameters.get("object_id") or "").strip()
        if object_id:
            found = self.fetch_alert(object_id)
            return iter([found] if found else [])
        params = {"ra": parameters["ra"], "dec": parameters["dec"],
                  "radius_arcsec": parameters.get("radius_arcsec") or 5.0}
        for key in ("since", "until"):
            if parameters.get(key) is not None:
                params[key] = parameters[key]
        response = self._get("/cone", params)
        response.raise_for_status()
        return iter(_rows(response.json()))

    def fetch_alert(self, alert_id: str) -> dict | None:
        """One object's summary (gold.object's row, with its statistics and crossmatches alongside); None if the
        platform does not know it."""
        response = self._get(self._object_path(alert_id))
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return _summary(response.json())

    def fetch_lightcurve(self, object_id: str) -> list[dict]:
        response = self._get(self._object_path(object_id) + "/lightcurve")
        response.raise_for_status()
        return _rows(response.json())

    # ---- the TOM's objects

    def to_generic_alert(self, alert: dict) -> GenericAlert:
        oid = object_id_of(alert)
        last = alert.get("lastmjd")
        return GenericAlert(
            timestamp=mjd_to_datetime(float(last)) if last is not None else None,
            id=oid,
            name=oid,
            ra=alert.get("meanra"),
            dec=alert.get("meandec"),
            mag=alert.get("maglast", alert.get("mag")),
            score=alert.get("ndet"),
            url=f"{self._base()}{self._object_path(oid)}",
        )

    def to_target(self, alert: dict) -> Target:
        """The object as a sidereal Target named by its id at its mean position (the existing Target of that name
        if the TOM has one)."""
        generic = self.to_generic_alert(alert)
        target, created = Target.objects.get_or_create(
            name=generic.name, defaults={"type": "SIDEREAL", "ra": generic.ra, "dec": generic.dec, "epoch": 2000.0})
        if not created:
            logger.info("%s: target %s exists; kept as it is", BROKER_NAME, target.name)
        return target

    def process_reduced_data(self, target: Target, alert: dict | None = None) -> list[PhotometryReducedDatum]:
        """Import the object's light curve (the alert's object, else the one named like the target) as photometry;
        points already imported are updated, not duplicated."""
        oid = object_id_of(alert) if alert else target.name
        saved = []
        for row in self.fetch_lightcurve(oid):
            fields = photometry_fields(row)
            if fields is None:
                continue
            point_id, kind = fields["value"]["point_id"], fields["reduction_version"]
            try:
                datum, _ = PhotometryReducedDatum.objects.update_or_create(
                    target=target, source_name=BROKER_NAME, reduction_version=kind, value__point_id=point_id,
                    defaults={**fields, "source_location": oid})
            except ValidationError as e:  # the same measurement already in the TOM from elsewhere
                logger.warning("%s: %s point %s of %s not imported: %s", BROKER_NAME, kind, point_id, oid, e)
                continue
            saved.append(datum)
        return saved


def photometry_fields(row: dict) -> dict | None:
    """A gold.lightcurve row (as the API returns it) as PhotometryReducedDatum fields; None for a kind this module
    does not know (a newer API)."""
    kind = row.get("point_kind")
    if kind not in KINDS:
        logger.warning("%s: light-curve point of unknown kind %r skipped", BROKER_NAME, kind)
        return None
    survey = str(row.get("survey") or "ztf").lower()
    telescope, instrument = TELESCOPES.get(survey, (survey.upper(), survey.upper()))
    band = str(row.get("band") or row.get("fid") or "")
    value = {"survey": survey, "point_kind": kind, "point_id": str(row.get("point_id")), "band": band,
             "mjd": row["mjd"]}
    for key in ("flux", "flux_err"):
        if row.get(key) is not None:
            value[key] = row[key]
            value["flux_unit"] = "nJy"
    for key in ("candid", "isdiffpos", "is_dubious", "mag_corr", "e_mag_corr", "diffmaglim"):
        if row.get(key) is not None:
            value[key] = str(row[key]) if key == "candid" else row[key]
    fields = {
        "timestamp": mjd_to_datetime(float(row["mjd"])),
        "bandpass": f"{band} forced" if kind == "forced" else band,
        "telescope": telescope,
        "instrument": instrument,
        "unit": "mag",
        "reduction_version": kind,
        "value": value,
        "brightness": None,
        "brightness_error": None,
        "limit": None,
    }
    if kind == "upper_limit":
        fields["limit"] = row.get("mag")
    else:
        fields["brightness"] = row.get("mag")
        fields["brightness_error"] = row.get("e_mag")
    return fields
