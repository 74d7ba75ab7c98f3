{{ config(materialized='incremental_by_day', time_column='day') }}

with source as (

    select * from {{ source('lake', 'quarantined_envelopes') }}

),

final as (

    select
        source as source_path,
        source_line,
        request_id,
        hour,
        cast(try_strptime(hour, '%Y-%m-%d-%H:%M') as date) as day,
        -- reasons start with a stable code ("not_json: ..."); the rest is free text
        trim(split_part(reason, ':', 1)) as reason_code,
        reason,
        detected_at

    from source

)

select * from final
