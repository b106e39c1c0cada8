{#- silver and gold are schema names of their own (not `<target schema>_silver`): the same on both targets. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}
