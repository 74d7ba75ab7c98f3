{{ config(materialized='incremental_by_day', time_column='day') }}

with usage_costs as (

    select * from {{ ref('stg_usage_costs') }}

),

deployments as (

    select * from {{ ref('stg_deployments') }}

),

price_book as (

    select * from {{ ref('stg_price_book') }}

),

ptu_deployments as (

    select
        deployment,
        backend_id,
        -- the pay-as-you-go deployment type of the same scope (regional, global, data zone)
        case deployment_type
            when 'ProvisionedManaged' then 'Standard'
            when 'GlobalProvisionedManaged' then 'GlobalStandard'
            when 'DataZoneProvisionedManaged' then 'DataZoneStandard'
        end as paygo_deployment_type

    from deployments
    where billing = 'ptu'

),

-- calls the reservation served; calls refused before a backend was chosen never reached it
ptu_calls as (

    select
        usage_costs.hour,
        usage_costs.day,
        usage_costs.cost_center,
        usage_costs.total_tokens,
        ptu_deployments.deployment,
        ptu_deployments.backend_id,
        -- what the same tokens cost pay-as-you-go, with the price in force at the call
        (
            (usage_costs.prompt_tokens - usage_costs.cached_tokens) * paygo.input_per_1m
            + usage_costs.cached_tokens * coalesce(paygo.cached_input_per_1m, paygo.input_per_1m)
            + usage_costs.completion_tokens * coalesce(paygo.output_per_1m, 0)
        ) * 0.000001 as paygo_cost

    from usage_costs
    inner join ptu_deployments using (deployment, backend_id)
    left join price_book as paygo
        on paygo.model = usage_costs.model
        and paygo.deployment_type = ptu_deployments.paygo_deployment_type
        and paygo.unit = 'token'
        and paygo.effective_from <= usage_costs.requested_at
        and (paygo.effective_to is null or usage_costs.requested_at < paygo.effective_to)

),

final as (

    select
        hour,
        day,
        deployment,
        backend_id,
        cost_center,
        count(*) as requests,
        cast(sum(total_tokens) as bigint) as total_tokens,
        sum(paygo_cost) as paygo_equivalent_cost,
        count(*) filter (where paygo_cost is null and total_tokens > 0) as paygo_unpriced_requests

    from ptu_calls
    group by hour, day, deployment, backend_id, cost_center

)

select * from final
