-- Chargeback cookbook: queries against the marts file (CHARGEBACK_DUCKDB).
--
-- Run them all:        chargeback sql --file docs/cookbook.sql --param user_hash=<hash>
-- Run one:             chargeback sql --file docs/cookbook.sql --name cost-by-team
-- Parameters ($name) are bound by DuckDB from --param, never pasted into the SQL.
-- "This month" / "last month" is the latest month in the data, not the calendar, so the
-- queries also work on `chargeback demo` data from another month.

-- name: cost-by-team
-- cost per cost center in the latest month of chargeback_monthly
select
    month,
    cost_center,
    requests,
    total_tokens,
    total_cost,
    currency
from chargeback_monthly
where month = (select max(month) from chargeback_monthly)
order by total_cost desc nulls last, cost_center;

-- name: user-consumption
-- one user's consumption per month, model and cost center. The lake holds only the keyed
-- pseudonym; compute it with the ingest key (CHARGEBACK_PSEUDONYM_KEY):
--   python -c "import os; from chargeback_pipeline.lib.envelopes import pseudonymise;
--              print(pseudonymise('<user id>', os.environ['CHARGEBACK_PSEUDONYM_KEY'].encode()))"
-- then: chargeback sql --file docs/cookbook.sql --name user-consumption --param user_hash=<hash>
select
    month,
    cost_center,
    model,
    count(*) as requests,
    cast(sum(total_tokens) as bigint) as total_tokens,
    sum(total_cost) as total_cost,
    count(*) filter (where not priced) as unpriced_requests,
    any_value(currency) as currency
from stg_usage_costs
where user_hash = $user_hash
group by month, cost_center, model
order by month, total_cost desc nulls last;

-- name: unallocated-by-subscription
-- spend no cost center claimed (cost_center UNALLOCATED), per subscription, next to its total:
-- subscriptions to tag or to add to the cost-centers seed come first
select
    subscription_id,
    coalesce(sum(total_cost) filter (where cost_center = 'UNALLOCATED'), 0) as unallocated_cost,
    sum(total_cost) as total_cost,
    cast(coalesce(sum(requests) filter (where cost_center = 'UNALLOCATED'), 0) as bigint)
        as unallocated_requests,
    cast(sum(requests) as bigint) as requests
from chargeback_daily
group by subscription_id
order by unallocated_cost desc, subscription_id;

-- name: unpriced-by-model
-- usage nobody could price, per model and deployment type: add these to the price book
select
    model,
    deployment_type,
    cast(sum(unpriced_requests) as bigint) as unpriced_requests,
    cast(sum(unpriced_tokens) as bigint) as unpriced_tokens,
    cast(sum(requests) as bigint) as requests
from chargeback_daily
group by model, deployment_type
order by unpriced_requests desc, model, deployment_type;

-- name: price-change-impact
-- the latest month's tokens at the price in force now (the newest price-book row per model and
-- deployment type) against what was billed; a null current_cost means no current price
with
last_month as (
    select * from lake_usage_costs
    where strftime(timezone('UTC', "timestamp"), '%Y-%m') = (
        select max(strftime(timezone('UTC', "timestamp"), '%Y-%m')) from lake_usage_costs
    )
),
current_prices as (
    select * from stg_price_book
    qualify row_number() over (
        partition by model, deployment_type, unit order by effective_from desc
    ) = 1
),
repriced as (
    select
        last_month.model,
        last_month.deployment_type,
        last_month.total_cost,
        last_month.currency,
        cast((
            (coalesce(last_month.prompt_tokens, 0) - coalesce(last_month.cached_tokens, 0))
                * coalesce(p.input_per_1m, 0)
            + coalesce(last_month.cached_tokens, 0)
                * coalesce(p.cached_input_per_1m, p.input_per_1m, 0)
            + coalesce(last_month.completion_tokens, 0) * coalesce(p.output_per_1m, 0)
        ) / 1000000
        + coalesce(last_month.images, 0) * coalesce(p.per_unit, 0) as decimal(38, 12))
            as current_cost,
        p.model is not null as has_current_price
    from last_month
    left join current_prices as p
        on p.model = last_month.model
        and p.deployment_type = last_month.deployment_type
        and p.unit = case when last_month.operation = 'image_generations'
            then 'image' else 'token' end
)
select
    model,
    deployment_type,
    count(*) as requests,
    sum(total_cost) as billed_cost,
    sum(current_cost) filter (where has_current_price) as current_cost,
    sum(current_cost) filter (where has_current_price)
        - sum(total_cost) filter (where has_current_price) as difference,
    count(*) filter (where not has_current_price) as requests_without_current_price,
    any_value(currency) as currency
from repriced
group by model, deployment_type
order by abs(difference) desc nulls last, model, deployment_type;
