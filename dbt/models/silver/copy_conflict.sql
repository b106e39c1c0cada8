{{ config(materialized='view', meta={'grain': ['kind', 'conflict_key', 'variant']}) }}
{#- Data quality: every disagreement between copies of one detection (candid), upper limit (objectId, fid, jd) or
    forced-photometry point (objectId, pid): for each such key, the version silver keeps (is_kept) and each
    version that differs from it (differs_from_kept: the fields where both have a value and the values differ),
    with its source (src_key: the bucket key, src_member, src_part; src_alert_candid: the alert that carried it;
    src_kind: the alert's own candidate, a history row or a forced-photometry entry) and why the kept copy won
    (kept_because). A view of silver.copy_version (which also holds the versions that only lack a field), so it is
    always consistent with it; its row count is the data-quality metric. -#}
select kind, conflict_key, variant, objectId, candid, is_kept, n_versions, differs_from_kept, kept_because,
    {{ copy_fields() | join(', ') }},
    {{ source_column_list() }}
from {{ ref('copy_version') }}
where has_conflict and (is_kept or differs_from_kept is not null)
