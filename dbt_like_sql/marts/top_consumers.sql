with usage_costs as (

    select * from {{ ref('stg_usage_costs') }}

),

-- ranked by priced cost; user_hash is the keyed pseudonym, the only user column in the lake
priced as (

    select * from usage_costs where priced

),

by_app as (

    select
        month,
        'app' as consumer_type,
        app_id as consumer,
        currency,
        count(*) as requests,
        cast(sum(total_tokens) as bigint) as total_tokens,
        sum(total_cost) as total_cost,
        count(distinct cost_center) as cost_centers

    from priced
    where app_id is not null
    group by month, app_id, currency

),

by_user as (

    select
        month,
        'user' as consumer_type,
        user_hash as consumer,
        currency,
        count(*) as requests,
        cast(sum(total_tokens) as bigint) as total_tokens,
        sum(total_cost) as total_cost,
        count(distinct cost_center) as cost_centers

    from priced
    where user_hash is not null
    group by month, user_hash, currency

),

consumers as (

    select * from by_app
    union all
    select * from by_user

),

ranked as (

    select
        *,
        row_number() over (
            partition by month, consumer_type, currency order by total_cost desc, consumer
        ) as rank,
        cast(
            round(
                total_cost
                / nullif(sum(total_cost) over (partition by month, consumer_type, currency), 0),
                6
            ) as decimal(9, 6)
        ) as share_of_cost

    from consumers

),

final as (

    select
        month,
        consumer_type,
        rank,
        consumer,
        requests,
        total_tokens,
        total_cost,
        share_of_cost,
        currency,
        cost_centers

    from ranked
    -- the top ten of each kind per month
    where rank <= 10

)

select * from final
