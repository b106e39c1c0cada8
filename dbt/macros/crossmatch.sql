{#- User-catalog matches (silver.crossmatch_catalog, gold.object_catalog_match). -#}

{#- The catalog versions matched in `relation`, ranked per `scope` (a list of columns) newest first: the latest
    matched_at, then the larger version string. A select of scope..., catalog_version, version_rank (1 = newest). -#}
{% macro catalog_version_ranks(relation, scope) -%}
    select {{ scope | join(', ') }}, catalog_version,
           row_number() over (
               partition by {{ scope | join(', ') }} order by version_matched_at desc, catalog_version desc
           ) as version_rank
    from (
        select {{ scope | join(', ') }}, catalog_version, max(matched_at) as version_matched_at
        from {{ relation }}
        group by {{ scope | join(', ') }}, catalog_version
    ) as matched
{%- endmacro %}
