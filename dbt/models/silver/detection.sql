{%- set grain = ['candid'] -%}
{#- unique_key is the delete scope of an incremental run (every held row of the touched objects), not the grain;
    the grain is meta.grain (and StarRocks' primary key, `keys`), tested unique in silver.yml. -#}
-- depends_on: {{ ref('copy_version') }} (copy_version reads this model's held rows before this run updates them)
{{ config(meta={'grain': grain}, unique_key='objectId', keys=grain, distributed_by=['candid']) }}
{#- Grain: one row per detection (candid), from every alert's candidate and every prv_candidates entry that has a
    candid, across all alerts and schema versions; alerts without objectId (pre-2018) are left out.
    Incremental: the touched objects' detections are recomputed (new copies compete with the kept ones, and the
    dubious flag depends on the object's first detection in the band). -#}
{%- set measured = ['magnr', 'sigmagnr', 'distnr', 'chinr', 'sharpnr'] -%}
{%- set raw = ['candid', 'objectId', 'jd', 'fid', 'pid', 'field', 'rcid', 'rfid', 'ra', dec_col(), 'magpsf',
               'sigmapsf', 'isdiffpos', 'diffmaglim', 'rb', 'drb'] + measured
              + ['sgscore1', 'distpsnr1', source_column_list()] -%}

{#- Each staging model is read once, by one branch: DuckDB materialises a CTE referenced twice (here: every new
    alert's rows at once), and inlines one referenced once, so the unnest streams. -#}
with from_candidate as (
    select {{ raw | join(', ') }}
    from {{ ref('stg_candidate') }}
    where objectId is not null
),

from_history as (
    {#- not in ZTF's prv_candidate (some brokers add them): rfid, drb -#}
    {%- set history_columns = [] -%}
    {%- for col in raw -%}
        {%- do history_columns.append({'rfid': 'cast(null as bigint) as rfid', 'drb': 'cast(null as double) as drb'}
                                      .get(col, col)) -%}
    {%- endfor %}
    select {{ history_columns | join(', ') }}
    from {{ ref('stg_prv_candidate') }}
    where candid is not null
),

incoming as (
    select * from from_candidate
    union all
    select * from from_history
),

best as (
    select * from {{ kept_copies('incoming', raw, ['candid']) }} as kept
),

corrected as (
    select
        *,
        {{ mjd('jd') }} as mjd,
        {{ is_corrected('distnr') }} as is_corrected,
        {{ corr_flux('magnr', 'magpsf', 'isdiffpos') }} as flux_sum,
        power(power(10, -0.4 * magpsf) * sigmapsf, 2) - power(power(10, -0.4 * magnr) * sigmagnr, 2) as radicand
    from best
),

flagged as (
    select
        *,
        first_value(is_corrected) over (partition by objectId, fid order by mjd, candid) as first_is_corrected
    from corrected
)

select
    candid,
    objectId,
    mjd,
    jd,
    {{ jd_to_night('jd') }} as night,
    fid,
    {{ band('fid') }} as band,
    pid,
    field,
    rcid,
    rfid,
    ra,
    {{ dec_col() }},
    magpsf,
    sigmapsf,
    isdiffpos,
    diffmaglim,
    rb,
    drb,
    {{ measured | join(', ') }},
    sgscore1,
    distpsnr1,
    case when is_corrected and flux_sum > 0 then -2.5 * log10(flux_sum) end as mag_corr,
    case when is_corrected and flux_sum > 0 and radicand >= 0 then sqrt(radicand) / flux_sum end as e_mag_corr,
    case when is_corrected and flux_sum > 0 then power(10, -0.4 * magpsf) * sigmapsf / flux_sum end
        as e_mag_corr_ext,
    is_corrected,
    (not is_corrected and coalesce(not isdiffpos, false)) or (is_corrected <> first_is_corrected) as is_dubious,
    {{ is_stellar('is_corrected', 'distpsnr1', 'sgscore1', 'chinr', 'sharpnr') }} as is_stellar,
    {{ source_column_list() }}
from flagged
