{{ config(materialized='incremental_by_day', time_column='day') }}

with source as (

    select * from {{ source('lake', 'usage_costs') }}

),

final as (

    select
        request_id,
        "timestamp" as requested_at,
        hour,
        -- explicit UTC so the session time zone never moves a call to another day or month
        cast(timezone('UTC', "timestamp") as date) as day,
        strftime(timezone('UTC', "timestamp"), '%Y-%m') as month,
        subscription_id,
        subscription_name,
        product_id,
        api_id,
        -- allocation always yields a cost center; a null here would vanish from every report
        coalesce(cost_center, 'UNALLOCATED') as cost_center,
        cost_center_tag,
        allocation,
        project,
        user_hash,
        app_id,
        gateway_region,
        backend_id,
        deployment,
        api_version,
        model,
        deployment_type,
        billing,
        operation,
        status_code,
        streamed,
        token_source,
        -- unknown counts (token_source 'none') bill nothing; zero keeps the sums non-null
        coalesce(prompt_tokens, 0) as prompt_tokens,
        coalesce(cached_tokens, 0) as cached_tokens,
        coalesce(completion_tokens, 0) as completion_tokens,
        coalesce(reasoning_tokens, 0) as reasoning_tokens,
        coalesce(total_tokens, 0) as total_tokens,
        coalesce(images, 0) as images,
        elapsed_ms,
        coalesce(priced, false) as priced,
        input_cost,
        cached_input_cost,
        output_cost,
        image_cost,
        total_cost,
        currency,
        price_model,
        price_deployment_type,
        price_unit,
        price_effective_from

    from source

)

select * from final
