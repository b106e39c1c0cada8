{{ config(unique_key='candid', keys=['candid'], distributed_by=['candid']) }}
{#- Grain: one row per alert (candid). An alert delivered by several sources is kept once: the copy first in
    source_rank_order(). Incremental: the new bronze rows compete with the kept copy of the same candid. -#}
{%- set ps1 = [] -%}
{%- for n in [1, 2, 3] -%}
    {%- do ps1.extend(['sgmag' ~ n, 'srmag' ~ n, 'simag' ~ n, 'szmag' ~ n, 'sgscore' ~ n, 'distpsnr' ~ n]) -%}
{%- endfor -%}
{%- set cleaned = ['magnr', 'sigmagnr', 'distnr', 'chinr', 'sharpnr', 'ranr', 'decnr', 'neargaia', 'maggaia',
                   'neargaiabright', 'maggaiabright', 'ssdistnr', 'ssmagnr'] + ps1 -%}
{%- set columns = ['candid', 'objectId', 'jd', 'mjd', 'night', 'fid', 'band', 'pid', 'programid', 'field', 'rcid',
    'ra', dec_col(), 'magpsf', 'sigmapsf', 'diffmaglim', 'isdiffpos', 'rb', 'rbversion', 'drb', 'drbversion',
    'ndethist', 'ncovhist', 'jdstarthist', 'jdendhist', 'rfid', 'jdstartref', 'jdendref', 'nframesref',
    'magzpsci', 'objectidps1', 'objectidps2', 'objectidps3', 'nmtchps', 'ssnamenr'] + cleaned
    + ['n_prv_candidates', 'n_fp_hists', 'schemavsn', 'publisher', source_column_list()] -%}

with incoming as (
    select
        a.candid,
        a.objectId,
        a.candidate.jd as jd,
        {{ mjd('a.candidate.jd') }} as mjd,
        a.night,
        a.candidate.fid as fid,
        {{ band('a.candidate.fid') }} as band,
        a.candidate.pid as pid,
        a.candidate.programid as programid,
        a.candidate.field as field,
        a.candidate.rcid as rcid,
        a.candidate.ra as ra,
        {{ dec_col('a.candidate.') }} as {{ dec_col() }},
        a.candidate.magpsf as magpsf,
        a.candidate.sigmapsf as sigmapsf,
        a.candidate.diffmaglim as diffmaglim,
        {{ isdiffpos_bool('a.candidate.isdiffpos') }} as isdiffpos,
        a.candidate.rb as rb,
        a.candidate.rbversion as rbversion,
        a.candidate.drb as drb,
        a.candidate.drbversion as drbversion,
        a.candidate.ndethist as ndethist,
        a.candidate.ncovhist as ncovhist,
        a.candidate.jdstarthist as jdstarthist,
        a.candidate.jdendhist as jdendhist,
        a.candidate.rfid as rfid,
        a.candidate.jdstartref as jdstartref,
        a.candidate.jdendref as jdendref,
        a.candidate.nframesref as nframesref,
        a.candidate.magzpsci as magzpsci,
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
        {{ source_columns('a', 'alert') }}
    from {{ bronze_alerts() }} as a
),

{{ candidates_cte(columns, 'candid') }},

ranked as (
    select *, row_number() over (partition by candid order by {{ source_rank_order() }}) as copy_rank
    from candidates
)

select {{ columns | join(', ') }}
from ranked
where copy_rank = 1
