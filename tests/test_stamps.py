"""Stamps in any format and plots fit for a talk (issue 12, designs 9 and 10; review 1.2, 1.16, 1.19).

The real alerts carry gzipped FITS stamps and, in old 0.x alerts, JPEG ones. The format is told by the bytes
(``lake/cutouts.py``); the file names the alerts give are the independent check. The slow part ingests every real
alert whose stamps are JPEG (found here, at test time) with a few FITS ones and one without stamps, builds the
warehouse, then runs ``ateda cutout`` and ``ateda plot`` on every one of those objects.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import fastavro
import numpy as np
import pytest
from PIL import Image

from ateda.cli import main
from ateda.config import Settings
from ateda.lake.cutouts import Stamp, stamp_format
from ateda.warehouse import plots
from ateda.warehouse.queries import connect_science, records
from conftest import alert_files

FIELDS = (("cutoutScience", "science"), ("cutoutTemplate", "template"), ("cutoutDifference", "difference"))
ATEDA = Path(sys.executable).with_name("ateda")


def real_alerts() -> list[tuple[Path, dict]]:
    """(file, record) of every readable real ZTF alert (records without an objectId are not ZTF alerts)."""
    out = []
    for f in alert_files():
        try:
            with open(f, "rb") as fh:
                out.extend((f, rec) for rec in fastavro.reader(fh) if rec.get("objectId"))
        except Exception:  # noqa: BLE001 - the damaged and non-ZTF files: their good records are kept above
            continue
    return out


ALERTS_READ = real_alerts()


def stamps_in(rec: dict) -> dict[str, dict]:
    return {kind: rec[field] for field, kind in FIELDS if rec.get(field) and rec[field].get("stampData")}


# ---------------------------------------------------------------- formats, from the real bytes (fast)

def test_every_real_stamp_is_told_by_its_bytes_and_decodes():
    seen = defaultdict(int)
    for _, rec in ALERTS_READ:
        for kind, cut in stamps_in(rec).items():
            name, data = cut["fileName"], cut["stampData"]
            expected = "jpeg" if name.endswith(".jpg") else "fits.gz" if name.endswith(".fits.gz") else None
            assert expected is not None, name
            stamp = Stamp(kind, name, data)
            assert stamp_format(data) == stamp.format == expected, name
            assert stamp.extension == (".jpg" if expected == "jpeg" else ".fits")
            assert stamp.file_bytes() == (data if expected == "jpeg" else gzip.decompress(data))
            image = stamp.image()
            assert image.ndim == 2 and min(image.shape) >= 20 and np.isfinite(image).any(), name
            seen[expected] += 1
    assert seen["jpeg"] and seen["fits.gz"], seen  # both formats are in the real data


def test_png_and_plain_fits_are_read_too():
    """No real alert has a PNG or a plain FITS stamp: re-encode real ones and read them back, pixel for pixel."""
    jpeg = next(Stamp(k, c["fileName"], c["stampData"]) for _, r in ALERTS_READ for k, c in stamps_in(r).items()
                if c["fileName"].endswith(".jpg"))
    buf = io.BytesIO()
    Image.open(io.BytesIO(jpeg.data)).save(buf, format="PNG")
    png = Stamp("science", "x.png", buf.getvalue())
    assert png.format == "png" and png.extension == ".png"
    assert np.array_equal(png.image(), jpeg.image())
    gz = next(Stamp(k, c["fileName"], c["stampData"]) for _, r in ALERTS_READ for k, c in stamps_in(r).items()
              if c["fileName"].endswith(".fits.gz"))
    plain = Stamp("science", "x.fits", gz.file_bytes())
    assert plain.format == "fits" and np.array_equal(plain.image(), gz.image(), equal_nan=True)
    junk = Stamp("science", "x.bin", b"not an image at all")
    assert junk.format == "unknown" and junk.extension == ".bin"
    with pytest.raises(ValueError, match="not FITS, JPEG or PNG"):
        junk.image()


def test_saturated_and_blank_pixels_are_found():
    """A real science stamp, then the same stamp clipped flat at a high level (a saturated core) with a NaN: the
    mask is exactly the flat top and the NaN."""
    stamp = next(Stamp(k, c["fileName"], c["stampData"]) for _, r in ALERTS_READ for k, c in stamps_in(r).items()
                 if k == "science" and c["fileName"].endswith(".fits.gz"))
    image = stamp.image()
    finite = image[np.isfinite(image)]
    if (finite == finite.max()).sum() == 1:  # a peak, not a plateau: nothing but blank pixels is marked
        assert np.array_equal(plots.saturated_mask(image), ~np.isfinite(image))
    level = np.percentile(finite, 99)
    clipped = np.minimum(image, level)
    clipped[0, 0] = np.nan
    mask = plots.saturated_mask(clipped)
    assert np.array_equal(mask, (clipped == level) | np.isnan(clipped))
    assert mask.sum() >= 2


# ---------------------------------------------------------------- ingested: cutout and plot on the real objects (slow)

def latest_with_stamps() -> dict[str, dict]:
    """object id -> its latest alert (largest jd, then candid) that carries stamps, from the Avro files."""
    best: dict[str, dict] = {}
    for _, rec in ALERTS_READ:
        if not stamps_in(rec):
            continue
        key = (rec["candidate"]["jd"], rec["candidate"]["candid"])
        old = best.get(rec["objectId"])
        if old is None or key > (old["candidate"]["jd"], old["candidate"]["candid"]):
            best[rec["objectId"]] = rec
    return best


def jpeg_objects() -> list[str]:
    return sorted({rec["objectId"] for _, rec in ALERTS_READ
                   if any(c["fileName"].endswith(".jpg") for c in stamps_in(rec).values())})


FITS_OBJECTS = ("ZTF23abjjncz", "ZTF18aauqcsv", "ZTF19abegmle")  # titles that ran together; a bright star; 7 alerts
NO_STAMPS = "ZTF20abyfpze"  # its only alert has no stamps at all


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """Every real alert of the JPEG objects, the FITS objects above and the stamp-less one, ingested (the real
    console script) and refreshed into the warehouse."""
    wanted = set(jpeg_objects()) | set(FITS_OBJECTS) | {NO_STAMPS}
    base = tmp_path_factory.mktemp("stamps")
    src = base / "in"
    src.mkdir()
    for f in sorted({f for f, rec in ALERTS_READ if rec["objectId"] in wanted}):
        (src / f.name).symlink_to(f)
    env = {**os.environ, "ATEDA_HOME": str(base / "home")}
    for args in (["ingest", "--bronze-only", str(src)], ["refresh"]):
        run = subprocess.run([str(ATEDA), *args], env=env, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    return Settings.from_env({"ATEDA_HOME": str(base / "home")})


def in_gold(s: Settings) -> set[str]:
    with connect_science(s) as con:
        return {r["objectId"] for r in records(con, "select objectId from gold.object", [])}


@pytest.mark.slow
def test_cutout_of_every_jpeg_object_writes_the_alerts_own_bytes(home, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ATEDA_HOME", str(home.home))
    latest = latest_with_stamps()
    objects = jpeg_objects()
    assert len(objects) >= 60, len(objects)  # the review counted 70 of them
    for oid in objects:
        rec = latest[oid]
        out = tmp_path / oid
        assert main(["cutout", oid.lower(), "-o", str(out)]) == 0, oid  # any case, its latest alert
        written = {p.name: p.read_bytes() for p in out.iterdir()}
        expected = {}
        for kind, cut in stamps_in(rec).items():
            data = cut["stampData"]
            ext = ".jpg" if data[:3] == b"\xff\xd8\xff" else ".fits"
            expected[f"{rec['candidate']['candid']}_{kind}{ext}"] = data if ext == ".jpg" else gzip.decompress(data)
        assert written == expected, (oid, sorted(written), sorted(expected))
    # by candid, through the console script, as a user types it
    rec = latest[objects[0]]
    run = subprocess.run([str(ATEDA), "cutout", str(rec["candidate"]["candid"]), "-o", str(tmp_path / "by-candid")],
                         env={**os.environ, "ATEDA_HOME": str(home.home)}, capture_output=True, text=True)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert sorted(Path(p).suffix for p in run.stdout.split()) == [".jpg"] * len(stamps_in(rec))


@pytest.mark.slow
def test_plot_of_every_jpeg_object_and_the_stampless_one(home, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ATEDA_HOME", str(home.home))
    gold = in_gold(home)
    objects = jpeg_objects() + [NO_STAMPS]
    plotted = 0
    for oid in objects:
        png = tmp_path / f"{oid}.png"
        with warnings.catch_warnings(record=True) as said:  # a user would see these on stderr
            warnings.simplefilter("always")
            code = main(["plot", oid, "-o", str(png), "--dpi", "40"])  # the resolution is not what is tested
        assert [str(w.message) for w in said] == [], oid
        err = capsys.readouterr().err
        assert "Traceback" not in err
        if oid in gold:
            assert code == 0, (oid, err)
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            plotted += 1
        else:  # not in gold (no detection kept): one line saying so, not a crash
            assert code == 1 and len(err.strip().splitlines()) == 1 and oid in err, (oid, err)
    assert plotted >= len(objects) - 3, (plotted, len(objects))
    assert NO_STAMPS in gold


def drawn_texts(fig) -> list:  # noqa: ANN001
    """The texts a draw of ``fig`` actually draws (tick labels outside the view are never drawn: they do not count),
    recorded as each one draws itself."""
    from matplotlib.text import Text

    drawn, original = [], Text.draw

    def record(self, renderer):  # noqa: ANN001, ANN202
        original(self, renderer)
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)

    Text.draw = record
    try:
        fig.canvas.draw()
    finally:
        Text.draw = original
    return drawn


def overlapping_texts(fig) -> list[tuple[str, str]]:  # noqa: ANN001
    """Pairs of drawn texts whose boxes (the renderer's, in pixels) intersect by more than a pixel each way."""
    texts = drawn_texts(fig)
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    out = []
    for i, (a, ba) in enumerate(boxes):
        for b, bb in boxes[i + 1:]:
            w = min(ba.x1, bb.x1) - max(ba.x0, bb.x0)
            h = min(ba.y1, bb.y1) - max(ba.y0, bb.y0)
            if w > 1 and h > 1:
                out.append((a, b))
    return out


def expected_legend(points: list[dict], stamps_marked: bool) -> set[str]:
    """What the legend must list, recomputed from gold.lightcurve: the bands and kinds of point actually drawn."""
    labels = set()
    names = {1: "ZTF g", 2: "ZTF r", 3: "ZTF i"}
    for p in points:
        if p["mag"] is None:
            continue
        kind = p["point_kind"]
        if kind == "forced" and not (p["isdiffpos"] and p["e_mag"] is not None and p["e_mag"] < 1.0857 / 3):
            continue
        labels.add(names[p["fid"]])
        if kind == "upper_limit":
            labels.add("5$\\sigma$ upper limit")
        elif kind == "forced":
            labels.add("forced phot. (S/N$\\geq$3, faint)")
        elif p["isdiffpos"]:
            labels.add("detection (filled)")
        else:
            labels.add("negative difference (open)")
    if stamps_marked:
        labels.add("saturated / blank pixel")
    return labels


@pytest.mark.slow
def test_figures_for_a_talk(home):
    """On the FITS objects, the stamp-less one and every 15th JPEG one: no two texts overlap; the legend lists exactly
    what is drawn; each stamp has a colour bar in its unit and the first N/E arrows; a missing stamp is a labelled
    empty panel."""
    import matplotlib.pyplot as plt

    gold = in_gold(home)
    objects = [o for o in (*FITS_OBJECTS, NO_STAMPS, *jpeg_objects()[::15]) if o in gold]  # every 15th JPEG one
    for oid in objects:
        fig = plots.object_figure(home, oid)
        try:
            assert overlapping_texts(fig) == [], oid
            with connect_science(home) as con:
                points = records(con, "select * from gold.lightcurve where objectId = ?", [oid])
            legend = {t.get_text() for lg in fig.legends for t in lg.get_texts()}
            marked = any(v.get_label() == "saturated / blank pixel" for lg in fig.legends for v in lg.legend_handles)
            assert legend == expected_legend(points, marked), oid
            texts = [t.get_text() for t in drawn_texts(fig)]
            bars = [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]
            if oid == NO_STAMPS:
                assert sum("no stamps" in t for t in texts) == 3 and bars == [], texts
                continue
            assert "N" in texts and "E" in texts and "10\u2033" in texts, oid
            assert len(bars) == 3 and all(b in ("flux (DN)", "JPEG grey level (no flux)") for b in bars), bars
        finally:
            plt.close(fig)


@pytest.mark.slow
def test_the_plot_of_an_object_with_fits_stamps_through_the_console_script(home, tmp_path):
    """`ateda plot` as typed: a PNG, its path on stdout, nothing on stderr (not even matplotlib's font-cache INFO)."""
    env = {**os.environ, "ATEDA_HOME": str(home.home), "MPLCONFIGDIR": str(tmp_path / "mpl")}  # a cold font cache
    out = tmp_path / "lc.pdf"
    run = subprocess.run([str(ATEDA), "plot", "ztf23ABJJNCZ", "-o", str(out)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and run.stderr == "" and run.stdout.strip() == str(out), run.stderr
    assert out.read_bytes()[:5] == b"%PDF-"
