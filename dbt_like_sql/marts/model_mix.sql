with daily as (

    select * from {{ ref('chargeback_daily') }}

),

with_month as (

    select
        strftime(day, '%Y-%m') as month,
        *

    from daily

),

-- a model never priced in some deployment type joins the model's priced line
with_currency as (

    select
        * replace (
            coalesce(
                currency, max(currency) over (partition by month, cost_center, model)
            ) as currency
        )

    from with_month

),

by_model as (

    select
        month,
        cost_center,
        model,
        currency,
        cast(sum(requests) as bigint) as requests,
        cast(sum(prompt_tokens) as bigint) as prompt_tokens,
        cast(sum(completion_tokens) as bigint) as completion_tokens,
        cast(sum(total_tokens) as bigint) as total_tokens,
        cast(sum(images) as bigint) as images,
        sum(total_cost) as total_cost,
        cast(sum(unpriced_requests) as bigint) as unpriced_requests

    from with_currency
    group by month, cost_center, model, currency

),

final as (

    select
        *,
        -- a ratio, not money: rounded to 6 decimals
        cast(
            round(
                total_cost
                / nullif(sum(total_cost) over (partition by month, cost_center, currency), 0),
                6
            ) as decimal(9, 6)
        ) as share_of_cost

    from by_model

)

select * from final
