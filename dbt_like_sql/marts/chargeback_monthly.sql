with daily as (

    select * from {{ ref('chargeback_daily') }}

),

with_month as (

    select
        strftime(day, '%Y-%m') as month,
        *

    from daily

),

-- a day with only unpriced calls has no currency: count it on the cost center's priced line
with_currency as (

    select
        * replace (
            coalesce(
                currency, max(currency) over (partition by month, cost_center)
            ) as currency
        )

    from with_month

),

final as (

    select
        month,
        cost_center,
        cast(sum(requests) as bigint) as requests,
        cast(sum(total_tokens) as bigint) as total_tokens,
        sum(total_cost) as total_cost,
        currency,
        cast(sum(unpriced_requests) as bigint) as unpriced_requests,
        cast(sum(unpriced_tokens) as bigint) as unpriced_tokens,
        cast(sum(prompt_tokens) as bigint) as prompt_tokens,
        cast(sum(cached_tokens) as bigint) as cached_tokens,
        cast(sum(completion_tokens) as bigint) as completion_tokens,
        cast(sum(reasoning_tokens) as bigint) as reasoning_tokens,
        cast(sum(images) as bigint) as images,
        count(distinct subscription_id) as subscriptions

    from with_currency
    group by month, cost_center, currency

)

select * from final
