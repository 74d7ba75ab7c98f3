with ptu_usage as (

    select * from {{ ref('int_ptu_usage_hourly') }}

),

usage_costs as (

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
        model,
        deployment_type

    from deployments
    where billing = 'ptu'

),

-- the calls each reservation served per hour and cost center, from the day-grained model
usage_by_cost_center as (

    select
        hour,
        deployment,
        backend_id,
        cost_center,
        requests,
        total_tokens,
        paygo_equivalent_cost,
        paygo_unpriced_requests

    from ptu_usage

),

-- a reservation is billed every hour, used or not: every hour the lake covers
hours as (

    select
        strftime(
            unnest(
                generate_series(
                    try_strptime(min(hour), '%Y-%m-%d-%H:%M'),
                    try_strptime(max(hour), '%Y-%m-%d-%H:%M'),
                    interval 1 hour
                )
            ),
            '%Y-%m-%d-%H:00'
        ) as hour

    from usage_costs

),

deployment_hours as (

    select
        hours.hour,
        timezone('UTC', try_strptime(hours.hour, '%Y-%m-%d-%H:%M')) as hour_start,
        ptu_deployments.deployment,
        ptu_deployments.backend_id,
        ptu_deployments.model,
        ptu_deployments.deployment_type

    from hours
    cross join ptu_deployments

),

priced_hours as (

    select
        deployment_hours.*,
        ptu_price.per_unit as hourly_cost,
        ptu_price.currency

    from deployment_hours
    left join price_book as ptu_price
        on ptu_price.model = deployment_hours.model
        and ptu_price.deployment_type = deployment_hours.deployment_type
        and ptu_price.unit = 'ptu_hour'
        and ptu_price.effective_from <= deployment_hours.hour_start
        and (ptu_price.effective_to is null or deployment_hours.hour_start < ptu_price.effective_to)

),

-- an hour without calls is idle capacity, charged to UNALLOCATED; an hour without a price row
-- is before the reservation existed, unless it served calls (then its cost is unknown: null)
allocated as (

    select
        priced_hours.hour,
        priced_hours.hour_start,
        priced_hours.deployment,
        priced_hours.backend_id,
        priced_hours.model,
        priced_hours.deployment_type,
        coalesce(usage_by_cost_center.cost_center, 'UNALLOCATED') as cost_center,
        coalesce(usage_by_cost_center.requests, 0) as requests,
        coalesce(usage_by_cost_center.total_tokens, 0) as total_tokens,
        -- idle: nothing served, nothing to compare; null when no call had a pay-as-you-go price
        case
            when usage_by_cost_center.requests is null then 0
            else usage_by_cost_center.paygo_equivalent_cost
        end as paygo_equivalent_cost,
        coalesce(usage_by_cost_center.paygo_unpriced_requests, 0) as paygo_unpriced_requests,
        priced_hours.hourly_cost,
        priced_hours.currency,
        sum(coalesce(usage_by_cost_center.total_tokens, 0)) over hour_of_deployment as hour_tokens,
        sum(coalesce(usage_by_cost_center.requests, 0)) over hour_of_deployment as hour_requests

    from priced_hours
    left join usage_by_cost_center using (hour, deployment, backend_id)
    where priced_hours.hourly_cost is not null or usage_by_cost_center.requests is not null
    window hour_of_deployment as (
        partition by priced_hours.hour, priced_hours.deployment, priced_hours.backend_id
    )

),

final as (

    select
        hour,
        hour_start,
        cast(timezone('UTC', hour_start) as date) as day,
        deployment,
        backend_id,
        model,
        deployment_type,
        cost_center,
        requests,
        total_tokens,
        cast(
            round(
                case
                    when hour_tokens > 0 then total_tokens / hour_tokens
                    when hour_requests > 0 then requests / hour_requests
                    else 1
                end,
                6
            ) as decimal(9, 6)
        ) as token_share,
        hourly_cost,
        -- the hour's cost by token share (by request share when no call had tokens); DuckDB
        -- divides decimals in double precision, so 1e-12 units are divided as integers
        cast(
            case
                when hour_tokens > 0
                    then cast(hourly_cost * 1000000000000 as hugeint) * total_tokens // hour_tokens
                when hour_requests > 0
                    then cast(hourly_cost * 1000000000000 as hugeint) * requests // hour_requests
                else cast(hourly_cost * 1000000000000 as hugeint)
            end as decimal(38, 0)
        ) * 0.000000000001 as ptu_cost,
        paygo_equivalent_cost,
        paygo_unpriced_requests,
        currency

    from allocated

)

select * from final
