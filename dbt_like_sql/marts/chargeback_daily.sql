{{ config(materialized='incremental_by_day', time_column='day') }}

with usage_costs as (

    select * from {{ ref('stg_usage_costs') }}

),

-- unpriced calls carry no currency: fold them into their group's priced line instead of
-- splitting the group into a second line with a null currency
with_currency as (

    select
        * replace (
            coalesce(
                currency,
                max(currency) over (
                    partition by day, cost_center, subscription_id, model, deployment_type
                )
            ) as currency
        )

    from usage_costs

),

final as (

    select
        day,
        cost_center,
        subscription_id,
        model,
        deployment_type,
        count(*) as requests,
        cast(sum(prompt_tokens) as bigint) as prompt_tokens,
        cast(sum(cached_tokens) as bigint) as cached_tokens,
        cast(sum(completion_tokens) as bigint) as completion_tokens,
        cast(sum(total_tokens) as bigint) as total_tokens,
        sum(total_cost) as total_cost,
        currency,
        count(*) filter (where not priced) as unpriced_requests,
        cast(coalesce(sum(total_tokens) filter (where not priced), 0) as bigint) as unpriced_tokens,
        cast(sum(reasoning_tokens) as bigint) as reasoning_tokens,
        cast(sum(images) as bigint) as images,
        sum(input_cost) as input_cost,
        sum(cached_input_cost) as cached_input_cost,
        sum(output_cost) as output_cost,
        sum(image_cost) as image_cost

    from with_currency
    group by day, cost_center, subscription_id, model, deployment_type, currency

)

select * from final
