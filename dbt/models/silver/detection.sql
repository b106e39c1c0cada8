{{ config(unique_key='objectId', keys=['candid'], distributed_by=['candid']) }}
{#- Grain: one row per detection (candid), from every alert's candidate and every prv_candidates entry that has a
    candid, across all alerts and schema versions; alerts without objectId (pre-2018) are left out.
    Incremental: the touched objects' detections are recomputed (new copies compete with the kept ones, and the
    dubious flag depends on the object's first detection in the band). -#}
{%- set measured = ['magnr', 'sigmagnr', 'distnr', 'chinr', 'sharpnr'] -%}
{%- set raw = ['candid', 'objectId', 'jd', 'fid', 'pid', 'field', 'rcid', 'rfid', 'ra', dec_col(), 'magpsf',
               'sigmapsf', 'isdiffpos', 'diffmaglim', 'rb', 'drb'] + measured
              + ['sgscore1', 'distpsnr1', source_column_list()] -%}

{#- bronze is read once per branch, not through a shared CTE: DuckDB materialises a CTE referenced twice, i.e.
    every column of every new alert (nested histories included) in memory at once. -#}
with from_candidate as (
    select
        a.candid as candid, a.objectId as objectId,
        {%- for col in ['jd', 'fid', 'pid', 'field', 'rcid', 'rfid', 'ra'] %}
        a.candidate.{{ col }} as {{ col }},
        {%- endfor %}
        {{ dec_col('a.candidate.') }} as {{ dec_col() }},
        a.candidate.magpsf as magpsf,
        a.candidate.sigmapsf as sigmapsf,
        {{ isdiffpos_bool('a.candidate.isdiffpos') }} as isdiffpos,
        a.candidate.diffmaglim as diffmaglim,
        a.candidate.rb as rb,
        a.candidate.drb as drb,
        {%- for col in measured %}
        {{ clean('a.candidate.' ~ col) }} as {{ col }},
        {%- endfor %}
        {{ clean('a.candidate.sgscore1') }} as sgscore1,
        {{ clean('a.candidate.distpsnr1') }} as distpsnr1,
        {{ source_columns('a', 'alert') }}
    from {{ bronze_alerts() }} as a
    where a.objectId is not null
),

from_history as (
    {#- prv_candidates carry no PS1 fields: those of the carrying alert (same position) are used. -#}
    select
        p.candid as candid, a.objectId as objectId,
        {%- for col in ['jd', 'fid', 'pid', 'field', 'rcid'] %}
        p.{{ col }} as {{ col }},
        {%- endfor %}
        cast(null as bigint) as rfid,  {#- not in ZTF's prv_candidate (some brokers add it) #}
        p.ra as ra,
        {{ dec_col('p.') }} as {{ dec_col() }},
        p.magpsf as magpsf,
        p.sigmapsf as sigmapsf,
        {{ isdiffpos_bool('p.isdiffpos') }} as isdiffpos,
        p.diffmaglim as diffmaglim,
        p.rb as rb,
        cast(null as double) as drb,
        {%- for col in measured %}
        {{ clean('p.' ~ col) }} as {{ col }},
        {%- endfor %}
        {{ clean('a.candidate.sgscore1') }} as sgscore1,
        {{ clean('a.candidate.distpsnr1') }} as distpsnr1,
        {{ source_columns('a', 'prv_candidate') }}
    from {{ unnest_from(bronze_alerts(), 'a', 'prv_candidates', 'p') }}
    where a.objectId is not null and p.candid is not null
),

incoming as (
    select * from from_candidate
    union all
    select * from from_history
),

{{ best_copy_ctes(raw, 'candid') }},

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
