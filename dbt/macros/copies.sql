{#- Copies of one measurement and the conflicts between them (silver.copy_conflict; docs/data-model.md). -#}

{#- The fields compared between copies, per kind of row (what a re-serialising broker could have edited; the
    carrying alert's own columns, rfid/drb of a candidate and its PS1 neighbours, are not the measurement's). -#}
{% macro copy_fields(kind=none) -%}
    {%- set fields = {
        'detection': ['jd', 'fid', 'pid', 'field', 'rcid', 'ra', dec_col(), 'magpsf', 'sigmapsf', 'isdiffpos',
                      'diffmaglim', 'rb', 'magnr', 'sigmagnr', 'distnr', 'chinr', 'sharpnr'],
        'non_detection': ['jd', 'fid', 'pid', 'field', 'rcid', 'diffmaglim'],
        'forced_photometry': ['jd', 'fid', 'pid', 'field', 'rcid', 'rfid', 'procstatus', 'forcediffimflux',
                              'forcediffimfluxunc', 'magzpsci', 'magzpsciunc', 'diffmaglim', 'exptime',
                              'sciinpseeing', 'distnr', 'magnr', 'sigmagnr']} -%}
    {%- if kind is not none -%}{{ return(fields[kind]) }}{%- endif -%}
    {%- set all_fields = [] -%}
    {%- for f in fields['detection'] + fields['forced_photometry'] -%}
        {%- if f not in all_fields %}{% do all_fields.append(f) %}{% endif -%}
    {%- endfor -%}
    {{ return(all_fields) }}
{%- endmacro %}

{% macro copy_field_type(f) -%}
    {{- return({'fid': 'bigint', 'pid': 'bigint', 'field': 'bigint', 'rcid': 'bigint', 'rfid': 'bigint',
                'isdiffpos': 'boolean', 'procstatus': 'varchar'}.get(f, 'double')) -}}
{%- endmacro %}

{#- The key copies of one measurement share, as text: a detection's candid; an upper limit's or a forced-photometry
    point's (objectId, pid): the image it was measured on (an upper limit without pid: (objectId, fid, jd), its
    silver grain). Not jd: a re-serialiser that edits jd (one gave every history row the same jd) would make copies
    of one limit look like different limits, and different limits look like copies of one. -#}
{% macro conflict_key(kind, alias) -%}
    {%- if kind == 'detection' -%}
        cast({{ alias }}.candid as varchar)
    {%- elif kind == 'non_detection' -%}
        case when {{ alias }}.pid is not null then concat({{ alias }}.objectId, '/', cast({{ alias }}.pid as varchar))
             else concat({{ alias }}.objectId, '/', cast({{ alias }}.fid as varchar), '/',
                         cast({{ alias }}.jd as varchar)) end
    {%- else -%}
        concat({{ alias }}.objectId, '/', cast({{ alias }}.pid as varchar))
    {%- endif -%}
{%- endmacro %}

{#- One kind's copy as a copy_conflict input row: its compared fields, NULL for the other kinds' fields. -#}
{% macro copy_columns(kind, alias, candid) -%}
    {%- set mine = copy_fields(kind) -%}
    '{{ kind }}' as kind,
    {{ conflict_key(kind, alias) }} as conflict_key,
    {{ alias }}.objectId as objectId,
    {{ candid }} as candid,
    {%- for f in copy_fields() %}
    {% if f in mine %}{{ alias }}.{{ f }}{% else %}cast(null as {{ copy_field_type(f) }}){% endif %} as {{ f }},
    {%- endfor %}
    {%- for c in ['src_jd_agrees', 'src_kind', 'src_alert_candid', 'src_alert_jd', 'src_schema_version', 'src_key',
                  'src_member', 'src_part', 'ingested_at'] %}
    {{ alias }}.{{ c }} as {{ c }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}
