with source as (

    select * from {{ source('seeds', 'price_book') }}

),

final as (

    select
        model,
        deployment_type,
        unit,
        effective_from,
        effective_to,
        input_per_1m,
        cached_input_per_1m,
        output_per_1m,
        per_unit,
        currency

    from source

)

select * from final
