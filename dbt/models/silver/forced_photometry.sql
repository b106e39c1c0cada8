{{ config(unique_key='objectId', keys=['objectId', 'pid'], distributed_by=['objectId']) }}
{#- Grain: one row per forced-photometry measurement (objectId, pid), from fp_hists (schema 4.x). Rows whose
    difference flux or its uncertainty is null, 0 or -99999 are dropped; the flux becomes a magnitude as ALeRCE
    does: mag = magzpsci - 2.5 log10|flux|, e_mag = 1.0857 unc / |flux|, isdiffpos = flux > 0. -#}
{%- set measured = ['field', 'rcid', 'rfid', 'programid', 'procstatus', 'forcediffimflux', 'forcediffimfluxunc',
                    'magzpsci', 'magzpsciunc', 'diffmaglim', 'exptime', 'sciinpseeing'] -%}
{%- set raw = ['objectId', 'pid', 'fid', 'jd'] + measured + ['distnr', 'magnr', 'sigmagnr', source_column_list()] -%}

with incoming as (
    select
        a.objectId as objectId,
        f.pid as pid,
        f.fid as fid,
        f.jd as jd,
        {%- for col in measured %}
        f.{{ col }} as {{ col }},
        {%- endfor %}
        {{ clean('f.distnr') }} as distnr,
        {{ clean('f.magnr') }} as magnr,
        {{ clean('f.sigmagnr') }} as sigmagnr,
        {{ source_columns('a', 'fp_hist') }}
    from {{ unnest_from(bronze_alerts(), 'a', 'fp_hists', 'f') }}
    where a.objectId is not null and f.pid is not null
      and f.forcediffimflux is not null and f.forcediffimflux not in (0, -99999)
      and f.forcediffimfluxunc is not null and f.forcediffimfluxunc not in (0, -99999)
),

{{ best_copy_ctes(raw, 'objectId, pid', 'jd desc, forcediffimfluxunc, forcediffimflux') }}

select
    objectId,
    pid,
    fid,
    {{ mjd('jd') }} as mjd,
    jd,
    {{ jd_to_night('jd') }} as night,
    {{ band('fid') }} as band,
    {{ measured | join(', ') }},
    magzpsci - 2.5 * log10(abs(forcediffimflux)) as mag,
    1.0857 * forcediffimfluxunc / abs(forcediffimflux) as e_mag,
    forcediffimflux > 0 as isdiffpos,
    distnr,
    magnr,
    sigmagnr,
    {{ source_column_list() }}
from best
