{%- set grain = ['objectId', 'pid'] -%}
{#- unique_key is the delete scope of an incremental run (every held row of the touched objects), not the grain;
    the grain is meta.grain (and StarRocks' primary key, `keys`), tested unique in silver.yml. -#}
-- depends_on: {{ ref('copy_version') }} (copy_version reads this model's held rows before this run updates them)
{{ config(meta={'grain': grain}, unique_key='objectId', keys=grain, distributed_by=['objectId']) }}
{#- Grain: one row per forced-photometry measurement (objectId, pid), from fp_hists (schema 4.x). Rows whose
    difference flux or its uncertainty is null, 0 or -99999 are dropped; the flux becomes a magnitude as ALeRCE
    does: mag = magzpsci - 2.5 log10|flux|, e_mag = 1.0857 unc / |flux|, isdiffpos = flux > 0. -#}
{%- set measured = ['field', 'rcid', 'rfid', 'programid', 'procstatus', 'forcediffimflux', 'forcediffimfluxunc',
                    'magzpsci', 'magzpsciunc', 'diffmaglim', 'exptime', 'sciinpseeing'] -%}
{%- set raw = ['objectId', 'pid', 'fid', 'jd'] + measured + ['distnr', 'magnr', 'sigmagnr', source_column_list()] -%}

with incoming as (
    select {{ raw | join(', ') }}
    from {{ ref('stg_fp_hist') }}
    where pid is not null
      and forcediffimflux is not null and forcediffimflux not in (0, -99999)
      and forcediffimfluxunc is not null and forcediffimfluxunc not in (0, -99999)
),

best as (
    select *
    from {{ kept_copies('incoming', raw, ['objectId', 'pid'],
                        tiebreak='jd desc, forcediffimfluxunc, forcediffimflux') }} as kept
)

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
