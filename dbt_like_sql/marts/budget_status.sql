with budgets as (

    select * from {{ ref('stg_budgets') }}

),

daily as (

    select * from {{ ref('chargeback_daily') }}

),

spend_days as (

    select
        day,
        cost_center,
        currency,
        sum(total_cost) as cost

    from daily
    where currency is not null
    group by day, cost_center, currency

),

-- the data's latest day stands for "today": the mart depends on the lake, not on the clock
observed as (

    select
        min(day) as first_day,
        max(day) as as_of_day

    from daily

),

budget_months as (

    select
        budgets.cost_center,
        budgets.month,
        budgets.amount,
        budgets.currency,
        budgets.month_start,
        budgets.next_month_start,
        observed.as_of_day,
        datediff('day', budgets.month_start, budgets.next_month_start) as days_in_month,
        least(
            datediff('day', budgets.month_start, observed.as_of_day) + 1,
            datediff('day', budgets.month_start, budgets.next_month_start)
        ) as days_elapsed,
        -- the trailing week ends on the as-of day and starts no earlier than the data
        cast(least(7, datediff('day', observed.first_day, observed.as_of_day) + 1) as integer)
            as window_days

    from budgets
    cross join observed
    -- months the data reaches into; later budgets have nothing to report yet
    where budgets.month_start <= observed.as_of_day
        and budgets.next_month_start > observed.first_day

),

spent as (

    select
        budget_months.cost_center,
        budget_months.month,
        budget_months.currency,
        coalesce(
            sum(spend_days.cost) filter (
                where spend_days.day >= budget_months.month_start
                and spend_days.day < budget_months.next_month_start
            ),
            0
        ) as spent,
        coalesce(
            sum(spend_days.cost) filter (
                where spend_days.day > budget_months.as_of_day - budget_months.window_days
            ),
            0
        ) as trailing_7d_cost

    from budget_months
    left join spend_days
        on spend_days.cost_center = budget_months.cost_center
        and spend_days.currency = budget_months.currency
        and spend_days.day <= budget_months.as_of_day
    group by budget_months.cost_center, budget_months.month, budget_months.currency

),

forecasts as (

    select
        budget_months.*,
        spent.spent,
        spent.trailing_7d_cost,
        budget_months.days_in_month - budget_months.days_elapsed as days_remaining,
        -- DuckDB divides decimals in double precision: money is divided as an integer count of
        -- 1e-12 units instead (exact, truncated at 1e-12)
        cast(
            cast(spent.spent * budget_months.days_in_month * 1000000000000 as hugeint)
            // budget_months.days_elapsed as decimal(38, 0)
        ) * 0.000000000001 as forecast_linear,
        spent.spent + cast(
            cast(
                spent.trailing_7d_cost
                * (budget_months.days_in_month - budget_months.days_elapsed)
                * 1000000000000 as hugeint
            ) // budget_months.window_days as decimal(38, 0)
        ) * 0.000000000001 as forecast_trailing_7d

    from budget_months
    inner join spent using (cost_center, month, currency)

),

final as (

    select
        month,
        cost_center,
        currency,
        amount,
        spent,
        amount - spent as remaining,
        cast(round(spent / nullif(amount, 0), 6) as decimal(18, 6)) as share_spent,
        as_of_day,
        days_elapsed,
        days_in_month,
        forecast_linear,
        forecast_trailing_7d,
        case
            when spent > amount then 'over'
            when greatest(forecast_linear, forecast_trailing_7d) > amount * 0.9 then 'warn'
            else 'ok'
        end as status

    from forecasts

)

select * from final
