{{ config(materialized='ephemeral') }}
{#- Staging (ephemeral): one row per entry of an alert's `prv_candidates` (the object's 30-day history) in
    bronze.alert, for alerts with an objectId: detections (candid set) and upper limits (candid NULL) alike, as
    many copies as alerts repeat them, typed and cleaned, with the carrying alert's lineage columns. prv_candidates
    carry no PS1 fields: sgscore1/distpsnr1 are the carrying alert's (same position). The unnest is a streaming
    select-list unnest (unnest_from()); each consumer reads this once. -#}
{%- set measured = ['magnr', 'sigmagnr', 'distnr', 'chinr', 'sharpnr'] -%}
select
    p.candid as candid,
    a.objectId as objectId,
    {%- for col in ['jd', 'fid', 'pid', 'field', 'rcid', 'ra'] %}
    p.{{ col }} as {{ col }},
    {%- endfor %}
    {{ dec_col('p.') }} as {{ dec_col() }},
    p.magpsf as magpsf,
    p.sigmapsf as sigmapsf,
    {{ isdiffpos_bool('p.isdiffpos') }} as isdiffpos,
    p.diffmaglim as diffmaglim,
    p.rb as rb,
    {%- for col in measured %}
    {{ clean('p.' ~ col) }} as {{ col }},
    {%- endfor %}
    {{ clean('a.candidate.sgscore1') }} as sgscore1,
    {{ clean('a.candidate.distpsnr1') }} as distpsnr1,
    {#- a detection's time is in its candid, an upper limit's in its pid -#}
    case when p.candid is not null then {{ jd_agrees('p.jd', 'p.candid') }}
         else {{ jd_agrees('p.jd', 'p.pid', 'pid') }} end as src_jd_agrees,
    {{ source_columns('a', 'prv_candidate') }}
from {{ unnest_from(bronze_alerts(), 'a', 'prv_candidates', 'p') }}
where a.objectId is not null
