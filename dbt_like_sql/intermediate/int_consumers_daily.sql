{{ config(materialized='incremental_by_day', time_column='day') }}

with usage_costs as (

    select * from {{ ref('stg_usage_costs') }}

),

-- priced usage per day, consumer and cost center: top_consumers sums its months from these
-- few rows instead of every call; user_hash is the keyed pseudonym, never the user id
priced as (

    select * from usage_costs where priced

),

by_app as (

    select
        day,
        month,
        'app' as consumer_type,
        app_id as consumer,
        cost_center,
        currency,
        count(*) as requests,
        cast(sum(total_tokens) as bigint) as total_tokens,
        sum(total_cost) as total_cost

    from priced
    where app_id is not null
    group by day, month, app_id, cost_center, currency

),

by_user as (

    select
        day,
        month,
        'user' as consumer_type,
        user_hash as consumer,
        cost_center,
        currency,
        count(*) as requests,
        cast(sum(total_tokens) as bigint) as total_tokens,
        sum(total_cost) as total_cost

    from priced
    where user_hash is not null
    group by day, month, user_hash, cost_center, currency

),

final as (

    select * from by_app
    union all
    select * from by_user

)

select * from final
