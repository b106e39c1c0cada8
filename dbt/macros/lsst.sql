{#- Rubin (LSST): the columns silver keeps and the conventions (docs/rubin.md, docs/data-model.md). -#}

{#- The diaSource fields silver keeps (every shipped version since 8.0 has them; bronze holds all of them). -#}
{% macro lsst_dia_source_fields() -%}
    {{ return(['diaSourceId', 'diaObjectId', 'ssObjectId', 'visit', 'detector', 'midpointMjdTai', 'band', 'ra',
               'raErr', 'dec', 'decErr', 'psfFlux', 'psfFluxErr', 'scienceFlux', 'scienceFluxErr', 'templateFlux',
               'templateFluxErr', 'snr', 'reliability', 'extendedness', 'isNegative', 'isDipole',
               'pixelFlags_saturated']) }}
{%- endmacro %}

{% macro lsst_forced_source_fields() -%}
    {{ return(['diaForcedSourceId', 'diaObjectId', 'visit', 'detector', 'midpointMjdTai', 'band', 'ra', 'dec',
               'psfFlux', 'psfFluxErr', 'scienceFlux', 'scienceFluxErr']) }}
{%- endmacro %}

{#- The diaObject state Rubin sends: position, counts, and per band the flux aggregates gold compares with. -#}
{% macro lsst_dia_object_fields() -%}
    {%- set out = ['diaObjectId', 'validityStartMjdTai', 'ra', 'raErr', 'dec', 'decErr', 'nDiaSources',
                   'firstDiaSourceMjdTai', 'lastDiaSourceMjdTai'] -%}
    {%- for b in lsst_bands() -%}
        {%- for f in ['psfFluxMean', 'psfFluxMeanErr', 'psfFluxSigma', 'psfFluxNdata', 'psfFluxMin', 'psfFluxMax',
                      'psfFluxMaxSlope', 'psfFluxErrMean', 'fpFluxMean', 'fpFluxMeanErr'] -%}
            {%- do out.append(b ~ '_' ~ f) -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(out) }}
{%- endmacro %}

{% macro lsst_ss_source_fields() -%}
    {{ return(['ssObjectId', 'designation', 'eclLambda', 'eclBeta', 'galLon', 'galLat', 'elongation', 'phaseAngle',
               'topoRange', 'topoRangeRate', 'helioRange', 'helioRangeRate', 'ephRa', 'ephDec', 'ephVmag', 'ephRate',
               'ephOffset', 'diaDistanceRank']) }}
{%- endmacro %}

{% macro lsst_bands() -%}{{ return(['u', 'g', 'r', 'i', 'z', 'y']) }}{%- endmacro %}

{#- The carrying alert's lineage: what chooses among copies (lsst_copy_order) and what says where a row came from. -#}
{% macro lsst_lineage(alert) -%}
    {{ alert }}.diaSourceId as src_alert_id,
    {{ alert }}.midpointMjdTai as src_alert_mjd,
    {{ alert }}.schema_version as src_schema_version,
    {{ alert }}.source_key as src_key,
    {{ alert }}.source_member as src_member,
    {{ alert }}.part as src_part,
    {{ alert }}.ingested_at as ingested_at
{%- endmacro %}

{% macro lsst_lineage_columns() -%}
    {{ return(['src_alert_id', 'src_alert_mjd', 'src_schema_version', 'src_key', 'src_member', 'src_part',
               'ingested_at']) }}
{%- endmacro %}

{#- Among copies of one row (every alert repeats its object's history): the alert's own measurement first, then the
    latest carrying alert, then the latest ingest; the source key breaks the last ties, so the choice is stable. -#}
{% macro lsst_copy_order(trigger_first=true) -%}
    {%- if trigger_first %}src_is_trigger desc, {% endif -%}
    src_alert_mjd desc, ingested_at desc, src_key, src_member, src_part
{%- endmacro %}

{#- Rubin's times are TAI; UTC = TAI - 37 s (the leap seconds since 2017-01-01, unchanged since). -#}
{% macro tai_to_utc_mjd(mjd_tai) -%} ({{ mjd_tai }} - 37.0 / 86400.0) {%- endmacro %}

{#- AB magnitude of a flux in nJy, NULL unless the flux is positive (difference fluxes can be negative). -#}
{% macro njy_to_mag(flux) -%}
    31.4 - 2.5 * log10(case when {{ flux }} > 0 then {{ flux }} end)
{%- endmacro %}

{#- Its error, to first order: 2.5 / ln(10) * err / flux. -#}
{% macro njy_to_mag_err(flux, err) -%}
    case when {{ flux }} > 0 then 1.0857362047581294 * {{ err }} / {{ flux }} end
{%- endmacro %}

{#- Rubin's dayObs of an MJD: the date at UTC-12h (the night's date at Cerro Pachon; bronze's `night`). -#}
{% macro mjd_to_day_obs(mjd) %}
    {{- return(adapter.dispatch('mjd_to_day_obs', 'ateda')(mjd)) -}}
{% endmacro %}
{% macro default__mjd_to_day_obs(mjd) -%}
    cast(date '1970-01-01' + cast(floor({{ mjd }} - 40587.0 - 0.5) as integer) as date)
{%- endmacro %}
{% macro starrocks__mjd_to_day_obs(mjd) -%}
    cast(days_add(cast('1970-01-01' as date), cast(floor({{ mjd }} - 40587.0 - 0.5) as int)) as date)
{%- endmacro %}

{#- A Rubin diaObjectId as gold's objectId: its decimal digits. A ZTF objectId starts with "ZTF", so the two never
    collide, and the text keeps every digit of the int64 (a JSON reader that would round it gets a string). -#}
{% macro lsst_object_id(expr) -%} cast({{ expr }} as varchar) {%- endmacro %}

{#- gold's fid for a Rubin band: the band's number within its survey (u 1, g 2, r 3, i 4, z 5, y 6); ZTF keeps its
    own fid (1 g, 2 r, 3 i). `band` says the band in both. -#}
{% macro lsst_band_fid(band) -%}
    case {{ band }} when 'u' then 1 when 'g' then 2 when 'r' then 3 when 'i' then 4 when 'z' then 5 when 'y' then 6 end
{%- endmacro %}

{#- Rubin objects with new bronze rows: what an incremental run recomputes (gold's objectId form). -#}
{% macro lsst_touched_objects() -%}
    (select distinct {{ lsst_object_id('d.diaObjectId') }} from {{ bronze_delta('lsst_alert') }} as d
     where d.diaObjectId is not null)
{%- endmacro %}

{% macro where_lsst_touched(column='diaObjectId', keyword='where') -%}
    {%- if ateda_is_incremental() %} {{ keyword }} {{ lsst_object_id(column) }} in {{ lsst_touched_objects() }}{% endif -%}
{%- endmacro %}
