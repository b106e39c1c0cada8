{{ config(materialized='ephemeral') }}
{#- Staging (ephemeral: inlined into its consumers as a CTE, never stored): one row per copy of an alert's own
    `candidate` in bronze.alert (an alert delivered by several sources gives several rows), typed and cleaned
    (docs/data-model.md, Conventions), with the carrying alert's lineage columns (source_columns()) and whether the
    copy's jd agrees with the time its candid encodes (src_jd_agrees: the first term of the provenance order,
    source_rank_order()). The consumers keep the first copy in that order (kept_copies()). New rows only when every consumer is updated in place
    (ateda_is_incremental()). -#}
{%- set cleaned = ztf_cleaned_columns() -%}
select
    a.candid,
    a.objectId,
    a.candidate.jd as jd,
    {{ mjd('a.candidate.jd') }} as mjd,
    a.night,
    a.candidate.fid as fid,
    {{ band('a.candidate.fid') }} as band,
    {%- for col in ['pid', 'programid', 'field', 'rcid', 'ra'] %}
    a.candidate.{{ col }} as {{ col }},
    {%- endfor %}
    {{ dec_col('a.candidate.') }} as {{ dec_col() }},
    a.candidate.magpsf as magpsf,
    a.candidate.sigmapsf as sigmapsf,
    a.candidate.diffmaglim as diffmaglim,
    {{ isdiffpos_bool('a.candidate.isdiffpos') }} as isdiffpos,
    {%- for col in ['rb', 'rbversion', 'drb', 'drbversion', 'ndethist', 'ncovhist', 'jdstarthist', 'jdendhist',
                    'rfid', 'jdstartref', 'jdendref', 'nframesref', 'magzpsci'] %}
    a.candidate.{{ col }} as {{ col }},
    {%- endfor %}
    {%- for n in [1, 2, 3] %}
    case when a.candidate.objectidps{{ n }} > 0 then a.candidate.objectidps{{ n }} end as objectidps{{ n }},
    {%- endfor %}
    a.candidate.nmtchps as nmtchps,
    case when a.candidate.ssnamenr <> 'null' then a.candidate.ssnamenr end as ssnamenr,
    {%- for col in cleaned %}
    {{ clean('a.candidate.' ~ col) }} as {{ col }},
    {%- endfor %}
    {{ list_length('a.prv_candidates') }} as n_prv_candidates,
    {{ list_length('a.fp_hists') }} as n_fp_hists,
    a.schemavsn,
    a.publisher,
    {{ jd_agrees('a.candidate.jd', 'a.candid') }} as src_jd_agrees,
    {{ source_columns('a', 'alert') }}
from {{ bronze_alerts() }} as a
