{{ config(materialized='incremental_by_day', time_column='ChargePeriodStart') }}

with usage_costs as (

    select * from {{ ref('stg_usage_costs') }}

),

-- as in chargeback_daily: unpriced calls join their group's priced line
with_currency as (

    select
        * replace (
            coalesce(
                currency,
                max(currency) over (
                    partition by day, cost_center, subscription_id, model, deployment_type, operation
                )
            ) as currency
        )

    from usage_costs

),

daily as (

    select
        day,
        cost_center,
        subscription_id,
        any_value(subscription_name) as subscription_name,
        model,
        deployment_type,
        operation,
        currency,
        count(*) as requests,
        count(*) filter (where not priced) as unpriced_requests,
        cast(sum(prompt_tokens) as bigint) as prompt_tokens,
        cast(sum(cached_tokens) as bigint) as cached_tokens,
        cast(sum(completion_tokens) as bigint) as completion_tokens,
        cast(sum(reasoning_tokens) as bigint) as reasoning_tokens,
        cast(sum(total_tokens) as bigint) as total_tokens,
        cast(sum(images) as bigint) as images,
        sum(input_cost) as input_cost,
        sum(cached_input_cost) as cached_input_cost,
        sum(output_cost) as output_cost,
        sum(image_cost) as image_cost,
        sum(total_cost) as total_cost

    from with_currency
    group by day, cost_center, subscription_id, model, deployment_type, operation, currency

),

final as (

    select
        -- list prices from the price book, no negotiated discount or commitment known here
        total_cost as BilledCost,
        total_cost as EffectiveCost,
        total_cost as ListCost,
        total_cost as ContractedCost,
        timezone('UTC', cast(day as timestamp)) as ChargePeriodStart,
        timezone('UTC', cast(day as timestamp) + interval 1 day) as ChargePeriodEnd,
        timezone('UTC', cast(date_trunc('month', day) as timestamp)) as BillingPeriodStart,
        timezone(
            'UTC', cast(date_trunc('month', day) as timestamp) + interval 1 month
        ) as BillingPeriodEnd,
        -- the Azure billing account behind the gateway: configuration, not in the envelopes
        cast({{ var('billing_account_id') }} as varchar) as BillingAccountId,
        nullif(cast({{ var('billing_account_name') }} as varchar), '') as BillingAccountName,
        currency as BillingCurrency,
        'Usage' as ChargeCategory,
        -- no corrections of earlier periods are issued
        cast(null as varchar) as ChargeClass,
        'Usage-Based' as ChargeFrequency,
        concat_ws(
            ' ', 'Azure OpenAI', operation, model, '(' || deployment_type || ')'
        ) as ChargeDescription,
        case
            when operation = 'image_generations' then cast(images as decimal(38, 12))
            else cast(total_tokens as decimal(38, 12))
        end as ConsumedQuantity,
        case when operation = 'image_generations' then 'Images' else 'Tokens' end as ConsumedUnit,
        -- token prices are per million; multiplying by a decimal keeps the quantity exact
        case
            when operation = 'image_generations' then cast(images as decimal(38, 12))
            else cast(cast(total_tokens as decimal(38, 6)) * 0.000001 as decimal(38, 12))
        end as PricingQuantity,
        case when operation = 'image_generations' then 'Images' else '1M Tokens' end as PricingUnit,
        'Azure OpenAI' as ServiceName,
        'AI and Machine Learning' as ServiceCategory,
        'Microsoft' as ProviderName,
        'Microsoft' as PublisherName,
        'Microsoft' as InvoiceIssuerName,
        subscription_id as SubAccountId,
        subscription_name as SubAccountName,
        json_object('cost-center', cost_center) as Tags,
        cost_center as x_CostCenter,
        model as x_Model,
        deployment_type as x_DeploymentType,
        operation as x_Operation,
        requests as x_Requests,
        unpriced_requests as x_UnpricedRequests,
        prompt_tokens as x_PromptTokens,
        cached_tokens as x_CachedTokens,
        completion_tokens as x_CompletionTokens,
        reasoning_tokens as x_ReasoningTokens,
        total_tokens as x_TotalTokens,
        images as x_Images,
        input_cost as x_InputCost,
        cached_input_cost as x_CachedInputCost,
        output_cost as x_OutputCost,
        image_cost as x_ImageCost

    from daily

)

select * from final
