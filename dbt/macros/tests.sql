{#- Generic tests of our own (no dbt packages: they would have to be downloaded). -#}

{% test ateda_unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{% test ateda_expression_is_true(model, expression) %}
select *
from {{ model }}
where not ({{ expression }})
{% endtest %}

{#- Every non-NULL `column_name` value of the model `of` is also in the tested model (a relationships test seen
    from the parent: lets a gold model vouch for its silver inputs without silver's tests needing gold). -#}
{% test ateda_holds_every(model, column_name, of) %}
select distinct o.{{ column_name }}
from {{ of }} as o
where o.{{ column_name }} is not null
  and o.{{ column_name }} not in (select m.{{ column_name }} from {{ model }} as m where m.{{ column_name }} is not null)
{% endtest %}
