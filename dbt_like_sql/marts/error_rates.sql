{{ config(materialized='incremental_by_day', time_column='day') }}

with usage_costs as (

    select * from {{ ref('stg_usage_costs') }}

),

hourly as (

    select
        hour,
        day,
        subscription_id,
        deployment,
        count(*) as requests,
        count(*) filter (where status_code >= 400) as errors,
        count(*) filter (where status_code = 429) as throttled,
        count(*) filter (where status_code >= 500) as server_errors

    from usage_costs
    group by hour, day, subscription_id, deployment

),

final as (

    select
        hour,
        timezone('UTC', try_strptime(hour, '%Y-%m-%d-%H:%M')) as hour_start,
        day,
        subscription_id,
        deployment,
        requests,
        errors,
        throttled,
        server_errors,
        cast(round(errors / requests, 6) as decimal(9, 6)) as error_rate,
        -- more than 5% of the calls failed; integer arithmetic, no rounding at the boundary
        errors * 20 > requests as is_high_error_rate

    from hourly

)

select * from final
