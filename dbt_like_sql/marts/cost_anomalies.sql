with daily as (

    select * from {{ ref('chargeback_daily') }}

),

-- priced cost only: a line nothing was priced on has no amount to compare
cost_center_days as (

    select
        day,
        'cost_center' as scope,
        cost_center,
        currency,
        sum(total_cost) as cost

    from daily
    where currency is not null
    group by day, cost_center, currency

),

total_days as (

    select
        day,
        'total' as scope,
        'TOTAL' as cost_center,
        currency,
        sum(cost) as cost

    from cost_center_days
    group by day, currency

),

days as (

    select * from cost_center_days
    union all
    select * from total_days

),

latest as (

    select max(day) as last_day from days

),

-- a day without usage costs nothing: every series runs on calendar days from its first day
calendar as (

    select
        series.scope,
        series.cost_center,
        series.currency,
        cast(unnest(generate_series(series.first_day, latest.last_day, interval 1 day)) as date)
            as day

    from (
        select scope, cost_center, currency, min(day) as first_day
        from days
        group by scope, cost_center, currency
    ) as series
    cross join latest

),

filled as (

    select
        calendar.day,
        calendar.scope,
        calendar.cost_center,
        calendar.currency,
        coalesce(days.cost, 0) as cost

    from calendar
    left join days using (day, scope, cost_center, currency)

),

windowed as (

    select
        *,
        lag(cost) over series as previous_day_cost,
        sum(cost) over (series rows between 7 preceding and 1 preceding) as trailing_7d_cost,
        count(*) over (series rows between 7 preceding and 1 preceding) as trailing_days,
        cast({{ var('anomaly_threshold') }} as decimal(9, 4)) as anomaly_threshold,
        cast({{ var('anomaly_min_increase') }} as decimal(38, 6)) as anomaly_min_increase

    from filled
    window series as (partition by scope, cost_center, currency order by day)

),

final as (

    select
        day,
        scope,
        cost_center,
        currency,
        cost,
        previous_day_cost,
        -- the mean needs a full week; DuckDB divides decimals in double precision, so the sum
        -- is divided as an integer count of 1e-12 units (exact, truncated at 1e-12)
        case
            when trailing_days = 7
                then cast(
                    cast(trailing_7d_cost * 1000000000000 as hugeint) // 7 as decimal(38, 0)
                ) * 0.000000000001
        end as trailing_7d_mean,
        cast(
            round((cost - previous_day_cost) / nullif(previous_day_cost, 0), 6) as decimal(18, 6)
        ) as day_over_day_change,
        case
            when trailing_days = 7
                then cast(
                    round((cost * 7 - trailing_7d_cost) / nullif(trailing_7d_cost, 0), 6)
                    as decimal(18, 6)
                )
        end as vs_trailing_change,
        anomaly_threshold,
        anomaly_min_increase,
        -- compared as exact decimals (x 7 on both sides) rather than through the rounded ratio
        coalesce(
            trailing_days = 7
            and trailing_7d_cost > 0
            and cost * 7 > trailing_7d_cost * (1 + anomaly_threshold)
            and cost * 7 - trailing_7d_cost > anomaly_min_increase * 7,
            false
        ) as is_anomaly

    from windowed

)

select * from final
