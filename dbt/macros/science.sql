{#- ZTF / ALeRCE conventions shared by the models (../shared/docs/field-notes.md; docs/data-model.md). -#}

{% macro mjd(jd) -%} ({{ jd }} - 2400000.5) {%- endmacro %}

{% macro band(fid) -%}
    case {{ fid }} when 1 then 'g' when 2 then 'r' when 3 then 'i' end
{%- endmacro %}

{#- ZTF's isdiffpos ('t'/'1' positive, 'f'/'0' negative) as a boolean. -#}
{% macro isdiffpos_bool(expr) -%}
    case when {{ expr }} in ('t', '1') then true when {{ expr }} in ('f', '0') then false end
{%- endmacro %}

{#- ZTF fills "no value" with -999 (distances, reference and catalogue magnitudes, scores): NULL here. -#}
{% macro clean(expr) -%}
    case when {{ expr }} > -999 then {{ expr }} end
{%- endmacro %}

{#- Quoted `dec` (a keyword in some dialects). -#}
{% macro dec_col(prefix='') -%}
    {{ prefix }}{{ adapter.quote('dec') }}
{%- endmacro %}

{#- A detection is corrected (its reference-source flux can be added back) when a ZTF reference source lies
    within 1.4 arcsec. -#}
{% macro is_corrected(distnr) -%}
    coalesce({{ distnr }} < {{ var('corrected_max_distnr_arcsec') }}, false)
{%- endmacro %}

{#- Flux sum of the reference source and the signed difference: 10^(-0.4 magnr) + s 10^(-0.4 magpsf). -#}
{% macro corr_flux(magnr, magpsf, isdiffpos) -%}
    (power(10, -0.4 * {{ magnr }}) + case when {{ isdiffpos }} then 1 else -1 end * power(10, -0.4 * {{ magpsf }}))
{%- endmacro %}

{#- Stellar: near a ZTF reference source and either PS1 says star (distpsnr1 < 1.4, sgscore1 > 0.4) or, with no
    PS1 source that close or none at all (distpsnr1 NULL: ZTF's -999), the reference source's shape says star
    (chinr < 2, -0.13 < sharpnr < 0.1), as ALeRCE's rule falls back. -#}
{% macro is_stellar(corrected, distpsnr1, sgscore1, chinr, sharpnr) -%}
    ({{ corrected }} and (
        coalesce({{ distpsnr1 }} < 1.4 and {{ sgscore1 }} > 0.4, false)
        or coalesce(({{ distpsnr1 }} is null or {{ distpsnr1 }} >= 1.4)
                    and {{ chinr }} < 2 and {{ sharpnr }} > -0.13 and {{ sharpnr }} < 0.1, false)))
{%- endmacro %}

{#- Astrometric 1-sigma of a detection in band `fid`, arcsec. -#}
{% macro position_sigma(fid) -%}
    case {{ fid }}
    {%- for f, s in var('position_sigma_arcsec').items() %} when {{ f }} then {{ s }}{% endfor %} end
{%- endmacro %}

{#- Great-circle distance between two positions given in degrees, arcsec (haversine; exact to float precision at
    the arcsec scales of cross-matches, and right across ra = 0/360 and at the poles). -#}
{% macro great_circle_arcsec(ra1, dec1, ra2, dec2) -%}
    (3600.0 * degrees(2.0 * asin(least(1.0, sqrt(
        power(sin(radians({{ dec2 }} - {{ dec1 }}) / 2.0), 2)
        + cos(radians({{ dec1 }})) * cos(radians({{ dec2 }})) * power(sin(radians({{ ra2 }} - {{ ra1 }}) / 2.0), 2))))))
{%- endmacro %}
