{{ config(materialized='incremental_by_day', time_column='day') }}

with quarantined as (

    select * from {{ ref('stg_quarantined_envelopes') }}

),

final as (

    select
        day,
        reason_code,
        count(*) as envelopes,
        count(distinct request_id) as request_ids,
        min(detected_at) as first_detected_at,
        max(detected_at) as last_detected_at

    from quarantined
    group by day, reason_code

)

select * from final
