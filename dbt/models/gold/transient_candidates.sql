{{ config(materialized='view', meta={'grain': ['objectId']}) }}
{#- Grain: one row per object passing the transient filter (objectId). Each criterion is a column (its value and
    whether it passes), so a reader sees why an object is here:
      real      latest alert's deep real-bogus drb >= var candidate_min_drb (0.5), or, for alerts from before drb
                existed, rb >= var candidate_min_rb (0.55);
      not star  the object is not `is_stellar` (ALeRCE: first detection near a ZTF reference source that PS1 or
                its shape calls a star);
      not SSO   no alert had a known solar-system object within var candidate_asteroid_max_ssdist_arcsec (5");
      repeated  at least var candidate_min_detections (2) detections.
    A view: always consistent with gold.object, nothing to refresh. -#}
with scored as (
    select
        objectId,
        meanra,
        meandec,
        firstmjd,
        lastmjd,
        ndet,
        last_candid,
        coalesce(last_drb, last_rb) as realbogus,
        case when last_drb is not null then 'drb' when last_rb is not null then 'rb' end as realbogus_kind,
        case
            when last_drb is not null then last_drb >= {{ var('candidate_min_drb') }}
            else coalesce(last_rb >= {{ var('candidate_min_rb') }}, false)
        end as passes_real_bogus,
        is_stellar,
        not is_stellar as passes_not_stellar,
        min_ssdist_arcsec,
        coalesce(min_ssdist_arcsec >= {{ var('candidate_asteroid_max_ssdist_arcsec') }}, true) as passes_not_asteroid,
        ndet >= {{ var('candidate_min_detections') }} as passes_min_detections
    from {{ ref('object') }}
)

select *
from scored
where passes_real_bogus and passes_not_stellar and passes_not_asteroid and passes_min_detections
