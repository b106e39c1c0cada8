{%- set grain = ['candid'] -%}
{#- unique_key is the delete scope of an incremental run (delete+insert removes the held rows with these values),
    not the grain; the grain is meta.grain (and StarRocks' primary key, `keys`), tested unique in silver.yml. -#}
{{ config(meta={'grain': grain}, unique_key='candid', keys=grain, distributed_by=['candid']) }}
{#- Grain: one row per alert (candid). An alert delivered by several sources is kept once: the copy first in
    source_rank_order(). Incremental: the new bronze rows compete with the kept copy of the same candid. -#}
{%- set cleaned = ztf_cleaned_columns() -%}
{%- set columns = ['candid', 'objectId', 'jd', 'mjd', 'night', 'fid', 'band', 'pid', 'programid', 'field', 'rcid',
    'ra', dec_col(), 'magpsf', 'sigmapsf', 'diffmaglim', 'isdiffpos', 'rb', 'rbversion', 'drb', 'drbversion',
    'ndethist', 'ncovhist', 'jdstarthist', 'jdendhist', 'rfid', 'jdstartref', 'jdendref', 'nframesref',
    'magzpsci', 'objectidps1', 'objectidps2', 'objectidps3', 'nmtchps', 'ssnamenr'] + cleaned
    + ['n_prv_candidates', 'n_fp_hists', 'schemavsn', 'publisher', source_column_list()] -%}

with incoming as (
    select * from {{ ref('stg_candidate') }}
)

select {{ columns | join(', ') }}
from {{ kept_copies('incoming', columns, grain, scope='candid') }} as kept
