with consumers_daily as (

    select * from {{ ref('int_consumers_daily') }}

),

-- ranked by priced cost, summed from the day-grained model
consumers as (

    select
        month,
        consumer_type,
        consumer,
        currency,
        cast(sum(requests) as bigint) as requests,
        cast(sum(total_tokens) as bigint) as total_tokens,
        sum(total_cost) as total_cost,
        count(distinct cost_center) as cost_centers

    from consumers_daily
    group by month, consumer_type, consumer, currency

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
