with source as (

    select * from {{ source('seeds', 'deployments') }}

),

final as (

    select
        deployment,
        backend_id,
        model,
        deployment_type,
        region,
        billing

    from source

)

select * from final
