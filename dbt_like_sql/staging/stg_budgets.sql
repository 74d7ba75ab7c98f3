with source as (

    select * from {{ source('seeds', 'budgets') }}

),

final as (

    select
        cost_center,
        month,
        cast(strptime(month || '-01', '%Y-%m-%d') as date) as month_start,
        cast(strptime(month || '-01', '%Y-%m-%d') + interval 1 month as date) as next_month_start,
        amount,
        currency

    from source

)

select * from final
